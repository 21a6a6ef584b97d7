//! [`EncodedContext`]: the bytes of an encoded context, and the fast paths
//! that work on them where a decode and an encode would give back the same
//! bytes: finding the request and the response without decoding, checking
//! only what changed since a context was sent, copying unchanged parts.

use alloc::string::String;
use alloc::vec::Vec;

use bytes::Bytes;
use prost::Message;
use prost::encoding::{WireType, decode_key, decode_varint, encoded_len_varint, key_len};

use super::chunked_copy::{self, ChunkedSlice};
use crate::error::DecodeError;
use crate::message::{Shape, put_delimited_start};
use crate::run_result::{RunResult, start_context_field};
use crate::types::{Context, Request, Response};
use crate::validate::{check_or_decode, take_delimited};

/// The bytes of an encoded context, unchecked until a method checks them.
///
/// Every encoder of this crate and of the Go guest package writes a context
/// as exactly two fields, the request (field 1) then the response
/// (field 2), each with a one-byte key: the *usual layout*. The methods
/// here recognise it, to find the encoded request and response without
/// decoding them, and give way to the decoder for any other valid encoding,
/// so that each accepts exactly what the decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedContext<'a> {
    bytes: &'a [u8],
}

impl<'a> EncodedContext<'a> {
    /// A view of `bytes` as an encoded context.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The context that the encoded run result `result` carries, when the
    /// result is made of exactly one context field, as every encoder writes
    /// it; `None` for anything else, error results included.
    ///
    /// A guest that encodes its context as a result before handing it to
    /// `next` sends these bytes, and can answer with the whole result if the
    /// context comes back unchanged.
    pub fn of_result(result: &'a [u8]) -> Option<Self> {
        let mut rest = result;
        take_field(&mut rest, 1).filter(|_| rest.is_empty()).map(Self::new)
    }

    /// The bytes.
    #[inline]
    pub fn as_bytes(self) -> &'a [u8] {
        self.bytes
    }

    /// The encodings of the request and of the response, when the context
    /// is in the usual layout; else `None`. The parts are not checked.
    pub fn parts(self) -> Option<(&'a [u8], &'a [u8])> {
        let mut context = self.bytes;
        let request = take_field(&mut context, 1)?;
        let response = take_field(&mut context, 2)?;
        context.is_empty().then_some((request, response))
    }

    /// Checks that the bytes decode as a context, as [`Context::validate`].
    ///
    /// # Errors
    ///
    /// As [`Context::decode`].
    pub fn validate(self) -> Result<(), DecodeError> {
        Context::validate(self.bytes)
    }

    /// [`validate`](Self::validate), knowing that `sent` is a valid encoding
    /// of a context (one the caller encoded itself): when these bytes carry
    /// the same request as `sent`, only their response is checked. Accepts
    /// exactly what `validate` accepts.
    ///
    /// # Errors
    ///
    /// As [`Context::decode`].
    pub fn validate_against(self, sent: EncodedContext<'_>) -> Result<(), DecodeError> {
        match self.response_after_request_of(sent) {
            Some(response) => check_or_decode(self.bytes, response, Shape::Response),
            None => self.validate(),
        }
    }

    /// The encoded response, when the request before it is, byte for byte,
    /// the one in `sent` (both contexts in the usual layout).
    fn response_after_request_of(self, sent: EncodedContext<'_>) -> Option<&'a [u8]> {
        let (sent_request, _) = sent.parts()?;
        let (request, response) = self.parts()?;
        same_bytes(sent_request, request).then_some(response)
    }

    /// Whether `result` is exactly the encoding of a successful run result
    /// holding this context, byte for byte. A guest that gets back, from
    /// `next`, the context it sent can keep the context it has instead of
    /// decoding the answer (encoding then decoding gives back the same
    /// context).
    pub fn is_context_of(self, mut result: &[u8]) -> bool {
        matches!(decode_key(&mut result), Ok((1, WireType::LengthDelimited)))
            && decode_varint(&mut result).is_ok_and(|len| len == self.bytes.len() as u64)
            && same_bytes(result, self.bytes)
    }

    /// Appends the encoding of a successful run result holding this context
    /// to `buf`, copying the bytes as they are once they are checked: the
    /// answer to a `next` that leaves the context unchanged, with no
    /// decoding or re-encoding.
    ///
    /// # Errors
    ///
    /// The bytes are not a valid context encoding ([`Context::validate`]);
    /// `buf` is left as it was.
    pub fn encode_result_into(self, buf: &mut Vec<u8>) -> Result<(), DecodeError> {
        self.validate()?;
        start_context_field(self.bytes.len(), buf);
        chunked_copy::extend(buf, self.bytes);
        Ok(())
    }

    /// [`RunResult::decode_into`] for the answer `result` to a run that was
    /// handed these bytes, the encoding of a context whose request is
    /// `request`. When the answer's context carries this request byte for
    /// byte (a function that did not touch the request), `request` trades
    /// places with `context.request` instead of being decoded again:
    /// decoding what was encoded gives back the same request. Otherwise, and
    /// for error results, this is `decode_into`, and `request` is left as
    /// it was.
    ///
    /// # Errors
    ///
    /// As [`RunResult::decode`]; `request` is left as it was.
    pub fn decode_result_reusing(
        self,
        result: &[u8],
        context: &mut Context,
        request: &mut Request,
    ) -> Result<Option<String>, DecodeError> {
        match EncodedContext::of_result(result).and_then(|answer| answer.response_after_request_of(self)) {
            Some(response) => {
                context.reset();
                Message::merge(&mut context.response, ChunkedSlice(response)).map_err(DecodeError::from)?;
                core::mem::swap(&mut context.request, request);
                Ok(None)
            }
            None => RunResult::decode_into(ChunkedSlice(result), context),
        }
    }

    /// Appends the encoding of a context made of the request encoded in
    /// `request`, copied as it is, and `response`. For a request known to
    /// be valid, such as one [`parts`](Self::parts) found in a valid
    /// context: other bytes make a context its reader rejects.
    pub fn encode_parts_into(request: &[u8], response: &Response, buf: &mut Vec<u8>) {
        let response_len = Message::encoded_len(response);
        buf.reserve(parts_len(request, response_len));
        encode_parts_with(request, response, response_len, buf);
    }

    /// Appends the encoding of a successful run result holding the context
    /// that [`encode_parts_into`](Self::encode_parts_into) encodes.
    pub fn encode_parts_as_result_into(request: &[u8], response: &Response, buf: &mut Vec<u8>) {
        let response_len = Message::encoded_len(response);
        start_context_field(parts_len(request, response_len), buf);
        encode_parts_with(request, response, response_len, buf);
    }
}

/// Decodes an encoded request into `request`, replacing every field but
/// reusing its allocations.
///
/// # Errors
///
/// `bytes` is not a valid encoding; the request is then partly overwritten.
pub fn decode_request_in_place(request: &mut Request, bytes: &[u8]) -> Result<(), DecodeError> {
    request.reset();
    Message::merge(request, ChunkedSlice(bytes)).map_err(DecodeError::from)
}

/// [`decode_request_in_place`] from bytes the request may keep: the decoded
/// body is a view of `bytes` rather than a copy.
///
/// # Errors
///
/// As [`decode_request_in_place`].
pub fn decode_request_in_place_shared(request: &mut Request, bytes: Bytes) -> Result<(), DecodeError> {
    request.reset();
    Message::merge(request, bytes).map_err(DecodeError::from)
}

/// Decodes an encoded response into `response`, replacing every field but
/// reusing its allocations.
///
/// # Errors
///
/// `bytes` is not a valid encoding; the response is then partly overwritten.
pub fn decode_response_in_place(response: &mut Response, bytes: &[u8]) -> Result<(), DecodeError> {
    response.reset();
    Message::merge(response, ChunkedSlice(bytes)).map_err(DecodeError::from)
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
    chunked_copy::extend(buf, request);
    put_delimited_start(2, response_len, buf);
    Message::encode_raw(response, buf);
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

/// `a == b`, eight bytes at a step on wasm, where `memcmp` compares one
/// byte at a time: for a large context, slower than decoding it.
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
