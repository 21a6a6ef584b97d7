//! Helpers shared by the test modules.

use proptest::prelude::*;
use scale_func::{Language, MAGIC, ScaleFunc, SignatureId, WASM_HEADER};
use sha2::{Digest, Sha256};

/// A small valid function.
pub fn sample() -> ScaleFunc {
    let mut wasm = WASM_HEADER.to_vec();
    wasm.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
    ScaleFunc::new("hello-world", "v1.0", "http@v0.1.0".parse().unwrap(), Language::Rust, wasm).unwrap()
}

/// The fields of a file, written without any validation, so tests can
/// build files whose contents break the rules but whose framing and
/// checksum are right.
pub struct Raw<'a> {
    pub version: u16,
    pub name: &'a [u8],
    pub tag: &'a [u8],
    pub signature: &'a [u8],
    pub language: &'a [u8],
    pub function: &'a [u8],
}

impl Default for Raw<'_> {
    fn default() -> Self {
        Raw {
            version: 1,
            name: b"hello",
            tag: b"latest",
            signature: b"http@v0.1.0",
            language: b"rust",
            function: &WASM_HEADER,
        }
    }
}

impl Raw<'_> {
    /// Everything before the checksum.
    pub fn body(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        for field in [self.name, self.tag, self.signature, self.language, self.function] {
            out.extend_from_slice(&u32::try_from(field.len()).unwrap().to_le_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    /// The whole file, with a correct checksum.
    pub fn encode(&self) -> Vec<u8> {
        seal(self.body())
    }
}

/// Appends the SHA-256 of `body` to it.
pub fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let checksum = Sha256::digest(&body);
    body.extend_from_slice(&checksum);
    body
}

pub fn names() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.-]{1,255}"
}

pub fn signatures() -> impl Strategy<Value = SignatureId> {
    ("[a-z0-9-]{1,255}", "[A-Za-z0-9.-]{1,255}").prop_map(|(name, version)| SignatureId::new(name, version).unwrap())
}

pub fn languages() -> impl Strategy<Value = Language> {
    prop::sample::select(Language::ALL.into_iter().filter(|lang| lang.is_supported()).collect::<Vec<_>>())
}

pub fn functions() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..2048).prop_map(|rest| {
        let mut wasm = WASM_HEADER.to_vec();
        wasm.extend(rest);
        wasm
    })
}

pub fn scale_funcs() -> impl Strategy<Value = ScaleFunc> {
    (names(), names(), signatures(), languages(), functions()).prop_map(|(name, tag, signature, language, function)| {
        ScaleFunc::new(name, tag, signature, language, function).unwrap()
    })
}
