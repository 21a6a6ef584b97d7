//! Signatures: what the context is and how it crosses into a guest.

use bytes::Bytes;
use scale_signature_http::pieces;

/// A boxed error, for codec failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The contract between host and guests: the context type and its wire
/// format. A runtime is generic over it; [`scale_signature_http::Context`]
/// (the HTTP signature) is the default and the one the SDKs target.
///
/// A guest is built against one signature, recorded in its `.scale` file as
/// `name@version`; the runtime refuses functions built for another.
pub trait Signature: Default + Send + 'static {
    /// The signature's name, as recorded in `.scale` files.
    const NAME: &'static str;
    /// The signature's version, as recorded in `.scale` files.
    const VERSION: &'static str;

    /// Appends the encoding of this context to `buf`.
    fn encode(&self, buf: &mut Vec<u8>);

    /// Decodes a context.
    fn decode(bytes: Bytes) -> Result<Self, BoxError>;

    /// Decodes a context into `into`, reusing its allocations. `bytes` are
    /// borrowed straight from guest memory (what a guest hands to `next`),
    /// so an implementation copies what it keeps. After an error, `into`
    /// holds some valid but unspecified context. The default implementation
    /// copies `bytes` and calls [`Signature::decode`].
    fn decode_into(bytes: &[u8], into: &mut Self) -> Result<(), BoxError> {
        *into = Self::decode(Bytes::copy_from_slice(bytes))?;
        Ok(())
    }

    /// Appends the encoding of a run's outcome (this context, or an error
    /// message) to `buf`: what the host answers a guest's `next` with.
    fn encode_result(result: Result<&Self, &str>, buf: &mut Vec<u8>);

    /// Appends to `buf` the answer to a `next` call that leaves the context
    /// unchanged (the chain ends there with no native handlers): a successful
    /// outcome holding the context encoded in `context`, the bytes a guest
    /// handed to `next`. Bytes that do not decode are an error.
    ///
    /// The default implementation decodes `context` and encodes it back. An
    /// implementation may instead check the bytes and copy them, as the HTTP
    /// signature does: that saves the round trip through `Self`.
    fn encode_unchanged_result(context: &[u8], buf: &mut Vec<u8>) -> Result<(), BoxError> {
        let mut decoded = Self::default();
        Self::decode_into(context, &mut decoded)?;
        Self::encode_result(Ok(&decoded), buf);
        Ok(())
    }

    /// Checks that `context` is a valid encoding, keeping nothing: what the
    /// runtime does with the context a guest hands to `next` when the chain
    /// ends there and the guest is only told "unchanged".
    ///
    /// The default implementation decodes `context` into a fresh value.
    fn validate(context: &[u8]) -> Result<(), BoxError> {
        Self::decode_into(context, &mut Self::default())
    }

    /// [`Signature::validate`], where `sent` is a context the runtime
    /// encoded itself (so valid): what the guest handing `context` to `next`
    /// was given. Implementations may skip checking the parts of `context`
    /// equal to `sent`'s, but must accept exactly what `validate` accepts.
    ///
    /// The default implementation is `validate(context)`.
    fn validate_reusing(context: &[u8], sent: &[u8]) -> Result<(), BoxError> {
        let _ = sent;
        Self::validate(context)
    }

    /// Decodes a run's outcome, as a guest's `run` returns it.
    fn decode_result(bytes: Bytes) -> Result<Result<Self, String>, BoxError>;

    /// Decodes a run's outcome into `into`, reusing its allocations: `Ok(Ok(()))`
    /// leaves the decoded context in `into`. After an error result or a decode
    /// error, `into` holds some valid but unspecified context.
    ///
    /// The runtime calls this one on every run, with `bytes` borrowed
    /// straight from guest memory, so an implementation copies what it keeps.
    /// The default implementation copies `bytes` and calls
    /// [`Signature::decode_result`].
    fn decode_result_into(bytes: &[u8], into: &mut Self) -> Result<Result<(), String>, BoxError> {
        Ok(Self::decode_result(Bytes::copy_from_slice(bytes))?.map(|context| *into = context))
    }

    /// Decodes the outcome of a run that was handed `sent`, the encoding of
    /// `previous`, into `into`, as [`Signature::decode_result_into`] does. An
    /// implementation may move into `into` the parts of `previous` that came
    /// back unchanged instead of decoding them again. The runtime discards
    /// `previous` after a successful outcome; after an error outcome or a
    /// decode error, `previous` must be as it was.
    ///
    /// The default implementation calls [`Signature::decode_result_into`].
    fn decode_result_reusing(
        bytes: &[u8],
        into: &mut Self,
        sent: &[u8],
        previous: &mut Self,
    ) -> Result<Result<(), String>, BoxError> {
        let _ = (sent, previous);
        Self::decode_result_into(bytes, into)
    }

    /// Sets this context back to the default, as `Self::default()` would.
    /// Implementations may keep allocations for reuse.
    fn reset(&mut self) {
        *self = Self::default();
    }

    /// `name@version`.
    fn id() -> String {
        format!("{}@{}", Self::NAME, Self::VERSION)
    }
}

impl Signature for scale_signature_http::Context {
    const NAME: &'static str = scale_signature_http::SIGNATURE_NAME;
    const VERSION: &'static str = scale_signature_http::SIGNATURE_VERSION;

    fn encode(&self, buf: &mut Vec<u8>) {
        self.encode_into(buf);
    }

    fn decode(bytes: Bytes) -> Result<Self, BoxError> {
        Ok(scale_signature_http::Context::decode(bytes)?)
    }

    fn decode_into(bytes: &[u8], into: &mut Self) -> Result<(), BoxError> {
        Ok(into.decode_in_place(pieces::Slice(bytes))?)
    }

    fn encode_result(result: Result<&Self, &str>, buf: &mut Vec<u8>) {
        match result {
            Ok(context) => scale_signature_http::RunResult::encode_context_into(context, buf),
            Err(message) => scale_signature_http::RunResult::encode_error_into(message, buf),
        }
    }

    fn encode_unchanged_result(context: &[u8], buf: &mut Vec<u8>) -> Result<(), BoxError> {
        Ok(scale_signature_http::RunResult::encode_encoded_context_into(context, buf)?)
    }

    fn validate(context: &[u8]) -> Result<(), BoxError> {
        Ok(scale_signature_http::Context::validate(context)?)
    }

    fn validate_reusing(context: &[u8], sent: &[u8]) -> Result<(), BoxError> {
        Ok(scale_signature_http::Context::validate_reusing(context, sent)?)
    }

    fn decode_result(bytes: Bytes) -> Result<Result<Self, String>, BoxError> {
        Ok(scale_signature_http::RunResult::decode(bytes)?.into_result())
    }

    fn decode_result_into(bytes: &[u8], into: &mut Self) -> Result<Result<(), String>, BoxError> {
        Ok(run_outcome(scale_signature_http::RunResult::decode_into(pieces::Slice(bytes), into)?))
    }

    fn decode_result_reusing(
        bytes: &[u8],
        into: &mut Self,
        sent: &[u8],
        previous: &mut Self,
    ) -> Result<Result<(), String>, BoxError> {
        let error =
            scale_signature_http::RunResult::decode_into_reusing_request(bytes, into, sent, &mut previous.request)?;
        Ok(run_outcome(error))
    }

    fn reset(&mut self) {
        scale_signature_http::Context::reset(self);
    }
}

/// A decoded result's error message, if it held one, as a run's outcome.
fn run_outcome(error: Option<String>) -> Result<(), String> {
    error.map_or(Ok(()), Err)
}
