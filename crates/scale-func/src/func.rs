//! The [`ScaleFunc`] type: the top of the crate, built on every other
//! module.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::constants::{FORMAT_VERSION, FormatVersion};
use crate::display::to_hex;
use crate::error::{DecodeError, Error};
use crate::format::{self, Fields};
use crate::language::Language;
use crate::rules::{check_name, check_wasm};
use crate::signature_id::SignatureId;

/// One compiled Scale function and its metadata: the contents of a `.scale`
/// file.
///
/// Every `ScaleFunc` is valid: [`new`](Self::new) and
/// [`decode`](Self::decode) check all the rules of the format, and the
/// fields can only be read afterwards, not changed. In particular the
/// [`checksum`](Self::checksum) is computed from the function bytes on
/// construction and cannot disagree with them.
///
/// `Debug` shows the size and checksum of the function, not its bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ScaleFunc {
    version: FormatVersion,
    name: String,
    tag: String,
    signature: SignatureId,
    language: Language,
    function: Vec<u8>,
    /// SHA-256 of `function`; kept in step by every constructor.
    checksum: [u8; 32],
}

impl ScaleFunc {
    /// Packs a compiled function with its metadata, in the current
    /// [`FORMAT_VERSION`].
    ///
    /// Checks, in this order, that:
    /// - `name` is 1 to 255 bytes of `[A-Za-z0-9.-]` ([`Error::InvalidName`]);
    /// - `tag` follows the same rule ([`Error::InvalidTag`]);
    /// - `language` is not a reserved one ([`Error::UnsupportedLanguage`]);
    /// - `function` starts with the WebAssembly core module header
    ///   `\0asm` + version 1 ([`Error::NotWasm`]);
    /// - `function` is at most `u32::MAX` bytes ([`Error::FunctionTooLarge`]).
    ///
    /// Only the header of `function` is checked, not the module itself.
    pub fn new(
        name: impl Into<String>,
        tag: impl Into<String>,
        signature: SignatureId,
        language: Language,
        function: impl Into<Vec<u8>>,
    ) -> Result<Self, Error> {
        let (name, tag, function) = (name.into(), tag.into(), function.into());
        if let Err(problem) = check_name(&name) {
            return Err(Error::InvalidName { value: name, problem });
        }
        if let Err(problem) = check_name(&tag) {
            return Err(Error::InvalidTag { value: tag, problem });
        }
        if !language.is_supported() {
            return Err(Error::UnsupportedLanguage(language));
        }
        check_wasm(&function).map_err(Error::NotWasm)?;
        check_function_len(function.len())?;
        Ok(ScaleFunc::from_checked(FORMAT_VERSION, name, tag, signature, language, function))
    }

    /// Writes this function as a `.scale` file, in the layout of its
    /// [`version`](Self::version).
    pub fn encode(&self) -> Vec<u8> {
        format::encode(&Fields {
            version: self.version,
            name: &self.name,
            tag: &self.tag,
            signature: &self.signature,
            language: self.language,
            function: &self.function,
        })
    }

    /// Reads a `.scale` file.
    ///
    /// Checks, in order: the [`MAGIC`](crate::MAGIC)
    /// ([`DecodeError::NotAScaleFile`], with a hint at what the input looks
    /// like instead), the format version ([`DecodeError::UnknownVersion`]),
    /// that every length-prefixed field and the checksum fit in the input
    /// ([`DecodeError::Truncated`]), the checksum
    /// ([`DecodeError::ChecksumMismatch`]), that nothing follows it
    /// ([`DecodeError::TrailingBytes`]), and then the same rules as
    /// [`ScaleFunc::new`] on every field.
    ///
    /// Never panics. Every length prefix is checked against the bytes that
    /// remain before it is used, and nothing is copied out of the input
    /// before the checksum is verified.
    pub fn decode(bytes: &[u8]) -> Result<ScaleFunc, DecodeError> {
        let Fields { version, name, tag, signature, language, function } = format::decode(bytes)?;
        Ok(ScaleFunc::from_checked(version, name.to_owned(), tag.to_owned(), signature, language, function.to_vec()))
    }

    /// Assembles a `ScaleFunc` from fields the caller has already checked,
    /// computing the checksum.
    fn from_checked(
        version: FormatVersion,
        name: String,
        tag: String,
        signature: SignatureId,
        language: Language,
        function: Vec<u8>,
    ) -> Self {
        let checksum = Sha256::digest(&function).into();
        ScaleFunc { version, name, tag, signature, language, function, checksum }
    }

    /// The format version this function was read in, or will be written in.
    pub fn version(&self) -> FormatVersion {
        self.version
    }

    /// The function name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tag, e.g. `latest` or `v1.2.0`.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The signature the function implements.
    pub fn signature(&self) -> &SignatureId {
        &self.signature
    }

    /// The language the function was written in; never a reserved one.
    pub fn language(&self) -> Language {
        self.language
    }

    /// The WebAssembly module bytes.
    pub fn function(&self) -> &[u8] {
        &self.function
    }

    /// Takes the WebAssembly module bytes out, dropping the metadata.
    pub fn into_function(self) -> Vec<u8> {
        self.function
    }

    /// The SHA-256 of the WebAssembly module bytes.
    ///
    /// This identifies the function's code. It is not the checksum stored at
    /// the end of an encoded file, which covers the metadata too.
    pub fn checksum(&self) -> [u8; 32] {
        self.checksum
    }

    /// [`checksum`](Self::checksum) as 64 lowercase hex digits.
    pub fn checksum_hex(&self) -> String {
        to_hex(&self.checksum)
    }
}

impl fmt::Debug for ScaleFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScaleFunc")
            .field("version", &self.version)
            .field("name", &self.name)
            .field("tag", &self.tag)
            .field("signature", &format_args!("{}", self.signature))
            .field("language", &self.language)
            .field("function_len", &self.function.len())
            .field("checksum", &format_args!("{}", self.checksum_hex()))
            .finish()
    }
}

/// Refuses functions too long for the format's `u32` length prefix.
fn check_function_len(len: usize) -> Result<(), Error> {
    match u32::try_from(len) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::FunctionTooLarge { len }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_length_limit() {
        assert_eq!(check_function_len(0), Ok(()));
        assert_eq!(check_function_len(u32::MAX as usize), Ok(()));
    }

    // The only way to reach `FunctionTooLarge` through `new` is a 4 GiB
    // allocation, so its check is tested on its own.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn function_too_large() {
        let len = u32::MAX as usize + 1;
        assert!(matches!(
            check_function_len(len),
            Err(Error::FunctionTooLarge { len: l }) if l == len
        ));
    }

    #[test]
    fn checksum_is_sha256_of_the_function() {
        let wasm = b"\0asm\x01\0\0\0".to_vec();
        let func = ScaleFunc::new("f", "t", "http@v0.1.0".parse().unwrap(), Language::Rust, wasm).unwrap();
        // `sha256sum` of the 8 header bytes.
        assert_eq!(func.checksum_hex(), "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476");
    }

    #[test]
    fn debug_hides_the_bytes() {
        let func = ScaleFunc::new("f", "t", "http@v0.1.0".parse().unwrap(), Language::Go, b"\0asm\x01\0\0\0".to_vec())
            .unwrap();
        let shown = format!("{func:?}");
        assert!(shown.contains("function_len: 8"), "{shown}");
        assert!(shown.contains("http@v0.1.0"), "{shown}");
    }
}
