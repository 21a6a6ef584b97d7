//! [`RunResult`]: what a run hands back, a context or an error message.

use alloc::string::String;
use alloc::vec::Vec;

use bytes::{Buf, BufMut};
use prost::encoding::{
    DecodeContext, WireType, check_wire_type, decode_key, encoded_len_varint, key_len, message, skip_field, string,
};

use crate::error::DecodeError;
use crate::message::put_delimited_start;
use crate::types::Context;

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

/// Appends the encoding of a successful result holding `context` to `buf`,
/// without moving the context into a [`RunResult`].
pub fn encode_context_result_into(context: &Context, buf: &mut Vec<u8>) {
    let lens = context.nested_lens();
    start_context_field(lens.context, buf);
    context.encode_with(lens, buf);
}

/// Appends the encoding of a failed result with message `error` to `buf`,
/// without moving the message into a [`RunResult`].
pub fn encode_error_result_into(error: &str, buf: &mut Vec<u8>) {
    let len = error.len();
    buf.reserve(key_len(2) + encoded_len_varint(len as u64) + len);
    put_delimited_start(2, len, buf);
    buf.put_slice(error.as_bytes());
}

/// Starts a result's context field (tag 1) of `len` bytes, reserving room
/// for all of it.
#[inline]
pub(crate) fn start_context_field(len: usize, buf: &mut Vec<u8>) {
    buf.reserve(key_len(1) + encoded_len_varint(len as u64) + len);
    put_delimited_start(1, len, buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_run_result_is_an_error() {
        let err = RunResult::decode(&[][..]).unwrap_err();
        assert_eq!(err, DecodeError::empty_result());
    }

    #[test]
    fn encode_helpers_match_the_enum() {
        let ctx = Context::default();
        let mut a = Vec::new();
        encode_context_result_into(&ctx, &mut a);
        assert_eq!(a, RunResult::Context(ctx).encode_to_vec());
        let mut b = Vec::new();
        encode_error_result_into("boom", &mut b);
        assert_eq!(b, RunResult::Error("boom".into()).encode_to_vec());
    }
}
