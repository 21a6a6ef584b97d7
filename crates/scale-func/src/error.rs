//! The errors of building and decoding a function, and the small enums
//! they use to say where a problem is.
//!
//! Above the rules, the language and the signature id, whose errors these
//! wrap; below the format, which gives them.

use std::fmt;

use crate::constants::{FORMAT_VERSION, MAGIC};
use crate::display::{hex_bytes, quoted};
use crate::language::{Language, ParseLanguageError};
use crate::rules::{Malformed, NotWasm};
use crate::signature_id::SignatureIdError;

/// Why [`ScaleFunc::new`](crate::ScaleFunc::new) refused its arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The function name breaks the naming rules.
    #[error("invalid function name {}: {problem}", quoted(.value))]
    InvalidName {
        /// The offending name.
        value: String,
        /// What is wrong with it.
        problem: Malformed,
    },
    /// The tag breaks the naming rules.
    #[error("invalid tag {}: {problem}", quoted(.value))]
    InvalidTag {
        /// The offending tag.
        value: String,
        /// What is wrong with it.
        problem: Malformed,
    },
    /// The language is reserved and cannot be packed yet.
    #[error("language {0} is reserved: functions written in it cannot be packed yet")]
    UnsupportedLanguage(Language),
    /// The function bytes are not a WebAssembly core module.
    #[error("the function is not a WebAssembly module: {0}")]
    NotWasm(NotWasm),
    /// The function does not fit the format's 32-bit length field.
    #[error(
        "the function is {len} bytes long, but a .scale file holds at most {max} bytes",
        max = u32::MAX
    )]
    FunctionTooLarge {
        /// Length of the function bytes.
        len: usize,
    },
}

/// A field of a `.scale` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The function name.
    Name,
    /// The tag.
    Tag,
    /// The signature, as `name@version` text.
    Signature,
    /// The language name.
    Language,
    /// The WebAssembly module.
    Function,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Name => "name",
            Field::Tag => "tag",
            Field::Signature => "signature",
            Field::Language => "language",
            Field::Function => "function",
        })
    }
}

/// A part of a `.scale` file, to say where decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Section {
    /// The 8 magic bytes at the start.
    Magic,
    /// The `u16` format version.
    Version,
    /// The `u32` length prefix of a field.
    Length(Field),
    /// The contents of a field.
    Value(Field),
    /// The 32-byte SHA-256 at the end.
    Checksum,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Section::Magic => f.write_str("the magic bytes"),
            Section::Version => f.write_str("the format version"),
            Section::Length(field) => write!(f, "the length of the {field}"),
            Section::Value(field) => write!(f, "the {field}"),
            Section::Checksum => f.write_str("the checksum"),
        }
    }
}

/// What input that is not a `.scale` file looks like instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotScaleHint {
    /// The input is empty.
    Empty,
    /// The input starts (after optional whitespace) with `{` or `[`.
    Json,
    /// The input starts with `\0asm`: a bare WebAssembly module.
    Wasm,
    /// The magic is recognisable but damaged, as a text-mode transfer
    /// (line-ending or character-set conversion) would leave it.
    Mangled,
    /// Nothing recognisable.
    Unrecognized,
}

impl fmt::Display for NotScaleHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotScaleHint::Empty => f.write_str("the input is empty"),
            NotScaleHint::Json => f.write_str("it looks like JSON (a Scale JSON file?), but .scale files are binary"),
            NotScaleHint::Wasm => {
                f.write_str("it looks like a raw WebAssembly module: pack it into a .scale file first")
            }
            NotScaleHint::Mangled => f.write_str(
                "it looks like a .scale file damaged by a text-mode transfer \
                 (line endings or character set converted); transfer it as binary",
            ),
            NotScaleHint::Unrecognized => {
                write!(f, "it does not start with the .scale magic bytes {}", hex_bytes(&MAGIC))
            }
        }
    }
}

/// Why [`ScaleFunc::decode`](crate::ScaleFunc::decode) refused its input.
///
/// Checks run in this order: magic, format version, field framing
/// (truncation), checksum, trailing bytes, then the contents of each field.
/// So a corrupted file reports [`ChecksumMismatch`](Self::ChecksumMismatch),
/// not whatever its corrupted fields happen to break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input does not start with [`MAGIC`].
    #[error("not a .scale file: {hint}")]
    NotAScaleFile {
        /// What the input looks like instead.
        hint: NotScaleHint,
    },
    /// The format version is not one this crate reads.
    #[error(
        "unsupported .scale format version {0}: this build reads version {v}",
        v = FORMAT_VERSION.as_u16()
    )]
    UnknownVersion(u16),
    /// The input ends before a part it must contain, or a length prefix
    /// claims more bytes than remain.
    #[error(
        "truncated .scale file: {section} at byte offset {offset} needs {needed} bytes, \
         but only {available} remain"
    )]
    Truncated {
        /// The part being read.
        section: Section,
        /// Byte offset where that part starts.
        offset: usize,
        /// Bytes the part needs.
        needed: usize,
        /// Bytes left in the input from `offset`.
        available: usize,
    },
    /// The SHA-256 stored at the end does not match the bytes before it.
    #[error(
        "checksum mismatch, the file is corrupted: it records SHA-256 {expected_hex} \
         but its contents hash to {actual_hex}"
    )]
    ChecksumMismatch {
        /// The checksum stored in the file, as lowercase hex.
        expected_hex: String,
        /// The checksum of the file's contents, as lowercase hex.
        actual_hex: String,
    },
    /// Bytes follow the checksum.
    #[error("the input goes on after the checksum: {count} more byte(s) from byte offset {offset}")]
    TrailingBytes {
        /// Byte offset just past the checksum.
        offset: usize,
        /// How many bytes follow it.
        count: usize,
    },
    /// A text field is not UTF-8.
    #[error("the {field} is not valid UTF-8 (bad byte at offset {offset})")]
    InvalidUtf8 {
        /// The field.
        field: Field,
        /// Byte offset, in the whole input, of the first invalid byte.
        offset: usize,
    },
    /// The stored function name breaks the naming rules.
    #[error("invalid function name {} in .scale file: {problem}", quoted(.value))]
    InvalidName {
        /// The offending name.
        value: String,
        /// What is wrong with it.
        problem: Malformed,
    },
    /// The stored tag breaks the naming rules.
    #[error("invalid tag {} in .scale file: {problem}", quoted(.value))]
    InvalidTag {
        /// The offending tag.
        value: String,
        /// What is wrong with it.
        problem: Malformed,
    },
    /// The stored signature is malformed.
    #[error("invalid signature in .scale file: {0}")]
    InvalidSignature(SignatureIdError),
    /// The stored language names no known language.
    #[error("in .scale file: {0}")]
    UnknownLanguage(ParseLanguageError),
    /// The stored language is a reserved one this crate cannot load.
    #[error("the .scale file holds a {0} function, a reserved language that is not supported yet")]
    UnsupportedLanguage(Language),
    /// The stored function is not a WebAssembly core module.
    #[error("the function in the .scale file is not a WebAssembly module: {0}")]
    NotWasm(NotWasm),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_in_messages() {
        let value = "x".repeat(1000);
        let err = Error::InvalidName { value: value.clone(), problem: Malformed::TooLong { len: 1000, max: 255 } };
        let msg = err.to_string();
        assert!(msg.len() < 300, "{msg}");
        assert!(msg.contains("1000 bytes in all"), "{msg}");
    }
}
