//! The error of decoding, and the prost errors the codec builds for what
//! prost's own decoders do not check.
//!
//! The bottom of the codec: this module uses nothing else from the crate.

use core::fmt;

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
    /// A run result holding neither a context nor an error.
    pub(crate) fn empty_result() -> Self {
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

// prost offers no other way to describe a semantic error from inside
// `merge_field`; its constructor is deprecated but present in all of 0.14.

#[cold]
pub(crate) fn status_out_of_range() -> prost::DecodeError {
    #[allow(deprecated)]
    prost::DecodeError::new("status_code does not fit in 16 bits")
}

#[cold]
pub(crate) fn buffer_underflow() -> prost::DecodeError {
    #[allow(deprecated)]
    prost::DecodeError::new("buffer underflow")
}

#[cold]
pub(crate) fn too_many_headers() -> prost::DecodeError {
    #[allow(deprecated)]
    prost::DecodeError::new("more header names and values than a header map may hold")
}

#[cold]
pub(crate) fn not_utf8() -> prost::DecodeError {
    #[allow(deprecated)]
    prost::DecodeError::new("invalid string value: data is not UTF-8 encoded")
}
