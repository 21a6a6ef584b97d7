//! The character-set and length rules for names, tags and signatures.

use crate::error::{Malformed, NotWasm};

/// Longest function name, tag, signature name or signature version, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The 8-byte header every WebAssembly core module starts with: the magic
/// `\0asm` and the binary format version 1 (little-endian `u32`).
pub const WASM_HEADER: [u8; 8] = *b"\0asm\x01\0\0\0";

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
}
