//! How values are shown in error messages and checksums: quoted and cut,
//! or as hex.
//!
//! At the bottom of the crate with [`constants`](crate::constants): this
//! module uses nothing else from it.

use std::fmt;

/// Longest excerpt of an offending value that an error message shows.
///
/// The error itself keeps the whole value; only its `Display` is shortened,
/// so a corrupted file with a megabyte-long "name" gives a readable message.
const SHOWN_CHARS: usize = 64;

/// Shows a value quoted and escaped, cut to [`SHOWN_CHARS`] characters.
pub(crate) fn quoted(value: &str) -> impl fmt::Display + '_ {
    struct Quoted<'a>(&'a str);
    impl fmt::Display for Quoted<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0.char_indices().nth(SHOWN_CHARS) {
                None => write!(f, "{:?}", self.0),
                Some((cut, _)) => {
                    write!(f, "{:?}... ({} bytes in all)", &self.0[..cut], self.0.len())
                }
            }
        }
    }
    Quoted(value)
}

/// Shows bytes as space-separated lowercase hex pairs.
pub(crate) fn hex_bytes(bytes: &[u8]) -> impl fmt::Display + '_ {
    struct Hex<'a>(&'a [u8]);
    impl fmt::Display for Hex<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for (i, b) in self.0.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{b:02x}")?;
            }
            Ok(())
        }
    }
    Hex(bytes)
}

/// Lowercase hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutting_respects_char_boundaries() {
        let value = "é".repeat(100);
        let shown = quoted(&value).to_string();
        assert!(shown.starts_with("\"éé"));
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex_bytes(&[0x00, 0x0f, 0xa0, 0xff]).to_string(), "00 0f a0 ff");
    }
}
