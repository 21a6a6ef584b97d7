//! The adapter, not the function, decides how a response is framed.
//!
//! A function sets response headers freely, and some headers are not the
//! response's to set: `content-length` and `transfer-encoding` tell the client
//! where the body ends, and the hop-by-hop headers (`connection` and the
//! headers it names, `keep-alive`, `proxy-connection`, `te`, `trailer`,
//! `upgrade`) describe the connection. Left in, a wrong length desynchronises
//! the client (a short one lets the body pass for the next response on a
//! keep-alive connection), and the others can close, upgrade or re-frame a
//! connection the function does not own. So they are dropped from the final
//! response, and hyper frames the body it is given.

/// Headers that frame the message or describe the connection, lower-cased.
const CONNECTION_HEADERS: [&str; 8] =
    ["connection", "content-length", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

fn is_connection_header(name: &http::HeaderName) -> bool {
    CONNECTION_HEADERS.contains(&name.as_str())
}

/// Removes the framing and hop-by-hop headers from `headers`, and every
/// header a `connection` value names. Each removal is logged at `debug`.
pub(crate) fn drop_connection_headers(headers: &mut http::HeaderMap) {
    // Most responses carry none of them: one pass over the names, no allocation.
    if !headers.keys().any(is_connection_header) {
        return;
    }
    let named: Vec<http::HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| http::HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in CONNECTION_HEADERS {
        if headers.remove(name).is_some() {
            tracing::debug!(header = name, "dropped a connection header the function set");
        }
    }
    for name in named {
        if headers.remove(&name).is_some() {
            tracing::debug!(header = name.as_str(), "dropped a header the function's `connection` header named");
        }
    }
}

/// Whether `status` can end an exchange: a final status, 200 to 599. An
/// informational status (1xx, `101 Switching Protocols` included) announces
/// another response or a protocol switch, neither of which a function's
/// answer can deliver; HTTP defines no status from 600 up, and clients
/// refuse or misread them.
pub(crate) fn is_final(status: http::StatusCode) -> bool {
    (200..=599).contains(&status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (http::HeaderName::from_bytes(name.as_bytes()).unwrap(), http::HeaderValue::from_str(value).unwrap())
            })
            .collect()
    }

    #[test]
    fn framing_and_hop_by_hop_headers_are_dropped_and_the_rest_kept() {
        let mut headers = map(&[
            ("content-type", "text/plain"),
            ("content-length", "0"),
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive, X-Secret"),
            ("connection", "upgrade"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("upgrade", "h2c"),
            ("x-secret", "token"),
            ("x-kept", "yes"),
        ]);
        headers.append("x-kept", http::HeaderValue::from_static("twice"));
        drop_connection_headers(&mut headers);
        let left: Vec<(&str, &str)> =
            headers.iter().map(|(name, value)| (name.as_str(), value.to_str().unwrap())).collect();
        assert_eq!(left, [("content-type", "text/plain"), ("x-kept", "yes"), ("x-kept", "twice")]);
    }

    #[test]
    fn headers_without_connection_headers_are_left_alone() {
        let mut headers = map(&[("content-type", "text/plain"), ("x-content-length", "5"), ("date", "today")]);
        let before = headers.clone();
        drop_connection_headers(&mut headers);
        assert_eq!(headers, before);
    }

    #[test]
    fn informational_and_out_of_range_statuses_are_not_final() {
        for code in [100, 101, 102, 103, 199] {
            assert!(!is_final(http::StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [600, 700, 999] {
            assert!(!is_final(http::StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 204, 304, 404, 500, 599] {
            assert!(is_final(http::StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
