//! The character-set and length rules for names, tags and signatures, the
//! header check of the function bytes, and the errors they give.
//!
//! Uses only the bottom of the crate: [`constants`](crate::constants) and
//! [`display`](crate::display).

use crate::constants::{MAX_NAME_LEN, WASM_HEADER};
use crate::display::hex_bytes;

/// Why a function name, a tag, or one half of a [`SignatureId`](crate::SignatureId)
/// was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The value is the empty string.
    #[error("it is empty")]
    Empty,
    /// The value is longer than the limit.
    #[error("it is {len} bytes long, more than the {max} allowed")]
    TooLong {
        /// Length of the value, in bytes.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The value contains a character outside its allowed set.
    #[error("it contains {ch:?} at byte {index}, but only {allowed} are allowed")]
    ForbiddenChar {
        /// The first offending character.
        ch: char,
        /// Byte index of `ch` in the value.
        index: usize,
        /// Human description of the characters the value may contain.
        allowed: &'static str,
    },
}

/// Why the function bytes are not a WebAssembly core module.
///
/// A module must start with the 8-byte header `00 61 73 6d 01 00 00 00`:
/// the magic `\0asm` followed by the binary format version 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotWasm {
    /// Fewer than 8 bytes: not even a complete header.
    #[error("it is only {len} bytes long, shorter than the 8-byte WebAssembly header")]
    TooShort {
        /// Length of the function bytes.
        len: usize,
    },
    /// The first four bytes are not `\0asm`.
    #[error(
        "it starts with {} instead of the WebAssembly magic 00 61 73 6d (\"\\0asm\")",
        hex_bytes(.found)
    )]
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// The magic is right but the version is not 1.
    #[error("{}", describe_wasm_version(.found))]
    UnsupportedVersion {
        /// Bytes 4 to 7 of the function, the version field.
        found: [u8; 4],
    },
}

fn describe_wasm_version(found: &[u8; 4]) -> String {
    // Bytes 4..6 are the version, 6..8 the layer; layer 1 is a component.
    if found[2..] == [1, 0] {
        format!(
            "it is a WebAssembly component (version/layer bytes {}), not a core module; \
             only core modules (version 1) can be packed",
            hex_bytes(found)
        )
    } else {
        format!(
            "its WebAssembly version bytes are {} instead of 01 00 00 00; \
             only core modules of version 1 can be packed",
            hex_bytes(found)
        )
    }
}

/// Checks `value` is non-empty, at most [`MAX_NAME_LEN`] bytes, and made of
/// characters accepted by `allowed` (described for humans by `described`).
fn check(value: &str, allowed: fn(char) -> bool, described: &'static str) -> Result<(), Malformed> {
    if value.is_empty() {
        return Err(Malformed::Empty);
    }
    if value.len() > MAX_NAME_LEN {
        return Err(Malformed::TooLong { len: value.len(), max: MAX_NAME_LEN });
    }
    match value.char_indices().find(|&(_, ch)| !allowed(ch)) {
        Some((index, ch)) => Err(Malformed::ForbiddenChar { ch, index, allowed: described }),
        None => Ok(()),
    }
}

/// Function names and tags: `[A-Za-z0-9.-]`, 1 to 255 bytes.
pub(crate) fn check_name(value: &str) -> Result<(), Malformed> {
    check(value, |ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.', "ASCII letters, digits, '-' and '.'")
}

/// Signature names: `[a-z0-9-]`, 1 to 255 bytes.
pub(crate) fn check_signature_name(value: &str) -> Result<(), Malformed> {
    check(
        value,
        |ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-',
        "lowercase ASCII letters, digits and '-'",
    )
}

/// Signature versions: `[A-Za-z0-9.-]`, 1 to 255 bytes.
pub(crate) fn check_signature_version(value: &str) -> Result<(), Malformed> {
    check(value, |ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.', "ASCII letters, digits, '.' and '-'")
}

/// Checks `function` starts with [`WASM_HEADER`].
pub(crate) fn check_wasm(function: &[u8]) -> Result<(), NotWasm> {
    let Some(&[m0, m1, m2, m3, v0, v1, v2, v3]) = function.first_chunk::<8>() else {
        return Err(NotWasm::TooShort { len: function.len() });
    };
    let (magic, version) = ([m0, m1, m2, m3], [v0, v1, v2, v3]);
    if magic[..] != WASM_HEADER[..4] {
        return Err(NotWasm::BadMagic { found: magic });
    }
    if version[..] != WASM_HEADER[4..] {
        return Err(NotWasm::UnsupportedVersion { found: version });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_their_alphabet() {
        assert_eq!(check_name("Hello-World.v2"), Ok(()));
        assert_eq!(check_name(&"a".repeat(MAX_NAME_LEN)), Ok(()));
    }

    #[test]
    fn names_refuse_outsiders() {
        assert!(matches!(check_name("a b"), Err(Malformed::ForbiddenChar { ch: ' ', index: 1, .. })));
        assert!(matches!(check_name("ab_"), Err(Malformed::ForbiddenChar { ch: '_', index: 2, .. })));
        assert!(matches!(check_name("aé"), Err(Malformed::ForbiddenChar { ch: 'é', index: 1, .. })));
    }

    #[test]
    fn signature_names_are_lowercase() {
        assert_eq!(check_signature_name("http-2"), Ok(()));
        assert!(matches!(check_signature_name("Http"), Err(Malformed::ForbiddenChar { ch: 'H', index: 0, .. })));
        assert!(matches!(check_signature_name("a.b"), Err(Malformed::ForbiddenChar { ch: '.', .. })));
    }

    #[test]
    fn wasm_header_is_checked_in_order() {
        assert_eq!(check_wasm(&WASM_HEADER), Ok(()));
        assert_eq!(check_wasm(b"\0asm"), Err(NotWasm::TooShort { len: 4 }));
        assert_eq!(check_wasm(b"\0ASM\x01\0\0\0"), Err(NotWasm::BadMagic { found: *b"\0ASM" }));
        assert_eq!(check_wasm(b"\0asm\x0d\0\x01\0"), Err(NotWasm::UnsupportedVersion { found: [0x0d, 0, 1, 0] }));
    }

    #[test]
    fn components_are_named_as_such() {
        let err = NotWasm::UnsupportedVersion { found: [0x0d, 0, 1, 0] };
        assert!(err.to_string().contains("component"));
    }
}
