//! The `tally` context and its wire format: plain Rust with no
//! dependencies, so the host (the `custom_signature` example and the
//! runtime's tests) and the guest (the `tally` fixture under
//! `testdata/rust`) compile this very file and cannot disagree on a byte.
//!
//! A tally is encoded as
//!
//! ```text
//! count   8 bytes, little-endian u64
//! note    4 bytes, little-endian u32 length n, then n bytes of UTF-8
//! ```
//!
//! and the outcome of a run as one tag byte and its payload:
//!
//! ```text
//! 0x00  a tally follows (the run succeeded)
//! 0x01  an error message follows, encoded as the note is
//! ```
//!
//! Nothing may follow either encoding. Decoding checks every length against
//! the bytes actually there before it copies anything, so bytes from a
//! hostile guest cost at most their own size and end in a [`WireError`].

use std::fmt;

/// The context of the tally signature: a counter and a note that every
/// function of a chain may change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many times the context was counted.
    pub count: u64,
    /// Free text.
    pub note: String,
}

/// The tag of a successful outcome.
const OK: u8 = 0;
/// The tag of an error outcome.
const ERROR: u8 = 1;

/// Why bytes are not a tally or an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The bytes end before the field does.
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A string is not UTF-8.
    NotUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// An outcome starts with a tag that is neither 0 nor 1.
    UnknownTag(u8),
    /// Bytes are left over after a complete encoding.
    TrailingBytes(usize),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { field } => write!(f, "the bytes end inside the {field}"),
            WireError::NotUtf8 { field } => write!(f, "the {field} is not UTF-8"),
            WireError::UnknownTag(tag) => write!(f, "unknown outcome tag {tag:#04x}"),
            WireError::TrailingBytes(count) => write!(f, "{count} bytes after the end of the encoding"),
        }
    }
}

impl std::error::Error for WireError {}

impl Tally {
    /// Appends the encoding of this tally to `buf`.
    pub fn write(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.count.to_le_bytes());
        write_str(&self.note, buf);
    }

    /// Decodes `bytes`, all of them, into this tally, reusing the note's
    /// allocation. After an error the tally holds some valid value.
    pub fn read(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let mut reader = Reader(bytes);
        self.read_from(&mut reader)?;
        reader.finish()
    }

    fn read_from(&mut self, reader: &mut Reader<'_>) -> Result<(), WireError> {
        self.count = u64::from_le_bytes(reader.array("count")?);
        let note = reader.str("note")?;
        self.note.clear();
        self.note.push_str(note);
        Ok(())
    }
}

/// Appends the encoding of a run's outcome, a tally or an error message, to `buf`.
pub fn write_outcome(outcome: Result<&Tally, &str>, buf: &mut Vec<u8>) {
    match outcome {
        Ok(tally) => {
            buf.push(OK);
            tally.write(buf);
        }
        Err(message) => {
            buf.push(ERROR);
            write_str(message, buf);
        }
    }
}

/// Decodes a run's outcome from `bytes`, all of them: `Ok(Ok(()))` leaves
/// the tally in `into`, `Ok(Err(message))` is an error outcome (and leaves
/// `into` alone).
pub fn read_outcome(into: &mut Tally, bytes: &[u8]) -> Result<Result<(), String>, WireError> {
    let mut reader = Reader(bytes);
    let [tag] = reader.array("outcome tag")?;
    let outcome = match tag {
        OK => {
            into.read_from(&mut reader)?;
            Ok(())
        }
        ERROR => Err(reader.str("error message")?.to_owned()),
        other => return Err(WireError::UnknownTag(other)),
    };
    reader.finish()?;
    Ok(outcome)
}

/// Appends a string: its length as a little-endian u32, then its bytes.
///
/// # Panics
///
/// If `text` is 4 GiB or longer, which no guest's memory can hold.
fn write_str(text: &str, buf: &mut Vec<u8>) {
    let len = u32::try_from(text.len()).expect("a string of the tally signature is shorter than 4 GiB");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(text.as_bytes());
}

/// The bytes not read yet.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next `len` bytes.
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let Some((taken, rest)) = self.0.split_at_checked(len) else {
            return Err(WireError::Truncated { field });
        };
        self.0 = rest;
        Ok(taken)
    }

    /// The next `N` bytes.
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N, field)?);
        Ok(array)
    }

    /// A string written by [`write_str`].
    fn str(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        let len = u32::from_le_bytes(self.array(field)?);
        // A length past the end fails here, before anything is allocated.
        let bytes = self.take(usize::try_from(len).map_err(|_| WireError::Truncated { field })?, field)?;
        std::str::from_utf8(bytes).map_err(|_| WireError::NotUtf8 { field })
    }

    /// Checks that nothing is left.
    fn finish(self) -> Result<(), WireError> {
        match self.0.len() {
            0 => Ok(()),
            left => Err(WireError::TrailingBytes(left)),
        }
    }
}
