//! Conversions between the signature's types and the `http` crate's.
//!
//! Header names come out lower-cased (the `http` crate stores them so);
//! a header sent several times keeps every value, in order.

use std::string::{String, ToString};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};

use crate::types::{Headers, Request, Response, reset_string};

/// A value that cannot cross between the signature's types and the `http` crate's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConversionError {
    /// A header value that is not valid UTF-8 (the signature carries text values).
    NonUtf8HeaderValue {
        /// The header's name.
        name: String,
    },
    /// A header name the `http` crate refuses.
    InvalidHeaderName {
        /// The name as given.
        name: String,
    },
    /// A header value the `http` crate refuses (control characters, for example).
    InvalidHeaderValue {
        /// The header's name.
        name: String,
    },
    /// A status code outside 100–999, which `http` cannot carry.
    InvalidStatusCode(u16),
    /// A method the `http` crate refuses.
    InvalidMethod(String),
    /// A URI the `http` crate cannot parse.
    InvalidUri(String),
    /// A protocol other than HTTP/0.9, 1.0, 1.1, 2 or 3.
    UnknownProtocol(String),
    /// More header values than an `http` header map holds (32,768).
    TooManyHeaders,
}

impl std::fmt::Display for ConversionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NonUtf8HeaderValue { name } => write!(f, "header {name:?} has a value that is not UTF-8"),
            Self::InvalidHeaderName { name } => write!(f, "invalid header name {name:?}"),
            Self::TooManyHeaders => f.write_str("more header values than an HTTP header map holds"),
            Self::InvalidHeaderValue { name } => write!(f, "header {name:?} has an invalid value"),
            Self::InvalidStatusCode(code) => write!(f, "invalid status code {code}"),
            Self::InvalidMethod(method) => write!(f, "invalid method {method:?}"),
            Self::InvalidUri(uri) => write!(f, "invalid uri {uri:?}"),
            Self::UnknownProtocol(protocol) => write!(f, "unknown protocol {protocol:?}"),
        }
    }
}

impl std::error::Error for ConversionError {}

fn headers_from_http(map: &http::HeaderMap) -> Result<Headers, ConversionError> {
    let mut headers = Headers::new();
    fill_headers(map, &mut headers)?;
    Ok(headers)
}

/// Replaces `headers` with `map`'s, filling recycled entries and strings.
fn fill_headers(map: &http::HeaderMap, headers: &mut Headers) -> Result<(), ConversionError> {
    headers.recycle();
    let filled = add_headers(map, headers);
    // `HeaderMap` keeps names in arrival order.
    headers.finish_decoding();
    filled
}

fn add_headers(map: &http::HeaderMap, headers: &mut Headers) -> Result<(), ConversionError> {
    for name in map.keys() {
        let (mut stored, mut values) = headers.take_recycled();
        stored.push_str(name.as_str());
        let mut used = 0;
        for value in map.get_all(name) {
            let text =
                value.to_str().map_err(|_| ConversionError::NonUtf8HeaderValue { name: name.as_str().to_string() })?;
            match values.get_mut(used) {
                Some(kept) => {
                    kept.clear();
                    kept.push_str(text);
                }
                None => values.push(text.to_string()),
            }
            used += 1;
        }
        values.truncate(used);
        headers.insert_entry(stored, values);
    }
    Ok(())
}

fn headers_to_http(headers: &Headers, map: &mut http::HeaderMap) -> Result<(), ConversionError> {
    map.try_reserve(headers.len()).map_err(|_| ConversionError::TooManyHeaders)?;
    for (name, values) in headers.iter() {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConversionError::InvalidHeaderName { name: name.to_string() })?;
        for value in values {
            let value = HeaderValue::from_str(value)
                .map_err(|_| ConversionError::InvalidHeaderValue { name: name.to_string() })?;
            map.try_append(header.clone(), value).map_err(|_| ConversionError::TooManyHeaders)?;
        }
    }
    Ok(())
}

fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

fn protocol_version(protocol: &str) -> Result<http::Version, ConversionError> {
    Ok(match protocol {
        "HTTP/0.9" => http::Version::HTTP_09,
        "HTTP/1.0" => http::Version::HTTP_10,
        "HTTP/1.1" => http::Version::HTTP_11,
        "HTTP/2" | "HTTP/2.0" => http::Version::HTTP_2,
        "HTTP/3" | "HTTP/3.0" => http::Version::HTTP_3,
        other => return Err(ConversionError::UnknownProtocol(other.to_string())),
    })
}

/// Writes `uri` as its `Display` does, without the formatting machinery.
fn push_uri(out: &mut String, uri: &http::Uri) {
    if let Some(scheme) = uri.scheme_str() {
        out.push_str(scheme);
        out.push_str("://");
    }
    if let Some(authority) = uri.authority() {
        out.push_str(authority.as_str());
    }
    out.push_str(uri.path());
    if let Some(query) = uri.query() {
        out.push('?');
        out.push_str(query);
    }
}

impl Request {
    /// Makes this request the one `parts` and `body` describe, reusing this
    /// request's allocations (a server filling one request per call, over
    /// and over, allocates little). `ip` is emptied: the `http` request does
    /// not know the peer; servers set it themselves.
    ///
    /// # Errors
    ///
    /// A header value that is not UTF-8. The request is then partly
    /// overwritten.
    pub fn fill_from_http(&mut self, parts: &http::request::Parts, body: Bytes) -> Result<(), ConversionError> {
        reset_string(&mut self.method, parts.method.as_str());
        self.uri.clear();
        push_uri(&mut self.uri, &parts.uri);
        self.content_length = body.len() as u64;
        reset_string(&mut self.protocol, protocol_name(parts.version));
        self.ip.clear();
        self.body = body;
        fill_headers(&parts.headers, &mut self.headers)
    }
}

impl TryFrom<http::Request<Bytes>> for Request {
    type Error = ConversionError;

    /// The request as a function sees it. `ip` is left empty: the `http`
    /// request does not know the peer; servers set it themselves.
    fn try_from(request: http::Request<Bytes>) -> Result<Self, Self::Error> {
        let (parts, body) = request.into_parts();
        let mut converted = Request::default();
        converted.fill_from_http(&parts, body)?;
        Ok(converted)
    }
}

impl TryFrom<Request> for http::Request<Bytes> {
    type Error = ConversionError;

    fn try_from(request: Request) -> Result<Self, Self::Error> {
        let method = http::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| ConversionError::InvalidMethod(request.method.clone()))?;
        let uri: http::Uri = request.uri.parse().map_err(|_| ConversionError::InvalidUri(request.uri.clone()))?;
        let mut out = http::Request::new(request.body);
        *out.method_mut() = method;
        *out.uri_mut() = uri;
        *out.version_mut() = protocol_version(&request.protocol)?;
        headers_to_http(&request.headers, out.headers_mut())?;
        Ok(out)
    }
}

impl TryFrom<http::Response<Bytes>> for Response {
    type Error = ConversionError;

    fn try_from(response: http::Response<Bytes>) -> Result<Self, Self::Error> {
        let (parts, body) = response.into_parts();
        Ok(Response { status_code: parts.status.as_u16(), body, headers: headers_from_http(&parts.headers)? })
    }
}

impl TryFrom<Response> for http::Response<Bytes> {
    type Error = ConversionError;

    fn try_from(response: Response) -> Result<Self, Self::Error> {
        http::Response::try_from(&response)
    }
}

impl TryFrom<&Response> for http::Response<Bytes> {
    type Error = ConversionError;

    /// The response, sharing its body (a `Bytes` clone) and leaving the
    /// signature's response, with its allocations, to be reused.
    fn try_from(response: &Response) -> Result<Self, Self::Error> {
        let status = http::StatusCode::from_u16(response.status_code)
            .map_err(|_| ConversionError::InvalidStatusCode(response.status_code))?;
        let mut out = http::Response::new(response.body.clone());
        *out.status_mut() = status;
        headers_to_http(&response.headers, out.headers_mut())?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_headers_are_lower_cased_and_keep_every_value() {
        let request = http::Request::builder()
            .method("POST")
            .uri("/a?b=c")
            .header("X-Multi", "one")
            .header("x-multi", "two")
            .header("Content-Type", "text/plain")
            .body(Bytes::from_static(b"hi"))
            .unwrap();
        let request = Request::try_from(request).unwrap();
        assert_eq!(request.method(), "POST");
        assert_eq!(request.uri(), "/a?b=c");
        assert_eq!(request.content_length(), 2);
        assert_eq!(request.headers().get("x-multi").unwrap(), ["one", "two"]);
        assert_eq!(request.headers().first("content-type"), Some("text/plain"));
    }

    #[test]
    fn a_filled_request_equals_a_converted_one() {
        let first = http::Request::builder()
            .method("PUT")
            .uri("https://example.com:8443/up/load?x=1")
            .version(http::Version::HTTP_2)
            .header("b", "1")
            .header("a", "2")
            .header("a", "3")
            .header("c", "4")
            .body(Bytes::from_static(b"first body"))
            .unwrap();
        let second = http::Request::builder()
            .uri("/just/a/path")
            .header("a", "only")
            .header("host", "example.com")
            .body(Bytes::new())
            .unwrap();
        let mut filled = Request { ip: "192.0.2.1".into(), ..Request::default() };
        for request in [first, second] {
            let (parts, body) = request.into_parts();
            filled.fill_from_http(&parts, body.clone()).unwrap();
            let converted = Request::try_from(http::Request::from_parts(parts.clone(), body)).unwrap();
            assert_eq!(filled, converted);
            assert_eq!(filled.uri, parts.uri.to_string());
            assert_eq!(filled.ip, "");
        }
        assert_eq!(filled.headers().iter().map(|(name, _)| name).collect::<Vec<_>>(), ["a", "host"]);
    }

    #[test]
    fn response_round_trips_through_http() {
        let mut response = Response::default();
        response.set_status_code(201).unwrap().set_body_string("made");
        response.headers_mut().set("Set-Cookie", ["a=1", "b=2"]);
        let http_response = http::Response::try_from(response.clone()).unwrap();
        assert_eq!(http_response.status(), 201);
        let values: Vec<_> = http_response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(values, ["a=1", "b=2"]);
        assert_eq!(Response::try_from(http_response).unwrap(), response);
    }

    #[test]
    fn invalid_values_are_refused() {
        let mut response = Response { status_code: 42, ..Response::default() };
        assert_eq!(http::Response::try_from(response.clone()).unwrap_err(), ConversionError::InvalidStatusCode(42));
        response.status_code = 200;
        response.headers_mut().set("bad header", ["x"]);
        assert!(matches!(http::Response::try_from(response).unwrap_err(), ConversionError::InvalidHeaderName { .. }));
        let request = Request { protocol: "SPDY".into(), uri: "/".into(), ..Request::default() };
        assert_eq!(http::Request::try_from(request).unwrap_err(), ConversionError::UnknownProtocol("SPDY".into()));
    }
}
