//! The binary layout of a `.scale` file: encoding and decoding.
//!
//! See `docs/scale-format.md` in the repository for the layout, byte by byte.
//! This module works on the fields of a function; [`ScaleFunc`](crate::ScaleFunc),
//! above it, packs them into its public type.

use sha2::{Digest, Sha256};

use crate::constants::{CHECKSUM_LEN, FormatVersion, MAGIC};
use crate::display::to_hex;
use crate::error::{DecodeError, Field, NotScaleHint, Section};
use crate::language::Language;
use crate::rules::{check_name, check_wasm};
use crate::signature_id::SignatureId;

/// The fields of a function, in the order the format lays them out, with
/// the text and bytes borrowed: from a function being encoded, or from the
/// input being decoded. `S` holds the signature id: borrowed when encoding,
/// owned (parsed from the input) when decoding.
pub(crate) struct Fields<'a, S> {
    pub(crate) version: FormatVersion,
    pub(crate) name: &'a str,
    pub(crate) tag: &'a str,
    pub(crate) signature: S,
    pub(crate) language: Language,
    pub(crate) function: &'a [u8],
}

/// Writes `fields` as a `.scale` file, in the layout of their version.
///
/// Names, tags and signature halves are at most 255 bytes; the caller
/// guarantees the function is at most `u32::MAX` bytes.
pub(crate) fn encode(fields: &Fields<'_, &SignatureId>) -> Vec<u8> {
    let signature = fields.signature.to_string();
    let framed: [&[u8]; 5] = [
        fields.name.as_bytes(),
        fields.tag.as_bytes(),
        signature.as_bytes(),
        fields.language.as_str().as_bytes(),
        fields.function,
    ];
    let len = MAGIC.len() + 2 + framed.iter().map(|f| 4 + f.len()).sum::<usize>() + CHECKSUM_LEN;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&fields.version.as_u16().to_le_bytes());
    for field in framed {
        let field_len = u32::try_from(field.len()).expect("field lengths are checked on construction");
        out.extend_from_slice(&field_len.to_le_bytes());
        out.extend_from_slice(field);
    }
    let checksum = Sha256::digest(&out);
    out.extend_from_slice(&checksum);
    debug_assert_eq!(out.len(), len);
    out
}

/// Reads a `.scale` file into its fields, checked in the order
/// [`ScaleFunc::decode`](crate::ScaleFunc::decode) documents. Never panics;
/// copies nothing out of `bytes` before the checksum is verified, and then
/// only the signature id.
pub(crate) fn decode(bytes: &[u8]) -> Result<Fields<'_, SignatureId>, DecodeError> {
    check_magic(bytes)?;
    let mut input = Reader { bytes, pos: MAGIC.len() };
    let version = u16::from_le_bytes(input.take_array(Section::Version)?);
    let version = FormatVersion::from_u16(version).ok_or(DecodeError::UnknownVersion(version))?;
    // Version 1 is the only layout so far.
    let name = input.field(Field::Name)?;
    let tag = input.field(Field::Tag)?;
    let signature = input.field(Field::Signature)?;
    let language = input.field(Field::Language)?;
    let function = input.field(Field::Function)?;
    let (covered, _) = bytes.split_at(input.pos);
    let stored: [u8; CHECKSUM_LEN] = input.take_array(Section::Checksum)?;

    let actual: [u8; CHECKSUM_LEN] = Sha256::digest(covered).into();
    if stored != actual {
        return Err(DecodeError::ChecksumMismatch { expected_hex: to_hex(&stored), actual_hex: to_hex(&actual) });
    }
    if input.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes { offset: input.pos, count: bytes.len() - input.pos });
    }

    let name = name.text()?;
    if let Err(problem) = check_name(name) {
        return Err(DecodeError::InvalidName { value: name.to_owned(), problem });
    }
    let tag = tag.text()?;
    if let Err(problem) = check_name(tag) {
        return Err(DecodeError::InvalidTag { value: tag.to_owned(), problem });
    }
    let signature: SignatureId = signature.text()?.parse().map_err(DecodeError::InvalidSignature)?;
    let language: Language = language.text()?.parse().map_err(DecodeError::UnknownLanguage)?;
    if !language.is_supported() {
        return Err(DecodeError::UnsupportedLanguage(language));
    }
    check_wasm(function.bytes).map_err(DecodeError::NotWasm)?;

    Ok(Fields { version, name, tag, signature, language, function: function.bytes })
}

/// Checks `bytes` starts with [`MAGIC`]; if not, says what it looks like.
fn check_magic(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.starts_with(&MAGIC) {
        return Ok(());
    }
    if !bytes.is_empty() && MAGIC.starts_with(bytes) {
        return Err(DecodeError::Truncated {
            section: Section::Magic,
            offset: 0,
            needed: MAGIC.len(),
            available: bytes.len(),
        });
    }
    Err(DecodeError::NotAScaleFile { hint: sniff(bytes) })
}

/// Guesses what input without the [`MAGIC`] is.
fn sniff(bytes: &[u8]) -> NotScaleHint {
    const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

    if bytes.is_empty() {
        return NotScaleHint::Empty;
    }
    if bytes.starts_with(b"\0asm") {
        return NotScaleHint::Wasm;
    }
    let text = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let mut significant = text.iter().copied().filter(|b| !b.is_ascii_whitespace());
    // JSON opens with `{` or `[` followed by what a JSON value or object can
    // start with; a TOML table header (`[package]`) does not.
    if let (Some(first @ (b'{' | b'[')), Some(second)) = (significant.next(), significant.next())
        && (matches!(second, b'"' | b'{' | b'[' | b'}' | b']' | b'-' | b't' | b'f' | b'n') || second.is_ascii_digit())
        && (first == b'[' || matches!(second, b'"' | b'}'))
    {
        return NotScaleHint::Json;
    }
    // The magic with its first byte dropped, changed or widened (to U+FFFD,
    // or to two bytes by a Latin-1 to UTF-8 conversion), or with its CR LF
    // converted, still has "SCALE" near the start.
    if bytes.windows(5).take(4).any(|w| w == b"SCALE") {
        return NotScaleHint::Mangled;
    }
    NotScaleHint::Unrecognized
}

/// A cursor over the input; `pos <= bytes.len()` always holds.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// A field as framed in the input, not yet checked.
struct RawField<'a> {
    field: Field,
    /// Offset of the first byte of `bytes` in the input.
    offset: usize,
    bytes: &'a [u8],
}

impl<'a> RawField<'a> {
    fn text(&self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes)
            .map_err(|err| DecodeError::InvalidUtf8 { field: self.field, offset: self.offset + err.valid_up_to() })
    }
}

impl<'a> Reader<'a> {
    /// Takes the next `n` bytes, checking first that they are there.
    fn take(&mut self, n: usize, section: Section) -> Result<&'a [u8], DecodeError> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        if n > rest.len() {
            return Err(DecodeError::Truncated { section, offset: self.pos, needed: n, available: rest.len() });
        }
        let (taken, _) = rest.split_at(n);
        self.pos += n;
        Ok(taken)
    }

    fn take_array<const N: usize>(&mut self, section: Section) -> Result<[u8; N], DecodeError> {
        let taken = self.take(N, section)?;
        let mut array = [0; N];
        array.copy_from_slice(taken);
        Ok(array)
    }

    /// Takes a `u32` little-endian length, then that many bytes.
    fn field(&mut self, field: Field) -> Result<RawField<'a>, DecodeError> {
        let len = u32::from_le_bytes(self.take_array(Section::Length(field))?);
        // On targets where `usize` is narrower than `u32`, a length that
        // does not fit certainly exceeds the input.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let offset = self.pos;
        let bytes = self.take(len, Section::Value(field))?;
        Ok(RawField { field, offset, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b""), NotScaleHint::Empty);
        assert_eq!(sniff(b"\0asm\x01\0\0\0"), NotScaleHint::Wasm);
        assert_eq!(sniff(b"{\"name\": 1}"), NotScaleHint::Json);
        assert_eq!(sniff(b"\xef\xbb\xbf \n[1]"), NotScaleHint::Json);
        assert_eq!(sniff(b"{}"), NotScaleHint::Json);
        assert_ne!(sniff(b"[package]\nname = \"x\"\n"), NotScaleHint::Json);
        assert_eq!(sniff(b"\x89SCALE\n\x01\0"), NotScaleHint::Mangled);
        assert_eq!(sniff(b"\xc2\x89SCALE\r\n"), NotScaleHint::Mangled);
        assert_eq!(sniff(b"\xef\xbf\xbdSCALE\r\n"), NotScaleHint::Mangled);
        assert_eq!(sniff(b"hello"), NotScaleHint::Unrecognized);
        assert_eq!(sniff(b"   "), NotScaleHint::Unrecognized);
    }
}
