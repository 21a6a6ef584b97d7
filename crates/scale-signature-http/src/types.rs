//! The context types and their accessors.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use bytes::Bytes;

/// Everything one function of a chain sees: the request and the response so far.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Context {
    /// The incoming request.
    pub request: Request,
    /// The response built so far.
    pub response: Response,
}

impl Context {
    /// A context holding the default request (`GET`, `HTTP/1.1`) and the
    /// default response (status 200, empty body).
    pub fn new() -> Self {
        Self::default()
    }

    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The response.
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// The request, for reading and writing.
    pub fn request_mut(&mut self) -> &mut Request {
        &mut self.request
    }

    /// The response, for reading and writing.
    pub fn response_mut(&mut self) -> &mut Response {
        &mut self.response
    }

    /// Sets every field back to its default, as [`Context::new`] would, but
    /// keeps the strings' allocations for reuse.
    pub fn reset(&mut self) {
        self.request.reset();
        self.response.reset();
    }
}

impl Request {
    /// Sets every field back to its default (as `Request::default()`), but
    /// keeps the strings' and headers' allocations for reuse.
    pub fn reset(&mut self) {
        reset_string(&mut self.method, DEFAULT_METHOD);
        self.uri.clear();
        self.content_length = 0;
        reset_string(&mut self.protocol, DEFAULT_PROTOCOL);
        self.ip.clear();
        self.body = Bytes::new();
        self.headers.recycle();
    }
}

impl Response {
    /// Sets every field back to its default (as `Response::default()`), but
    /// keeps the body's and headers' allocations for reuse.
    pub fn reset(&mut self) {
        self.status_code = DEFAULT_STATUS;
        self.body = Bytes::new();
        self.headers.recycle();
    }
}

pub(crate) fn reset_string(string: &mut String, value: &str) {
    if string != value {
        string.clear();
        string.push_str(value);
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("request", &self.request).field("response", &self.response).finish()
    }
}

/// An HTTP request as a function sees it.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, `GET` by default.
    pub method: String,
    /// The request target as sent by the client (path and query, or a full URI).
    pub uri: String,
    /// The body length as announced; the accessors keep it equal to `body.len()`.
    pub content_length: u64,
    /// The protocol version, `HTTP/1.1` by default.
    pub protocol: String,
    /// The client's address, empty when unknown.
    pub ip: String,
    /// The request body.
    pub body: Bytes,
    /// The request headers.
    pub headers: Headers,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            method: String::from(DEFAULT_METHOD),
            uri: String::new(),
            content_length: 0,
            protocol: String::from(DEFAULT_PROTOCOL),
            ip: String::new(),
            body: Bytes::new(),
            headers: Headers::new(),
        }
    }
}

pub(crate) const DEFAULT_METHOD: &str = "GET";
pub(crate) const DEFAULT_PROTOCOL: &str = "HTTP/1.1";
pub(crate) const DEFAULT_STATUS: u16 = 200;

impl Request {
    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Sets the method.
    pub fn set_method(&mut self, method: impl Into<String>) -> &mut Self {
        self.method = method.into();
        self
    }

    /// The request target.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Sets the request target.
    pub fn set_uri(&mut self, uri: impl Into<String>) -> &mut Self {
        self.uri = uri.into();
        self
    }

    /// The announced body length.
    pub fn content_length(&self) -> u64 {
        self.content_length
    }

    /// The protocol version.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The client's address, empty when unknown.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text, if it is UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        core::str::from_utf8(&self.body).ok()
    }

    /// Replaces the body and sets `content_length` to its length.
    pub fn set_body(&mut self, body: impl Into<Bytes>) -> &mut Self {
        self.body = body.into();
        self.content_length = self.body.len() as u64;
        self
    }

    /// Replaces the body with a string and sets `content_length`.
    pub fn set_body_string(&mut self, body: impl Into<String>) -> &mut Self {
        self.set_body(body.into().into_bytes())
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers, for changing.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("content_length", &self.content_length)
            .field("protocol", &self.protocol)
            .field("ip", &self.ip)
            .field("body", &BodyDebug(&self.body))
            .field("headers", &self.headers)
            .finish()
    }
}

/// The response a function builds.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, 200 by default. The accessor accepts 100–599 only;
    /// the field itself holds any `u16`.
    pub status_code: u16,
    /// The response body.
    pub body: Bytes,
    /// The response headers.
    pub headers: Headers,
}

impl Default for Response {
    fn default() -> Self {
        Self { status_code: DEFAULT_STATUS, body: Bytes::new(), headers: Headers::new() }
    }
}

impl Response {
    /// The status code.
    pub fn status_code(&self) -> u16 {
        self.status_code
    }

    /// Sets the status code.
    ///
    /// # Errors
    ///
    /// [`InvalidStatusCode`] for a value outside 100–599; the status is left as it was.
    pub fn set_status_code(&mut self, code: u16) -> Result<&mut Self, InvalidStatusCode> {
        if !(100..=599).contains(&code) {
            return Err(InvalidStatusCode(code));
        }
        self.status_code = code;
        Ok(self)
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text, if it is UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        core::str::from_utf8(&self.body).ok()
    }

    /// Replaces the body.
    pub fn set_body(&mut self, body: impl Into<Bytes>) -> &mut Self {
        self.body = body.into();
        self
    }

    /// Replaces the body with a string.
    pub fn set_body_string(&mut self, body: impl Into<String>) -> &mut Self {
        self.set_body(body.into().into_bytes())
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers, for changing.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status_code", &self.status_code)
            .field("body", &BodyDebug(&self.body))
            .field("headers", &self.headers)
            .finish()
    }
}

/// Shows a body as text when it is short UTF-8, else by its length.
struct BodyDebug<'a>(&'a [u8]);

impl fmt::Debug for BodyDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.0) {
            Ok(text) if text.len() <= 256 => fmt::Debug::fmt(text, f),
            _ => write!(f, "<{} bytes>", self.0.len()),
        }
    }
}

/// A status code outside 100–599, refused by [`Response::set_status_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidStatusCode(pub u16);

impl fmt::Display for InvalidStatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid status code {}: must be within 100-599", self.0)
    }
}

impl core::error::Error for InvalidStatusCode {}

/// The values of one header, in the order they were sent.
pub type HeaderValues = Vec<String>;

/// Header names mapped to their values, ordered by name.
///
/// The accessors lower-case names (`set("Content-Type", ..)` stores
/// `content-type`, and `get` looks up the lower-cased name), as HTTP/2 and
/// the `http` crate do. Names that arrive on the wire are kept as they are.
#[derive(Default)]
pub struct Headers {
    /// The headers, sorted by name, each name once. A request has a handful
    /// of headers: a sorted vector finds them as fast as a tree, and keeps
    /// its allocation when cleared.
    pub(crate) entries: Vec<(String, HeaderValues)>,
    /// Entries [`Headers::recycle`] took out: the decoder and the accessors
    /// fill them again instead of allocating (see `message::header_map::merge`). Not
    /// part of the value: clones, comparisons and debug output ignore it.
    pub(crate) recycled: Vec<(String, HeaderValues)>,
    /// Set while a decoder has appended entries out of name order;
    /// [`Headers::finish_decoding`] sorts them. Every decoding entry point
    /// of this crate calls it before returning, so it is never set outside
    /// a decode.
    unsorted: bool,
    /// The names and values a decoder has put in since it began, repeats
    /// included, against [`MAX_HEADER_ITEMS`]; reset with `unsorted`.
    decoded_items: usize,
}

/// The most names and values together (a name given twice counts twice)
/// one header map may arrive with: a request's or a response's headers with
/// more do not decode. Guests cannot make the host hold more than this many
/// strings for a response, whatever their memory limit, and the host's
/// `http` header maps (at most 32,768 entries) always have room for them.
pub const MAX_HEADER_ITEMS: usize = 8192;

/// The most entries [`Headers::recycle`] keeps for reuse.
const RECYCLED_ENTRIES: usize = 32;

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where header `name` (exactly as given) is, or where it would go.
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(entry, _)| entry.as_str().cmp(name))
    }

    /// Where header `name`, lower-cased, is, or where it would go.
    fn find_lowercased(&self, name: &str) -> Result<usize, usize> {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.find(&name.to_ascii_lowercase())
        } else {
            self.find(name)
        }
    }

    /// Puts a new header `name`, lower-cased, at `index`, in a recycled
    /// entry when there is one; returns its (empty) values.
    fn insert_lowercased(&mut self, index: usize, name: &str) -> &mut HeaderValues {
        let (mut stored, mut values) = self.take_recycled();
        stored.push_str(name);
        stored.make_ascii_lowercase();
        values.clear();
        self.entries.insert(index, (stored, values));
        &mut self.entries[index].1
    }

    /// The values of header `name` (looked up lower-cased).
    pub fn get(&self, name: &str) -> Option<&[String]> {
        let index = match self.find(name) {
            Ok(index) => index,
            Err(_) if name.bytes().any(|b| b.is_ascii_uppercase()) => self.find(&name.to_ascii_lowercase()).ok()?,
            Err(_) => return None,
        };
        Some(&self.entries[index].1)
    }

    /// The first value of header `name`.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|values| values.first()).map(String::as_str)
    }

    /// Replaces the values of header `name` (stored lower-cased).
    pub fn set<I, V>(&mut self, name: &str, values: I) -> &mut Self
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        let stored = match self.find_lowercased(name) {
            Ok(index) => {
                let stored = &mut self.entries[index].1;
                stored.clear();
                stored
            }
            Err(index) => self.insert_lowercased(index, name),
        };
        stored.extend(values.into_iter().map(Into::into));
        self
    }

    /// Adds one value to header `name`, after any it already has.
    pub fn append(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        let stored = match self.find_lowercased(name) {
            Ok(index) => &mut self.entries[index].1,
            Err(index) => self.insert_lowercased(index, name),
        };
        stored.push(value.into());
        self
    }

    /// Removes header `name`, returning its values.
    pub fn remove(&mut self, name: &str) -> Option<HeaderValues> {
        let index = match self.find(name) {
            Ok(index) => index,
            Err(_) => self.find_lowercased(name).ok()?,
        };
        Some(self.entries.remove(index).1)
    }

    /// Whether header `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The number of distinct header names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The headers, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries.iter().map(|(name, values)| (name.as_str(), values.as_slice()))
    }

    /// Inserts a header exactly as named, without lower-casing (for codecs and
    /// tests that must keep names as they came).
    pub fn insert_raw(&mut self, name: String, values: HeaderValues) -> Option<HeaderValues> {
        match self.find(&name) {
            Ok(index) => Some(core::mem::replace(&mut self.entries[index].1, values)),
            Err(index) => {
                self.entries.insert(index, (name, values));
                None
            }
        }
    }

    /// A cleared entry to fill: a recycled one when there is one.
    pub(crate) fn take_recycled(&mut self) -> (String, HeaderValues) {
        let (mut name, values) = self.recycled.pop().unwrap_or_default();
        name.clear();
        (name, values)
    }

    /// Counts `items` names and values a decoder put in; `false` once more
    /// than [`MAX_HEADER_ITEMS`] have been, since decoding began.
    pub(crate) fn count_decoded(&mut self, items: usize) -> bool {
        self.decoded_items = self.decoded_items.saturating_add(items);
        self.decoded_items <= MAX_HEADER_ITEMS
    }

    /// Adds a filled entry (see [`Headers::take_recycled`]) under its exact
    /// name, for a decoder: of a name given twice, the last values win. An
    /// entry out of name order is appended, and the decoder must call
    /// [`Headers::finish_decoding`] once done (inserting each in place would
    /// make decoding a map sent in reverse order quadratic).
    pub(crate) fn insert_entry(&mut self, name: String, values: HeaderValues) {
        if !self.unsorted {
            // Encoders write names in order, so a decoded header usually goes last.
            if let Some((last, _)) = self.entries.last()
                && last.as_str() >= name.as_str()
            {
                match self.find(&name) {
                    Ok(index) => {
                        let old = core::mem::replace(&mut self.entries[index].1, values);
                        self.recycle_entry(name, old);
                        return;
                    }
                    Err(_) => self.unsorted = true,
                }
            }
        }
        self.entries.push((name, values));
    }

    /// Sorts what a decoder appended out of order, keeping the last values
    /// of a name given more than once (the sort is stable, so entries of
    /// one name stay in the order they came).
    pub(crate) fn finish_decoding(&mut self) {
        self.decoded_items = 0;
        if !core::mem::take(&mut self.unsorted) {
            return;
        }
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.entries.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                // `dedup_by` removes `later`: move its values into the kept one.
                core::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
    }

    fn recycle_entry(&mut self, name: String, values: HeaderValues) {
        if self.recycled.len() < RECYCLED_ENTRIES {
            self.recycled.push((name, values));
        }
    }

    /// Removes every header, keeping up to [`RECYCLED_ENTRIES`] of them (names,
    /// value lists and values) for the decoder to fill again: a context
    /// decoded into over and over then allocates little for its headers.
    #[inline]
    pub(crate) fn recycle(&mut self) {
        // Empty is the common case, met several times per run: no drain.
        self.unsorted = false;
        self.decoded_items = 0;
        if !self.entries.is_empty() {
            self.recycle_entries();
        }
    }

    fn recycle_entries(&mut self) {
        let room = RECYCLED_ENTRIES.saturating_sub(self.recycled.len());
        let kept = self.entries.len().min(room);
        self.recycled.extend(self.entries.drain(..kept));
        self.entries.clear();
    }

    /// Removes every header.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.unsorted = false;
        self.decoded_items = 0;
    }
}

impl Clone for Headers {
    fn clone(&self) -> Self {
        Self { entries: self.entries.clone(), recycled: Vec::new(), unsorted: self.unsorted, decoded_items: 0 }
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries.iter().map(|(name, values)| (name, values))).finish()
    }
}

/// An iterator over [`Headers`], in name order.
#[derive(Debug, Clone)]
pub struct HeadersIter<'a>(core::slice::Iter<'a, (String, HeaderValues)>);

impl<'a> Iterator for HeadersIter<'a> {
    type Item = (&'a String, &'a HeaderValues);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(name, values)| (name, values))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for HeadersIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(name, values)| (name, values))
    }
}

impl ExactSizeIterator for HeadersIter<'_> {}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a String, &'a HeaderValues);
    type IntoIter = HeadersIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        HeadersIter(self.entries.iter())
    }
}

impl<N: Into<String>> FromIterator<(N, HeaderValues)> for Headers {
    /// Collects headers keeping names exactly as given; of a name given
    /// twice, the last values are kept.
    fn from_iter<T: IntoIterator<Item = (N, HeaderValues)>>(iter: T) -> Self {
        let mut headers = Self::new();
        for (name, values) in iter {
            headers.insert_raw(name.into(), values);
        }
        headers
    }
}
