//! The fixed numbers of the format: its magic bytes, versions and lengths.
//!
//! The bottom of the crate: this module uses nothing else from it.

use std::fmt;

/// The 8 bytes every `.scale` file starts with: `89 53 43 41 4c 45 0d 0a`,
/// that is `\x89`, `SCALE`, `\r\n`.
///
/// Like PNG's signature, the non-ASCII first byte and the CR LF pair make a
/// file that went through a text-mode transfer fail the magic check (with
/// [`NotScaleHint::Mangled`](crate::NotScaleHint::Mangled)) rather than a
/// later, more confusing one.
pub const MAGIC: [u8; 8] = *b"\x89SCALE\r\n";

/// The format version [`ScaleFunc::encode`](crate::ScaleFunc::encode) writes.
pub const FORMAT_VERSION: FormatVersion = FormatVersion::V1;

/// Length of the SHA-256 checksum that ends a file.
pub const CHECKSUM_LEN: usize = 32;

/// Longest function name, tag, signature name or signature version, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The 8-byte header every WebAssembly core module starts with: the magic
/// `\0asm` and the binary format version 1 (little-endian `u32`).
pub const WASM_HEADER: [u8; 8] = *b"\0asm\x01\0\0\0";

/// A version of the `.scale` container layout, stored as a little-endian
/// `u16` right after [`MAGIC`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FormatVersion {
    /// Version 1, the only one so far.
    V1 = 1,
}

impl FormatVersion {
    /// The number stored in files.
    pub const fn as_u16(self) -> u16 {
        self as u16
    }

    /// The version stored as `value`, if this crate knows it.
    pub const fn from_u16(value: u16) -> Option<Self> {
        match value {
            1 => Some(FormatVersion::V1),
            _ => None,
        }
    }
}

impl fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_is_documented_bytes() {
        assert_eq!(MAGIC, [0x89, 0x53, 0x43, 0x41, 0x4c, 0x45, 0x0d, 0x0a]);
    }

    #[test]
    fn version_numbers() {
        assert_eq!(FormatVersion::from_u16(1), Some(FormatVersion::V1));
        assert_eq!(FormatVersion::from_u16(0), None);
        assert_eq!(FormatVersion::from_u16(2), None);
        assert_eq!(FORMAT_VERSION.as_u16(), 1);
    }
}
