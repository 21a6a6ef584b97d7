//! The protobuf codec, written by hand against `proto/http_signature.proto`
//! with prost's encoding primitives (the same ones `prost-derive` expands to).
//!
//! Hand-written rather than derived for two reasons: the defaults of the
//! signature (`GET`, `HTTP/1.1`, 200) are not protobuf zero values, and the
//! Go guest codec must produce the same bytes, so the canonical form
//! (documented in the `.proto` file) is spelled out here field by field.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost::encoding::{
    DecodeContext, WireType, bytes as pbytes, check_wire_type, decode_key, decode_varint, encode_varint,
    encoded_len_varint, key_len, message, skip_field, string, uint32, uint64,
};

use crate::pieces;
use crate::types::{
    Context, DEFAULT_METHOD, DEFAULT_PROTOCOL, DEFAULT_STATUS, Headers, MAX_HEADER_ITEMS, Request, Response,
};

/// Bytes that are not a valid encoding of the message asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    kind: DecodeErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DecodeErrorKind {
    Protobuf(prost::DecodeError),
    EmptyResult,
}

impl DecodeError {
    fn empty_result() -> Self {
        Self { kind: DecodeErrorKind::EmptyResult }
    }
}

impl From<prost::DecodeError> for DecodeError {
    fn from(err: prost::DecodeError) -> Self {
        Self { kind: DecodeErrorKind::Protobuf(err) }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DecodeErrorKind::Protobuf(err) => write!(f, "malformed http signature message: {err}"),
            DecodeErrorKind::EmptyResult => {
                f.write_str("malformed run result: it holds neither a context nor an error")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

impl Context {
    /// Decodes a context. Bytes that are not a context give an error, never a panic.
    ///
    /// Decoding from a [`bytes::Bytes`] shares its storage for the bodies
    /// instead of copying them.
    pub fn decode(buf: impl Buf) -> Result<Self, DecodeError> {
        <Self as Message>::decode(buf).map_err(DecodeError::from)
    }

    /// Replaces this context with the one encoded in `buf`, reusing this
    /// one's allocations where it can. After an error the context holds some
    /// valid but unspecified value.
    ///
    /// # Errors
    ///
    /// As [`Context::decode`].
    pub fn decode_in_place(&mut self, buf: impl Buf) -> Result<(), DecodeError> {
        self.reset();
        <Self as Message>::merge(self, buf).map_err(DecodeError::from)
    }

    /// Appends the encoding of this context to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        let lens = self.nested_lens();
        buf.reserve(lens.context);
        self.encode_with(lens, buf);
    }

    /// The lengths of the nested messages, each computed once. (prost's
    /// `message::encode` computes a nested message's length again at every
    /// level; contexts are encoded twice per run, so this pays.)
    fn nested_lens(&self) -> NestedLens {
        let request = Message::encoded_len(&self.request);
        let response = Message::encoded_len(&self.response);
        let context = key_len(1)
            + encoded_len_varint(request as u64)
            + request
            + key_len(2)
            + encoded_len_varint(response as u64)
            + response;
        NestedLens { request, response, context }
    }

    fn encode_with(&self, lens: NestedLens, buf: &mut Vec<u8>) {
        put_delimited_start(1, lens.request, buf);
        Message::encode_raw(&self.request, buf);
        put_delimited_start(2, lens.response, buf);
        Message::encode_raw(&self.response, buf);
    }

    /// The encodings of the request and of the response in `bytes`, when
    /// `bytes` is a context encoded as exactly those two fields, in that
    /// order (what every encoder of this crate writes); else `None`. The
    /// parts are not checked.
    pub fn split_encoded(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        split_context(bytes)
    }

    /// Appends the encoding of a context made of the request encoded in
    /// `request`, copied as it is, and `response`. For a request known to
    /// be valid, such as one [`Context::split_encoded`] took from a valid
    /// context: other bytes make a context its reader rejects.
    pub fn encode_parts_into(request: &[u8], response: &Response, buf: &mut Vec<u8>) {
        let response_len = Message::encoded_len(response);
        buf.reserve(parts_len(request, response_len));
        encode_parts_with(request, response, response_len, buf);
    }

    /// Checks that `bytes` decode as a context without building one (so
    /// without allocating): `Ok` exactly when [`Context::decode`] succeeds.
    ///
    /// # Errors
    ///
    /// As [`Context::decode`].
    pub fn validate(bytes: &[u8]) -> Result<(), DecodeError> {
        match check_message(bytes, Shape::Context) {
            Ok(()) => Ok(()),
            Err(Unchecked::Invalid(err)) => Err(err.into()),
            // Rare: let the decoder itself decide.
            Err(Unchecked::Group) => Context::decode(bytes).map(drop),
        }
    }

    /// [`Context::validate`], knowing that `sent` is a valid encoding of a
    /// context (one the caller encoded itself): when `bytes` carries the
    /// same request as `sent`, only its response is checked. Accepts exactly
    /// what `validate` accepts.
    ///
    /// # Errors
    ///
    /// As [`Context::validate`].
    pub fn validate_reusing(bytes: &[u8], sent: &[u8]) -> Result<(), DecodeError> {
        match response_after_same_request(bytes, sent) {
            Some(response) => match check_message(response, Shape::Response) {
                Ok(()) => Ok(()),
                Err(Unchecked::Invalid(err)) => Err(err.into()),
                Err(Unchecked::Group) => Context::decode(bytes).map(drop),
            },
            None => Self::validate(bytes),
        }
    }

    /// The encoding of this context.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_into(&mut buf);
        buf
    }
}

/// The length of a context made of an encoded request and a response whose
/// encoding is `response_len` bytes long.
fn parts_len(request: &[u8], response_len: usize) -> usize {
    key_len(1)
        + encoded_len_varint(request.len() as u64)
        + request.len()
        + key_len(2)
        + encoded_len_varint(response_len as u64)
        + response_len
}

fn encode_parts_with(request: &[u8], response: &Response, response_len: usize, buf: &mut Vec<u8>) {
    put_delimited_start(1, request.len(), buf);
    pieces::extend(buf, request);
    put_delimited_start(2, response_len, buf);
    Message::encode_raw(response, buf);
}

impl Request {
    /// Decodes an encoded request into this one, replacing every field but
    /// reusing its allocations.
    ///
    /// # Errors
    ///
    /// `bytes` is not a valid encoding; the request is then partly overwritten.
    pub fn decode_in_place(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        self.reset();
        Message::merge(self, pieces::Slice(bytes)).map_err(DecodeError::from)
    }

    /// [`Request::decode_in_place`] from bytes the request may keep: the
    /// decoded body is a view of `bytes` rather than a copy.
    ///
    /// # Errors
    ///
    /// As [`Request::decode_in_place`].
    pub fn decode_in_place_shared(&mut self, bytes: Bytes) -> Result<(), DecodeError> {
        self.reset();
        Message::merge(self, bytes).map_err(DecodeError::from)
    }
}

impl Response {
    /// Decodes an encoded response into this one, replacing every field but
    /// reusing its allocations.
    ///
    /// # Errors
    ///
    /// `bytes` is not a valid encoding; the response is then partly overwritten.
    pub fn decode_in_place(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        self.reset();
        Message::merge(self, pieces::Slice(bytes)).map_err(DecodeError::from)
    }
}

/// `prost::encoding::encode_varint`, with the one-byte case (every key of
/// these messages, and most lengths) inline: the call and loop cost more
/// than the byte.
#[inline(always)]
fn put_varint(value: u64, buf: &mut impl BufMut) {
    if value < 0x80 {
        buf.put_u8(value as u8);
    } else {
        encode_varint(value, buf);
    }
}

/// The key of length-delimited field `tag` and the length `len` of its
/// contents, through [`put_varint`] (as prost's `encode_key` and
/// `encode_varint`).
#[inline(always)]
fn put_delimited_start(tag: u32, len: usize, buf: &mut impl BufMut) {
    put_varint(u64::from(tag << 3 | WireType::LengthDelimited as u32), buf);
    put_varint(len as u64, buf);
}

#[derive(Clone, Copy)]
struct NestedLens {
    request: usize,
    response: usize,
    context: usize,
}

impl Message for Context {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        message::encode(1, &self.request, buf);
        message::encode(2, &self.response, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            // Header entries may come in any order: sort them once the
            // part is decoded, whether or not it decoded.
            1 => sorted(message::merge(wire_type, &mut self.request, buf, ctx), &mut self.request.headers),
            2 => sorted(message::merge(wire_type, &mut self.response, buf, ctx), &mut self.response.headers),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        message::encoded_len(1, &self.request) + message::encoded_len(2, &self.response)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl Message for Request {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.method != DEFAULT_METHOD {
            string::encode(1, &self.method, buf);
        }
        if !self.uri.is_empty() {
            string::encode(2, &self.uri, buf);
        }
        if self.content_length != 0 {
            uint64::encode(3, &self.content_length, buf);
        }
        if self.protocol != DEFAULT_PROTOCOL {
            string::encode(4, &self.protocol, buf);
        }
        if !self.ip.is_empty() {
            string::encode(5, &self.ip, buf);
        }
        if !self.body.is_empty() {
            encode_body(6, &self.body, buf);
        }
        encode_headers(7, &self.headers, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => string::merge(wire_type, &mut self.method, buf, ctx),
            2 => string::merge(wire_type, &mut self.uri, buf, ctx),
            3 => uint64::merge(wire_type, &mut self.content_length, buf, ctx),
            4 => string::merge(wire_type, &mut self.protocol, buf, ctx),
            5 => string::merge(wire_type, &mut self.ip, buf, ctx),
            6 => pbytes::merge(wire_type, &mut self.body, buf, ctx),
            7 => merge_header(wire_type, &mut self.headers, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    // Decoding a request or response on its own ends by sorting its header
    // entries (see `Headers::finish_decoding`), as decoding one inside a
    // context does.
    fn merge(&mut self, mut buf: impl Buf) -> Result<(), prost::DecodeError> {
        sorted(merge_fields(self, &mut buf), &mut self.headers)
    }

    fn merge_length_delimited(&mut self, mut buf: impl Buf) -> Result<(), prost::DecodeError> {
        let merged = message::merge(WireType::LengthDelimited, self, &mut buf, DecodeContext::default());
        sorted(merged, &mut self.headers)
    }

    fn encoded_len(&self) -> usize {
        let mut len = 0;
        if self.method != DEFAULT_METHOD {
            len += string::encoded_len(1, &self.method);
        }
        if !self.uri.is_empty() {
            len += string::encoded_len(2, &self.uri);
        }
        if self.content_length != 0 {
            len += uint64::encoded_len(3, &self.content_length);
        }
        if self.protocol != DEFAULT_PROTOCOL {
            len += string::encoded_len(4, &self.protocol);
        }
        if !self.ip.is_empty() {
            len += string::encoded_len(5, &self.ip);
        }
        if !self.body.is_empty() {
            len += pbytes::encoded_len(6, &self.body);
        }
        len + headers_encoded_len(7, &self.headers)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl Message for Response {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.status_code != DEFAULT_STATUS {
            uint32::encode(1, &u32::from(self.status_code), buf);
        }
        if !self.body.is_empty() {
            encode_body(2, &self.body, buf);
        }
        encode_headers(3, &self.headers, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => {
                let mut status = 0u32;
                uint32::merge(wire_type, &mut status, buf, ctx)?;
                self.status_code = u16::try_from(status).map_err(|_| status_out_of_range())?;
                Ok(())
            }
            2 => pbytes::merge(wire_type, &mut self.body, buf, ctx),
            3 => merge_header(wire_type, &mut self.headers, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    // Decoding a request or response on its own ends by sorting its header
    // entries (see `Headers::finish_decoding`), as decoding one inside a
    // context does.
    fn merge(&mut self, mut buf: impl Buf) -> Result<(), prost::DecodeError> {
        sorted(merge_fields(self, &mut buf), &mut self.headers)
    }

    fn merge_length_delimited(&mut self, mut buf: impl Buf) -> Result<(), prost::DecodeError> {
        let merged = message::merge(WireType::LengthDelimited, self, &mut buf, DecodeContext::default());
        sorted(merged, &mut self.headers)
    }

    fn encoded_len(&self) -> usize {
        let mut len = 0;
        if self.status_code != DEFAULT_STATUS {
            len += uint32::encoded_len(1, &u32::from(self.status_code));
        }
        if !self.body.is_empty() {
            len += pbytes::encoded_len(2, &self.body);
        }
        len + headers_encoded_len(3, &self.headers)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cold]
fn status_out_of_range() -> prost::DecodeError {
    // prost offers no other way to describe a semantic error from inside
    // `merge_field`; the constructor is deprecated but present in all of 0.14.
    #[allow(deprecated)]
    prost::DecodeError::new("status_code does not fit in 16 bits")
}

// Header maps: `map<string, HeaderValues>`, each entry a message with the
// name at tag 1 and a `HeaderValues { repeated string values = 1; }` at tag 2.

fn values_len(values: &[String]) -> usize {
    values.iter().map(|value| string::encoded_len(1, value)).sum()
}

fn entry_len(name: &String, values: &[String]) -> usize {
    let values_len = values_len(values);
    string::encoded_len(1, name) + key_len(2) + encoded_len_varint(values_len as u64) + values_len
}

fn headers_encoded_len(tag: u32, headers: &Headers) -> usize {
    headers
        .entries
        .iter()
        .map(|(name, values)| {
            let len = entry_len(name, values);
            key_len(tag) + encoded_len_varint(len as u64) + len
        })
        .sum()
}

fn encode_headers(tag: u32, headers: &Headers, buf: &mut impl BufMut) {
    for (name, values) in &headers.entries {
        put_delimited_start(tag, entry_len(name, values), buf);
        string::encode(1, name, buf);
        put_delimited_start(2, values_len(values), buf);
        string::encode_repeated(1, values, buf);
    }
}

/// One decoded header entry; only used while decoding. It is filled in
/// place: a recycled name and value list keep their allocations.
#[derive(Debug, Default)]
struct HeaderEntry {
    name: String,
    values: HeaderValuesMsg,
}

impl Message for HeaderEntry {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        string::encode(1, &self.name, buf);
        message::encode(2, &self.values, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => string::merge(wire_type, &mut self.name, buf, ctx),
            2 => message::merge(wire_type, &mut self.values, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        string::encoded_len(1, &self.name) + message::encoded_len(2, &self.values)
    }

    fn clear(&mut self) {
        self.name.clear();
        self.values.clear();
    }
}

/// A header's values while decoding: the first `used` strings of `values`
/// are decoded; the rest are recycled ones waiting to be written over.
#[derive(Debug, Default)]
struct HeaderValuesMsg {
    values: Vec<String>,
    used: usize,
}

impl HeaderValuesMsg {
    fn recycled(values: Vec<String>) -> Self {
        Self { values, used: 0 }
    }

    /// The decoded values, recycled ones left over dropped.
    fn into_values(mut self) -> Vec<String> {
        self.values.truncate(self.used);
        self.values
    }
}

impl Message for HeaderValuesMsg {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        string::encode_repeated(1, &self.values[..self.used], buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            // As `string::merge_repeated`, which appends one string per
            // occurrence, but into a recycled string when there is one.
            1 => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                if self.used >= MAX_HEADER_ITEMS {
                    return Err(too_many_headers());
                }
                if self.used == self.values.len() {
                    self.values.push(String::new());
                }
                string::merge(wire_type, &mut self.values[self.used], buf, ctx)?;
                self.used += 1;
                Ok(())
            }
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        values_len(&self.values[..self.used])
    }

    fn clear(&mut self) {
        self.used = 0;
    }
}

/// Encodes a body field (as prost's `bytes::encode`, copying in pieces).
fn encode_body(tag: u32, body: &[u8], buf: &mut impl BufMut) {
    put_delimited_start(tag, body.len(), buf);
    pieces::put_slice(buf, body);
}

/// Ends decoding a message that holds `headers`, whether or not it
/// succeeded: the entries the decoder appended out of order are sorted
/// (`Headers::finish_decoding`). Returns what the decoder returned.
fn sorted<T>(merged: T, headers: &mut Headers) -> T {
    headers.finish_decoding();
    merged
}

/// What prost's `Message::merge` does: every field of `buf`, at the top level.
fn merge_fields(message: &mut impl Message, buf: &mut impl Buf) -> Result<(), prost::DecodeError> {
    let ctx = DecodeContext::default();
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(buf)?;
        message.merge_field(tag, wire_type, buf, ctx.clone())?;
    }
    Ok(())
}

fn merge_header(
    wire_type: WireType,
    headers: &mut Headers,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), prost::DecodeError> {
    // An entry without a name field has the empty name, as when decoding
    // into a fresh entry; `string::merge` replaces the contents otherwise.
    let (name, values) = headers.take_spare();
    let mut entry = HeaderEntry { name, values: HeaderValuesMsg::recycled(values) };
    message::merge(wire_type, &mut entry, buf, ctx)?;
    if !headers.count_decoded(1 + entry.values.used) {
        return Err(too_many_headers());
    }
    headers.insert_entry(entry.name, entry.values.into_values());
    Ok(())
}

// Validation without decoding: the same checks as the `Message` impls above
// (wire types, lengths, UTF-8, the status range), walking the bytes instead
// of filling a context. `Context::validate` must accept exactly what
// `Context::decode` accepts; a property test holds the two together.

/// The messages of the signature, for [`check_message`].
#[derive(Clone, Copy)]
enum Shape {
    Context,
    Request,
    Response,
    HeaderEntry,
    HeaderValues,
}

/// What a field of a [`Shape`] holds.
enum Field {
    Message(Shape),
    String,
    Bytes,
    Varint,
    Status,
    Unknown,
}

fn field_of(shape: Shape, tag: u32) -> Field {
    match (shape, tag) {
        (Shape::Context, 1) => Field::Message(Shape::Request),
        (Shape::Context, 2) => Field::Message(Shape::Response),
        (Shape::Request, 1 | 2 | 4 | 5) => Field::String,
        (Shape::Request, 3) => Field::Varint,
        (Shape::Request, 6) | (Shape::Response, 2) => Field::Bytes,
        (Shape::Request, 7) | (Shape::Response, 3) => Field::Message(Shape::HeaderEntry),
        (Shape::Response, 1) => Field::Status,
        (Shape::HeaderEntry, 1) | (Shape::HeaderValues, 1) => Field::String,
        (Shape::HeaderEntry, 2) => Field::Message(Shape::HeaderValues),
        _ => Field::Unknown,
    }
}

/// `a == b`, eight bytes at a step. (A wasm guest's `memcmp` compares one
/// byte at a time, which made comparing a 128 KiB context cost more than
/// decoding it.)
#[cfg(not(target_family = "wasm"))]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a == b
}

#[cfg(target_family = "wasm")]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails_match = a_words.remainder() == b_words.remainder();
    let word = |chunk: &[u8]| u64::from_ne_bytes(chunk.try_into().expect("chunks of eight"));
    tails_match && a_words.zip(b_words).all(|(x, y)| word(x) == word(y))
}

/// Starts a result's context field (tag 1) of `len` bytes, reserving room
/// for all of it.
fn start_context_field(len: usize, buf: &mut Vec<u8>) {
    buf.reserve(key_len(1) + encoded_len_varint(len as u64) + len);
    put_delimited_start(1, len, buf);
}

/// The context field of a result made of exactly one such field (what
/// every encoder writes), or `None`.
fn split_result(mut result: &[u8]) -> Option<&[u8]> {
    take_field(&mut result, 1).filter(|_| result.is_empty())
}

/// The request and response fields of a context encoded as exactly those
/// two, in that order (what every encoder writes), or `None`.
fn split_context(mut context: &[u8]) -> Option<(&[u8], &[u8])> {
    let request = take_field(&mut context, 1)?;
    let response = take_field(&mut context, 2)?;
    context.is_empty().then_some((request, response))
}

/// Takes the length-delimited field `tag` (below 16) off the front of
/// `buf` when its key is written in one byte, as every encoder writes it;
/// `None` for anything else, with `buf` then left anywhere.
#[inline]
fn take_field<'a>(buf: &mut &'a [u8], tag: u8) -> Option<&'a [u8]> {
    debug_assert!(tag < 16, "a one-byte key holds tags below 16");
    *buf = buf.strip_prefix(&[tag << 3 | WireType::LengthDelimited as u8])?;
    take_delimited(buf).ok()
}

/// The response field of the encoded `context`, when its request field is,
/// byte for byte, the one in the encoded context `sent` (both laid out as
/// [`split_context`] expects).
fn response_after_same_request<'a>(context: &'a [u8], sent: &[u8]) -> Option<&'a [u8]> {
    let (sent_request, _) = split_context(sent)?;
    let (request, response) = split_context(context)?;
    same_bytes(sent_request, request).then_some(response)
}

/// Why [`check_message`] stopped.
enum Unchecked {
    /// The bytes do not decode.
    Invalid(prost::DecodeError),
    /// An unknown group field: whether it decodes depends on prost's
    /// recursion limit at its depth, which only the decoder tracks.
    Group,
}

impl From<prost::DecodeError> for Unchecked {
    fn from(err: prost::DecodeError) -> Self {
        Unchecked::Invalid(err)
    }
}

/// Takes a length-delimited field's contents off the front of `buf`.
#[inline]
fn take_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], prost::DecodeError> {
    // Most lengths fit one byte: read those here, the rest through prost.
    let len = match buf.split_first() {
        Some((&len, rest)) if len < 0x80 => {
            *buf = rest;
            u64::from(len)
        }
        _ => decode_varint(buf)?,
    };
    let len = usize::try_from(len).ok().filter(|&len| len <= buf.len()).ok_or_else(buffer_underflow)?;
    let (field, rest) = buf.split_at(len);
    *buf = rest;
    Ok(field)
}

fn check_message(buf: &[u8], shape: Shape) -> Result<(), Unchecked> {
    check_fields(buf, shape, &mut 0)
}

/// [`check_message`], counting the header names and values of the map the
/// message belongs to in `items` (each request and response starts a count
/// of its own, as each decode of one does).
fn check_fields(mut buf: &[u8], shape: Shape, items: &mut usize) -> Result<(), Unchecked> {
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match field_of(shape, tag) {
            Field::Message(inner) => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                let message = take_delimited(&mut buf)?;
                match inner {
                    Shape::Request | Shape::Response => check_fields(message, inner, &mut 0)?,
                    Shape::HeaderEntry => {
                        count_item(items)?;
                        check_fields(message, inner, items)?;
                    }
                    Shape::Context | Shape::HeaderValues => check_fields(message, inner, items)?,
                }
            }
            Field::String => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                core::str::from_utf8(take_delimited(&mut buf)?).map_err(|_| not_utf8())?;
                if matches!(shape, Shape::HeaderValues) {
                    count_item(items)?;
                }
            }
            Field::Bytes => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                take_delimited(&mut buf)?;
            }
            Field::Varint => {
                check_wire_type(WireType::Varint, wire_type)?;
                decode_varint(&mut buf)?;
            }
            Field::Status => {
                check_wire_type(WireType::Varint, wire_type)?;
                // As `uint32::merge` then the range check in `Response::merge_field`.
                let status = decode_varint(&mut buf)? as u32;
                u16::try_from(status).map_err(|_| status_out_of_range())?;
            }
            Field::Unknown if wire_type == WireType::StartGroup => return Err(Unchecked::Group),
            Field::Unknown => skip_field(wire_type, tag, &mut buf, DecodeContext::default())?,
        }
    }
    Ok(())
}

/// Counts one header name or value; an error past [`MAX_HEADER_ITEMS`].
fn count_item(items: &mut usize) -> Result<(), Unchecked> {
    *items += 1;
    if *items > MAX_HEADER_ITEMS {
        return Err(Unchecked::Invalid(too_many_headers()));
    }
    Ok(())
}

#[cold]
fn buffer_underflow() -> prost::DecodeError {
    #[allow(deprecated)]
    prost::DecodeError::new("buffer underflow")
}

#[cold]
fn too_many_headers() -> prost::DecodeError {
    #[allow(deprecated)]
    prost::DecodeError::new("more header names and values than a header map may hold")
}

#[cold]
fn not_utf8() -> prost::DecodeError {
    #[allow(deprecated)]
    prost::DecodeError::new("invalid string value: data is not UTF-8 encoded")
}

/// What a run hands back: the context after the chain, or the error that ended it.
///
/// This is the message a guest's `run` export returns and the answer the host
/// gives to a guest's `next` call.
#[derive(Debug, Clone, PartialEq, Eq)]
// The context is the common case; boxing it would add an allocation to every
// decode of a result.
#[allow(clippy::large_enum_variant)]
pub enum RunResult {
    /// The run succeeded with this context.
    Context(Context),
    /// The run failed with this message.
    Error(String),
}

impl RunResult {
    /// Decodes a run result.
    ///
    /// # Errors
    ///
    /// Bytes that are not a valid `RunResult`, or one holding neither field.
    pub fn decode(buf: impl Buf) -> Result<Self, DecodeError> {
        let mut context = Context::default();
        Ok(match Self::decode_into(buf, &mut context)? {
            None => RunResult::Context(context),
            Some(error) => RunResult::Error(error),
        })
    }

    /// Decodes a run result into `context`, reusing its allocations: the
    /// allocation-free counterpart of [`RunResult::decode`] for hosts that
    /// run many requests.
    ///
    /// Returns `Ok(None)` when the result held a context, which is now in
    /// `context`, and `Ok(Some(message))` when it held an error. `context` is
    /// reset first; after an error result or a decode error it holds some
    /// valid but unspecified context.
    ///
    /// # Errors
    ///
    /// As [`RunResult::decode`].
    pub fn decode_into(mut buf: impl Buf, context: &mut Context) -> Result<Option<String>, DecodeError> {
        context.reset();
        let mut outcome = None;
        let ctx = DecodeContext::default();
        while buf.has_remaining() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            match tag {
                1 => {
                    // A repeated embedded message merges into the one before
                    // it; a context after an error replaces the error.
                    if outcome.take().is_some_and(|held: Option<String>| held.is_some()) {
                        context.reset();
                    }
                    message::merge(wire_type, context, &mut buf, ctx.clone())?;
                    outcome = Some(None);
                }
                2 => {
                    check_wire_type(WireType::LengthDelimited, wire_type)?;
                    let mut error = String::new();
                    string::merge(wire_type, &mut error, &mut buf, ctx.clone())?;
                    context.reset();
                    outcome = Some(Some(error));
                }
                _ => skip_field(wire_type, tag, &mut buf, ctx.clone())?,
            }
        }
        outcome.ok_or_else(DecodeError::empty_result)
    }

    /// [`RunResult::decode_into`] for the result of a run that was handed
    /// `sent`, the encoding of a context whose request is `request`. When
    /// the result's context carries the request of `sent` byte for byte (a
    /// function that did not touch the request), `request` trades places
    /// with `context.request` instead of being decoded again: decoding what
    /// was encoded gives back the same request. Otherwise, and for error
    /// results, this is `decode_into`, and `request` is left as it was.
    ///
    /// # Errors
    ///
    /// As [`RunResult::decode`]; `request` is left as it was.
    pub fn decode_into_reusing_request(
        buf: &[u8],
        context: &mut Context,
        sent: &[u8],
        request: &mut Request,
    ) -> Result<Option<String>, DecodeError> {
        match split_result(buf).and_then(|result| response_after_same_request(result, sent)) {
            Some(response) => {
                context.reset();
                Message::merge(&mut context.response, pieces::Slice(response)).map_err(DecodeError::from)?;
                core::mem::swap(&mut context.request, request);
                Ok(None)
            }
            None => Self::decode_into(pieces::Slice(buf), context),
        }
    }

    /// The length of this result's encoding.
    pub fn encoded_len(&self) -> usize {
        match self {
            RunResult::Context(context) => message::encoded_len(1, context),
            RunResult::Error(error) => string::encoded_len(2, error),
        }
    }

    /// Appends the encoding of this result to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        buf.reserve(self.encoded_len());
        match self {
            RunResult::Context(context) => message::encode(1, context, buf),
            RunResult::Error(error) => string::encode(2, error, buf),
        }
    }

    /// Appends the encoding of a successful result holding `context` to `buf`,
    /// without moving the context into a [`RunResult`].
    pub fn encode_context_into(context: &Context, buf: &mut Vec<u8>) {
        let lens = context.nested_lens();
        start_context_field(lens.context, buf);
        context.encode_with(lens, buf);
    }

    /// Appends the encoding of a successful result holding the context made
    /// of the request encoded in `request` (copied as it is; see
    /// [`Context::encode_parts_into`]) and `response`.
    pub fn encode_parts_into(request: &[u8], response: &Response, buf: &mut Vec<u8>) {
        let response_len = Message::encoded_len(response);
        start_context_field(parts_len(request, response_len), buf);
        encode_parts_with(request, response, response_len, buf);
    }

    /// Appends the encoding of a successful result holding the context
    /// encoded in `context` to `buf`, copying those bytes as they are: the
    /// answer to a `next` that leaves the context unchanged, with no decoding
    /// or re-encoding.
    ///
    /// # Errors
    ///
    /// `context` is not a valid context encoding ([`Context::validate`]);
    /// `buf` is left as it was.
    pub fn encode_encoded_context_into(context: &[u8], buf: &mut Vec<u8>) -> Result<(), DecodeError> {
        Context::validate(context)?;
        Self::encode_context_bytes_into(context, buf);
        Ok(())
    }

    /// Appends the encoding of a successful result holding the context
    /// encoded in `context` to `buf`, copying the bytes without checking
    /// them: for bytes known to be a context's encoding, such as those
    /// [`Context::encode_into`] wrote. Other bytes make a result that its
    /// reader rejects.
    pub fn encode_context_bytes_into(context: &[u8], buf: &mut Vec<u8>) {
        start_context_field(context.len(), buf);
        pieces::extend(buf, context);
    }

    /// The context a successful result carries, as the bytes of its
    /// encoding: for a result made of exactly one context field, as every
    /// encoder here writes it; `None` for anything else. A guest that
    /// encodes its context as a result before handing it to `next` sends
    /// these bytes, and can answer with the whole result if the context
    /// comes back unchanged.
    pub fn context_of(result: &[u8]) -> Option<&[u8]> {
        split_result(result)
    }

    /// Whether `result` is exactly the encoding of a successful result holding
    /// the context encoded in `context`, byte for byte. A guest that gets
    /// back, from `next`, the context it sent can keep the context it has
    /// instead of decoding the answer (encoding then decoding gives back the
    /// same context).
    pub fn holds_encoded_context(mut result: &[u8], context: &[u8]) -> bool {
        matches!(decode_key(&mut result), Ok((1, WireType::LengthDelimited)))
            && decode_varint(&mut result).is_ok_and(|len| len == context.len() as u64)
            && same_bytes(result, context)
    }

    /// Appends the encoding of a failed result with message `error` to `buf`.
    pub fn encode_error_into(error: &str, buf: &mut Vec<u8>) {
        let len = error.len();
        buf.reserve(key_len(2) + encoded_len_varint(len as u64) + len);
        put_delimited_start(2, len, buf);
        buf.put_slice(error.as_bytes());
    }

    /// The encoding of this result.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_into(&mut buf);
        buf
    }

    /// The result as a `Result`.
    pub fn into_result(self) -> Result<Context, String> {
        match self {
            RunResult::Context(context) => Ok(context),
            RunResult::Error(error) => Err(error),
        }
    }
}

impl From<Result<Context, String>> for RunResult {
    fn from(result: Result<Context, String>) -> Self {
        match result {
            Ok(context) => RunResult::Context(context),
            Err(error) => RunResult::Error(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_context_is_two_empty_messages() {
        assert_eq!(Context::default().encode_to_vec(), [0x0a, 0x00, 0x12, 0x00]);
    }

    #[test]
    fn non_default_empty_strings_are_written() {
        let mut ctx = Context::default();
        ctx.request.method.clear();
        let bytes = ctx.encode_to_vec();
        assert_eq!(bytes, [0x0a, 0x02, 0x0a, 0x00, 0x12, 0x00]);
        assert_eq!(Context::decode(&bytes[..]).unwrap(), ctx);
    }

    #[test]
    fn status_code_above_u16_is_refused() {
        // response { status_code: 70000 }
        let bytes = [0x12, 0x04, 0x08, 0xf0, 0xa2, 0x04];
        let err = Context::decode(&bytes[..]).unwrap_err();
        assert!(err.to_string().contains("status_code"), "{err}");
    }

    #[test]
    fn empty_run_result_is_an_error() {
        let err = RunResult::decode(&[][..]).unwrap_err();
        assert_eq!(err, DecodeError::empty_result());
    }

    #[test]
    fn encode_helpers_match_the_enum() {
        let ctx = Context::default();
        let mut a = Vec::new();
        RunResult::encode_context_into(&ctx, &mut a);
        assert_eq!(a, RunResult::Context(ctx).encode_to_vec());
        let mut b = Vec::new();
        RunResult::encode_error_into("boom", &mut b);
        assert_eq!(b, RunResult::Error("boom".into()).encode_to_vec());
    }
}
