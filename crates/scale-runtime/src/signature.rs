//! Signatures: what the context is and how it crosses into a guest.

use scale_signature_http::raw::chunked_copy::ChunkedSlice;
use scale_signature_http::raw::{self, EncodedContext};

/// The contract between host and guests: the context type and its wire
/// format. A runtime is generic over it; [`scale_signature_http::Context`]
/// (the HTTP signature) is the default and the one the SDKs target.
///
/// A guest is built against one signature, recorded in its `.scale` file as
/// `name@version`; the runtime refuses functions built for another.
///
/// Four methods carry a context across: [`encode`](Signature::encode) what
/// the host hands a guest, [`decode`](Signature::decode) what a guest hands
/// to `next`, [`encode_result`](Signature::encode_result) the answer to
/// `next`, and [`decode_result`](Signature::decode_result) what a guest's
/// `run` returns. The provided methods are shortcuts the runtime takes on
/// every run; their defaults are built on the four, and a signature
/// overrides them only to go faster. The project's `docs/embedding.md`
/// walks through a signature of one's own, and `examples/custom_signature.rs`
/// runs one.
///
/// Bytes handed to `decode` and `decode_result` are borrowed straight from
/// guest memory: an implementation copies what it keeps, and must cope with
/// any bytes at all (a guest may be hostile) by returning an error.
pub trait Signature: Default + Send + 'static {
    /// The signature's name, as recorded in `.scale` files.
    const NAME: &'static str;
    /// The signature's version, as recorded in `.scale` files.
    const VERSION: &'static str;

    /// Why bytes do not decode.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Appends the encoding of this context to `buf`.
    fn encode(&self, buf: &mut Vec<u8>);

    /// Decodes `bytes` into this context, reusing its allocations. After an
    /// error, the context holds some valid but unspecified value.
    fn decode(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Appends the encoding of a run's outcome (a context, or an error
    /// message) to `buf`: what the host answers a guest's `next` with.
    fn encode_result(result: Result<&Self, &str>, buf: &mut Vec<u8>);

    /// Decodes a run's outcome, as a guest's `run` returns it, into this
    /// context: `Ok(Ok(()))` leaves the decoded context here, `Ok(Err(message))`
    /// is an error outcome. After an error outcome or a decode error, the
    /// context holds some valid but unspecified value.
    fn decode_result(&mut self, bytes: &[u8]) -> Result<Result<(), String>, Self::Error>;

    /// Sets this context back to the default, as `Self::default()` would.
    /// Implementations may keep allocations for reuse.
    fn reset(&mut self) {
        *self = Self::default();
    }

    /// Checks that `context`, what a guest handed to `next`, decodes. The
    /// runtime asks this instead of decoding when the chain ends there with
    /// no native handlers: the guest is told "unchanged" and nothing is
    /// kept. `sent` is what that guest was handed (encoded by the runtime,
    /// so valid): an implementation may skip checking the parts of `context`
    /// equal to `sent`'s, but must accept exactly what `decode` accepts.
    ///
    /// The default decodes `context` into a fresh value.
    fn validate(context: &[u8], sent: &[u8]) -> Result<(), Self::Error> {
        let _ = sent;
        Self::default().decode(context)
    }

    /// Appends to `buf` a successful outcome holding the context encoded in
    /// `context`: the answer to a `next` that leaves the context unchanged,
    /// for guests of ABI version 1, which are sent their context back. Bytes
    /// that do not decode are an error.
    ///
    /// The default decodes `context` and encodes it back; an implementation
    /// may check the bytes and copy them instead.
    fn encode_unchanged_result(context: &[u8], buf: &mut Vec<u8>) -> Result<(), Self::Error> {
        let mut decoded = Self::default();
        decoded.decode(context)?;
        Self::encode_result(Ok(&decoded), buf);
        Ok(())
    }

    /// [`decode_result`](Signature::decode_result) of the outcome of a run
    /// that was handed `sent`, the encoding of `previous`. An implementation
    /// may move into `self` the parts of `previous` that came back unchanged
    /// instead of decoding them again. The runtime discards `previous` after
    /// a successful outcome; after an error outcome or a decode error,
    /// `previous` must be as it was.
    ///
    /// The default calls `decode_result`.
    fn decode_result_reusing(
        &mut self,
        bytes: &[u8],
        sent: &[u8],
        previous: &mut Self,
    ) -> Result<Result<(), String>, Self::Error> {
        let _ = (sent, previous);
        self.decode_result(bytes)
    }
}

/// `name@version` of a signature.
pub(crate) fn id<S: Signature>() -> String {
    format!("{}@{}", S::NAME, S::VERSION)
}

impl Signature for scale_signature_http::Context {
    const NAME: &'static str = scale_signature_http::SIGNATURE_NAME;
    const VERSION: &'static str = scale_signature_http::SIGNATURE_VERSION;

    type Error = scale_signature_http::DecodeError;

    fn encode(&self, buf: &mut Vec<u8>) {
        self.encode_into(buf);
    }

    fn decode(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.decode_in_place(ChunkedSlice(bytes))
    }

    fn encode_result(result: Result<&Self, &str>, buf: &mut Vec<u8>) {
        match result {
            Ok(context) => raw::encode_context_result_into(context, buf),
            Err(message) => raw::encode_error_result_into(message, buf),
        }
    }

    fn decode_result(&mut self, bytes: &[u8]) -> Result<Result<(), String>, Self::Error> {
        Ok(run_outcome(scale_signature_http::RunResult::decode_into(ChunkedSlice(bytes), self)?))
    }

    fn reset(&mut self) {
        scale_signature_http::Context::reset(self);
    }

    fn validate(context: &[u8], sent: &[u8]) -> Result<(), Self::Error> {
        EncodedContext::new(context).validate_against(EncodedContext::new(sent))
    }

    fn encode_unchanged_result(context: &[u8], buf: &mut Vec<u8>) -> Result<(), Self::Error> {
        EncodedContext::new(context).encode_result_into(buf)
    }

    fn decode_result_reusing(
        &mut self,
        bytes: &[u8],
        sent: &[u8],
        previous: &mut Self,
    ) -> Result<Result<(), String>, Self::Error> {
        let error = EncodedContext::new(sent).decode_result_reusing(bytes, self, &mut previous.request)?;
        Ok(run_outcome(error))
    }
}

/// A decoded result's error message, if it held one, as a run's outcome.
fn run_outcome(error: Option<String>) -> Result<(), String> {
    error.map_or(Ok(()), Err)
}
