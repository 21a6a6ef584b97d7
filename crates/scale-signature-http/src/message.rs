//! The protobuf codec of the context: [`Message`] for [`Context`],
//! [`Request`] and [`Response`] (and for a header entry while decoding),
//! and the public encoders and decoders of a context.
//!
//! Written by hand against `proto/http_signature.proto` with prost's
//! encoding primitives (the same ones `prost-derive` expands to), for two
//! reasons: the defaults of the signature (`GET`, `HTTP/1.1`, 200) are not
//! protobuf zero values, and the Go guest codec must produce the same
//! bytes, so the canonical form (documented in the `.proto` file) is spelled
//! out here, in one table of fields for each of the request and the
//! response.

use alloc::string::String;
use alloc::vec::Vec;

use bytes::{Buf, BufMut};
use prost::Message;
use prost::encoding::{
    DecodeContext, WireType, check_wire_type, decode_key, encode_varint, encoded_len_varint, key_len, message,
    skip_field, string,
};

use crate::error::{DecodeError, too_many_headers};
use crate::raw::chunked_copy;
use crate::types::{
    Context, DEFAULT_METHOD, DEFAULT_PROTOCOL, DEFAULT_STATUS, Headers, MAX_HEADER_ITEMS, Request, Response,
};

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

    /// The encoding of this context.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_into(&mut buf);
        buf
    }

    /// The lengths of the nested messages, each computed once. (prost's
    /// `message::encode` computes a nested message's length again at every
    /// level; contexts are encoded twice per run, so this pays.)
    #[inline]
    pub(crate) fn nested_lens(&self) -> NestedLens {
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

    /// Appends the encoding of this context, whose lengths are `lens`.
    #[inline]
    pub(crate) fn encode_with(&self, lens: NestedLens, buf: &mut Vec<u8>) {
        put_delimited_start(1, lens.request, buf);
        Message::encode_raw(&self.request, buf);
        put_delimited_start(2, lens.response, buf);
        Message::encode_raw(&self.response, buf);
    }
}

/// The encoded lengths of a context and of its two parts.
#[derive(Clone, Copy)]
pub(crate) struct NestedLens {
    request: usize,
    response: usize,
    pub(crate) context: usize,
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
pub(crate) fn put_delimited_start(tag: u32, len: usize, buf: &mut impl BufMut) {
    put_varint(u64::from(tag << 3 | WireType::LengthDelimited as u32), buf);
    put_varint(len as u64, buf);
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

/// The messages of the signature, as the validation walk
/// (`crate::validate`) tells them apart.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    Context,
    Request,
    Response,
    HeaderEntry,
    HeaderValues,
}

/// What a field of a [`Shape`] holds, for the validation walk.
pub(crate) enum FieldKind {
    Message(Shape),
    String,
    Bytes,
    Varint,
    Status,
    Unknown,
}

/// Whether a field of a part table is written: always, when it is not
/// empty, or when it is not its default.
macro_rules! written {
    ($value:expr) => {
        true
    };
    ($value:expr, empty) => {
        !$value.is_empty()
    };
    ($value:expr, $default:tt) => {
        $value != $default
    };
}

/// Implements [`Message`] for a part of the context (the request or the
/// response) from one table of its fields, so that encoding, the encoded
/// length, decoding and the validation walk (through `field_kind`) cannot
/// disagree on them.
///
/// A row `tag => field: kind unless default` says that `self.field` is
/// field `tag` on the wire, encoded, measured and merged by the functions of
/// the module `kind` below, and left out of the encoding when it equals
/// `default`, or is empty for `unless empty` (proto3's rule, with this
/// signature's defaults). A row without `unless` is always written (a
/// header map writes one field per entry, so none when empty).
///
/// Decoding a part on its own ends by sorting its header entries, as
/// decoding one inside a context does (see `Headers::finish_decoding`).
macro_rules! part_message {
    ($part:ty { $($tag:literal => $field:ident: $kind:ident $(unless $default:tt)?,)* }) => {
        impl Message for $part {
            fn encode_raw(&self, buf: &mut impl BufMut) {
                $(
                    if written!(self.$field $(, $default)?) {
                        $kind::encode($tag, &self.$field, buf);
                    }
                )*
            }

            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: WireType,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), prost::DecodeError> {
                match tag {
                    $($tag => $kind::merge(wire_type, &mut self.$field, buf, ctx),)*
                    _ => skip_field(wire_type, tag, buf, ctx),
                }
            }

            fn merge(&mut self, mut buf: impl Buf) -> Result<(), prost::DecodeError> {
                sorted(merge_fields(self, &mut buf), &mut self.headers)
            }

            fn merge_length_delimited(&mut self, mut buf: impl Buf) -> Result<(), prost::DecodeError> {
                let merged = message::merge(WireType::LengthDelimited, self, &mut buf, DecodeContext::default());
                sorted(merged, &mut self.headers)
            }

            fn encoded_len(&self) -> usize {
                let mut len = 0;
                $(
                    if written!(self.$field $(, $default)?) {
                        len += $kind::encoded_len($tag, &self.$field);
                    }
                )*
                len
            }

            fn clear(&mut self) {
                *self = Self::default();
            }
        }

        impl $part {
            /// What field `tag` holds, for the validation walk.
            #[inline]
            pub(crate) fn field_kind(tag: u32) -> FieldKind {
                match tag {
                    $($tag => $kind::KIND,)*
                    _ => FieldKind::Unknown,
                }
            }
        }
    };
}

part_message!(Request {
    1 => method: text unless DEFAULT_METHOD,
    2 => uri: text unless empty,
    3 => content_length: uint64 unless 0,
    4 => protocol: text unless DEFAULT_PROTOCOL,
    5 => ip: text unless empty,
    6 => body: body unless empty,
    7 => headers: header_map,
});

part_message!(Response {
    1 => status_code: status unless DEFAULT_STATUS,
    2 => body: body unless empty,
    3 => headers: header_map,
});

// The kinds of field of the part tables: how each is encoded, measured and
// merged, and what the validation walk checks it as.

/// A `string` field.
mod text {
    pub(super) use prost::encoding::string::{encode, encoded_len, merge};

    pub(super) const KIND: super::FieldKind = super::FieldKind::String;
}

/// A `uint64` field.
mod uint64 {
    pub(super) use prost::encoding::uint64::{encode, encoded_len, merge};

    pub(super) const KIND: super::FieldKind = super::FieldKind::Varint;
}

/// A `bytes` field holding a body, written a chunk at a time
/// ([`chunked_copy`]).
mod body {
    use bytes::{BufMut, Bytes};
    pub(super) use prost::encoding::bytes::{encoded_len, merge};

    use super::{chunked_copy, put_delimited_start};

    pub(super) const KIND: super::FieldKind = super::FieldKind::Bytes;

    /// As prost's `bytes::encode`, copying in chunks.
    pub(super) fn encode(tag: u32, body: &Bytes, buf: &mut impl BufMut) {
        put_delimited_start(tag, body.len(), buf);
        chunked_copy::put_slice(buf, body);
    }
}

/// The status code: a `uint32` on the wire that must fit in a `u16`.
mod status {
    use bytes::{Buf, BufMut};
    use prost::encoding::{DecodeContext, WireType, uint32};

    use crate::error::status_out_of_range;

    pub(super) const KIND: super::FieldKind = super::FieldKind::Status;

    #[inline(always)]
    pub(super) fn encode(tag: u32, status: &u16, buf: &mut impl BufMut) {
        uint32::encode(tag, &u32::from(*status), buf);
    }

    #[inline(always)]
    pub(super) fn encoded_len(tag: u32, status: &u16) -> usize {
        uint32::encoded_len(tag, &u32::from(*status))
    }

    #[inline]
    pub(super) fn merge(
        wire_type: WireType,
        status_code: &mut u16,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        let mut status = 0u32;
        uint32::merge(wire_type, &mut status, buf, ctx)?;
        *status_code = u16::try_from(status).map_err(|_| status_out_of_range())?;
        Ok(())
    }
}

/// A header map: `map<string, HeaderValues>`, each entry a message with the
/// name at tag 1 and a `HeaderValues { repeated string values = 1; }` at
/// tag 2.
mod header_map {
    use alloc::string::String;

    use bytes::{Buf, BufMut};
    use prost::encoding::{DecodeContext, WireType, encoded_len_varint, key_len, message, string};

    use super::{HeaderEntry, HeaderValuesMsg, put_delimited_start, values_len};
    use crate::error::too_many_headers;
    use crate::types::Headers;

    pub(super) const KIND: super::FieldKind = super::FieldKind::Message(super::Shape::HeaderEntry);

    fn entry_len(name: &String, values: &[String]) -> usize {
        let values_len = values_len(values);
        string::encoded_len(1, name) + key_len(2) + encoded_len_varint(values_len as u64) + values_len
    }

    pub(super) fn encoded_len(tag: u32, headers: &Headers) -> usize {
        headers
            .entries
            .iter()
            .map(|(name, values)| {
                let len = entry_len(name, values);
                key_len(tag) + encoded_len_varint(len as u64) + len
            })
            .sum()
    }

    pub(super) fn encode(tag: u32, headers: &Headers, buf: &mut impl BufMut) {
        for (name, values) in &headers.entries {
            put_delimited_start(tag, entry_len(name, values), buf);
            string::encode(1, name, buf);
            put_delimited_start(2, values_len(values), buf);
            string::encode_repeated(1, values, buf);
        }
    }

    /// Decodes one entry into `headers`.
    pub(super) fn merge(
        wire_type: WireType,
        headers: &mut Headers,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // An entry without a name field has the empty name, as when decoding
        // into a fresh entry; `string::merge` replaces the contents otherwise.
        let (name, values) = headers.take_recycled();
        let mut entry = HeaderEntry { name, values: HeaderValuesMsg::recycled(values) };
        message::merge(wire_type, &mut entry, buf, ctx)?;
        if !headers.count_decoded(1 + entry.values.used) {
            return Err(too_many_headers());
        }
        headers.insert_entry(entry.name, entry.values.into_values());
        Ok(())
    }
}

fn values_len(values: &[String]) -> usize {
    values.iter().map(|value| string::encoded_len(1, value)).sum()
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
}
