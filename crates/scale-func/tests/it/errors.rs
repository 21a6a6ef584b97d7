//! One test per error variant, matching on the variant.

use scale_func::{
    DecodeError, Error, Field, Language, MAX_NAME_LEN, Malformed, NotScaleHint, NotWasm, ScaleFunc, Section,
    SignatureId, SignatureIdError, WASM_HEADER,
};

use crate::common::{Raw, sample, seal};

fn sig() -> SignatureId {
    "http@v0.1.0".parse().unwrap()
}

fn new_with_name(name: &str) -> Result<ScaleFunc, Error> {
    ScaleFunc::new(name, "latest", sig(), Language::Rust, WASM_HEADER.to_vec())
}

fn new_with_function(function: &[u8]) -> Result<ScaleFunc, Error> {
    ScaleFunc::new("f", "latest", sig(), Language::Rust, function.to_vec())
}

mod new {
    use super::*;

    #[test]
    fn invalid_name_empty() {
        assert!(matches!(new_with_name(""), Err(Error::InvalidName { problem: Malformed::Empty, .. })));
    }

    #[test]
    fn invalid_name_too_long() {
        let name = "a".repeat(MAX_NAME_LEN + 1);
        match new_with_name(&name) {
            Err(Error::InvalidName { value, problem: Malformed::TooLong { len, max } }) => {
                assert_eq!(value, name);
                assert_eq!((len, max), (MAX_NAME_LEN + 1, MAX_NAME_LEN));
            }
            other => panic!("expected InvalidName/TooLong, got {other:?}"),
        }
    }

    #[test]
    fn invalid_name_forbidden_char() {
        match new_with_name("hello/world") {
            Err(Error::InvalidName { value, problem: Malformed::ForbiddenChar { ch, index, .. } }) => {
                assert_eq!(value, "hello/world");
                assert_eq!((ch, index), ('/', 5));
            }
            other => panic!("expected InvalidName/ForbiddenChar, got {other:?}"),
        }
    }

    #[test]
    fn invalid_tag() {
        let result = ScaleFunc::new("f", "latest!", sig(), Language::Go, WASM_HEADER.to_vec());
        assert!(matches!(
            result,
            Err(Error::InvalidTag { problem: Malformed::ForbiddenChar { ch: '!', index: 6, .. }, .. })
        ));
    }

    #[test]
    fn unsupported_language() {
        for language in [Language::TypeScript, Language::JavaScript] {
            let result = ScaleFunc::new("f", "t", sig(), language, WASM_HEADER.to_vec());
            assert!(matches!(result, Err(Error::UnsupportedLanguage(l)) if l == language));
        }
    }

    #[test]
    fn not_wasm_too_short() {
        assert!(matches!(new_with_function(b"\0asm\x01"), Err(Error::NotWasm(NotWasm::TooShort { len: 5 }))));
        assert!(matches!(new_with_function(b""), Err(Error::NotWasm(NotWasm::TooShort { len: 0 }))));
    }

    #[test]
    fn not_wasm_bad_magic() {
        assert!(matches!(
            new_with_function(b"\x7fELF\x02\x01\x01\0"),
            Err(Error::NotWasm(NotWasm::BadMagic { found: [0x7f, b'E', b'L', b'F'] }))
        ));
    }

    #[test]
    fn not_wasm_unsupported_version() {
        // A WebAssembly component, not a core module.
        assert!(matches!(
            new_with_function(b"\0asm\x0d\0\x01\0"),
            Err(Error::NotWasm(NotWasm::UnsupportedVersion { found: [0x0d, 0, 1, 0] }))
        ));
    }

    // `Error::FunctionTooLarge` needs a 4 GiB function; its check is unit
    // tested in `src/func.rs`.
}

mod signature {
    use super::*;

    #[test]
    fn missing_at() {
        assert!(matches!(
            "http-v0.1.0".parse::<SignatureId>(),
            Err(SignatureIdError::MissingAt { value }) if value == "http-v0.1.0"
        ));
    }

    #[test]
    fn invalid_name() {
        assert!(matches!(
            "Http@v0.1.0".parse::<SignatureId>(),
            Err(SignatureIdError::InvalidName { problem: Malformed::ForbiddenChar { ch: 'H', index: 0, .. }, .. })
        ));
        assert!(matches!(
            SignatureId::new("a".repeat(MAX_NAME_LEN + 1), "v1"),
            Err(SignatureIdError::InvalidName { problem: Malformed::TooLong { .. }, .. })
        ));
    }

    #[test]
    fn invalid_version() {
        assert!(matches!(
            "http@v0.1.0+build".parse::<SignatureId>(),
            Err(SignatureIdError::InvalidVersion { problem: Malformed::ForbiddenChar { ch: '+', .. }, .. })
        ));
        assert!(matches!(
            SignatureId::new("http", ""),
            Err(SignatureIdError::InvalidVersion { problem: Malformed::Empty, .. })
        ));
    }
}

mod language {
    use super::*;

    #[test]
    fn parse_language_error() {
        let err = "python".parse::<Language>().unwrap_err();
        assert_eq!(err.value(), "python");
    }
}

mod decode {
    use super::*;

    fn decode(bytes: &[u8]) -> DecodeError {
        match ScaleFunc::decode(bytes) {
            Ok(func) => panic!("decoded {func:?} from {bytes:02x?}"),
            Err(err) => err,
        }
    }

    #[test]
    fn not_a_scale_file() {
        assert!(matches!(
            decode(b"PK\x03\x04 a zip archive"),
            DecodeError::NotAScaleFile { hint: NotScaleHint::Unrecognized }
        ));
        assert!(matches!(decode(b""), DecodeError::NotAScaleFile { hint: NotScaleHint::Empty }));
    }

    #[test]
    fn json_and_raw_wasm_are_not_scale_files() {
        let json = br#"{"version":"v1alpha","name":"hello","tag":"latest","function":"AGFzbQEAAAA="}"#;
        assert!(matches!(decode(json), DecodeError::NotAScaleFile { hint: NotScaleHint::Json }));
        assert!(matches!(decode(b"  [1, 2, 3]"), DecodeError::NotAScaleFile { hint: NotScaleHint::Json }));
        // A real module, with a type section, not just the header.
        let wasm = b"\0asm\x01\0\0\0\x01\x04\x01\x60\x00\x00";
        assert!(matches!(decode(wasm), DecodeError::NotAScaleFile { hint: NotScaleHint::Wasm }));
        assert!(matches!(decode(&WASM_HEADER), DecodeError::NotAScaleFile { hint: NotScaleHint::Wasm }));
    }

    #[test]
    fn text_mode_damage_is_recognised() {
        // CR LF turned into LF, as a text-mode transfer might.
        let mut bytes = sample().encode();
        bytes.remove(6);
        assert!(matches!(decode(&bytes), DecodeError::NotAScaleFile { hint: NotScaleHint::Mangled }));
    }

    #[test]
    fn unknown_version() {
        for version in [0, 2, u16::MAX] {
            let bytes = Raw { version, ..Raw::default() }.encode();
            assert!(matches!(decode(&bytes), DecodeError::UnknownVersion(v) if v == version));
        }
    }

    #[test]
    fn truncated() {
        let bytes = sample().encode();
        // Cut in the middle of the checksum.
        let cut = &bytes[..bytes.len() - 10];
        match decode(cut) {
            DecodeError::Truncated { section, offset, needed, available } => {
                assert_eq!(section, Section::Checksum);
                assert_eq!(offset, bytes.len() - 32);
                assert_eq!((needed, available), (32, 22));
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
    }

    #[test]
    fn truncated_in_every_section() {
        let bytes = Raw::default().encode();
        let mut sections = Vec::new();
        for len in 1..bytes.len() {
            match decode(&bytes[..len]) {
                DecodeError::Truncated { section, .. } => {
                    if sections.last() != Some(&section) {
                        sections.push(section);
                    }
                }
                other => panic!("cut at {len}: expected Truncated, got {other:?}"),
            }
        }
        let mut expected = vec![Section::Magic, Section::Version];
        for field in [Field::Name, Field::Tag, Field::Signature, Field::Language, Field::Function] {
            expected.push(Section::Length(field));
            expected.push(Section::Value(field));
        }
        expected.push(Section::Checksum);
        assert_eq!(sections, expected);
    }

    #[test]
    fn length_larger_than_the_input_is_truncated() {
        // A name claiming 4 GiB in a file of a few dozen bytes: refused
        // before anything is allocated.
        let mut bytes = b"\x89SCALE\r\n\x01\0".to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(b"hello");
        assert!(matches!(
            decode(&bytes),
            DecodeError::Truncated { section: Section::Value(Field::Name), offset: 14, available: 5, .. }
        ));
    }

    #[test]
    fn checksum_mismatch() {
        let mut bytes = sample().encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        match decode(&bytes) {
            DecodeError::ChecksumMismatch { expected_hex, actual_hex } => {
                assert_eq!(expected_hex.len(), 64);
                assert_eq!(actual_hex.len(), 64);
                assert_ne!(expected_hex, actual_hex);
            }
            other => panic!("expected ChecksumMismatch, got {other:?}"),
        }
    }

    #[test]
    fn trailing_bytes() {
        let mut bytes = sample().encode();
        let len = bytes.len();
        bytes.extend_from_slice(b"extra");
        assert!(matches!(
            decode(&bytes),
            DecodeError::TrailingBytes { offset, count: 5 } if offset == len
        ));
        // Two files back to back.
        let mut twice = sample().encode();
        twice.extend(sample().encode());
        assert!(matches!(decode(&twice), DecodeError::TrailingBytes { .. }));
    }

    #[test]
    fn invalid_utf8() {
        let bytes = Raw { tag: b"la\xfftest", ..Raw::default() }.encode();
        // magic 8 + version 2 + name 4+5 + tag length 4 = 23, then "la".
        assert!(matches!(decode(&bytes), DecodeError::InvalidUtf8 { field: Field::Tag, offset: 25 }));
    }

    #[test]
    fn invalid_name() {
        let bytes = Raw { name: b"hello world", ..Raw::default() }.encode();
        assert!(matches!(
            decode(&bytes),
            DecodeError::InvalidName {
                value,
                problem: Malformed::ForbiddenChar { ch: ' ', index: 5, .. },
            } if value == "hello world"
        ));
        let bytes = Raw { name: b"", ..Raw::default() }.encode();
        assert!(matches!(decode(&bytes), DecodeError::InvalidName { problem: Malformed::Empty, .. }));
    }

    #[test]
    fn invalid_tag() {
        let long = vec![b'x'; 256];
        let bytes = Raw { tag: &long, ..Raw::default() }.encode();
        assert!(matches!(
            decode(&bytes),
            DecodeError::InvalidTag { problem: Malformed::TooLong { len: 256, max: 255 }, .. }
        ));
    }

    #[test]
    fn invalid_signature() {
        let bytes = Raw { signature: b"http", ..Raw::default() }.encode();
        assert!(matches!(decode(&bytes), DecodeError::InvalidSignature(SignatureIdError::MissingAt { .. })));
    }

    #[test]
    fn unknown_language() {
        let bytes = Raw { language: b"cobol", ..Raw::default() }.encode();
        assert!(matches!(
            decode(&bytes),
            DecodeError::UnknownLanguage(err) if err.value() == "cobol"
        ));
    }

    #[test]
    fn unsupported_language() {
        for (name, language) in [("ts", Language::TypeScript), ("js", Language::JavaScript)] {
            let bytes = Raw { language: name.as_bytes(), ..Raw::default() }.encode();
            assert!(matches!(
                decode(&bytes),
                DecodeError::UnsupportedLanguage(l) if l == language
            ));
        }
    }

    #[test]
    fn not_wasm() {
        let bytes = Raw { function: b"\0asm", ..Raw::default() }.encode();
        assert!(matches!(decode(&bytes), DecodeError::NotWasm(NotWasm::TooShort { len: 4 })));
        let bytes = Raw { function: b"{\"json\": true}", ..Raw::default() }.encode();
        assert!(matches!(decode(&bytes), DecodeError::NotWasm(NotWasm::BadMagic { .. })));
        let bytes = Raw { function: b"\0asm\x02\0\0\0", ..Raw::default() }.encode();
        assert!(matches!(decode(&bytes), DecodeError::NotWasm(NotWasm::UnsupportedVersion { .. })));
    }

    #[test]
    fn corruption_is_reported_before_contents() {
        // A bad name in a file whose checksum is also wrong: the checksum
        // is what gets reported.
        let mut body = Raw { name: b"bad name", ..Raw::default() }.body();
        body.extend_from_slice(&[0; 32]);
        assert!(matches!(decode(&body), DecodeError::ChecksumMismatch { .. }));
        // And a correct seal lets the name check through.
        let sealed = seal(Raw { name: b"bad name", ..Raw::default() }.body());
        assert!(matches!(decode(&sealed), DecodeError::InvalidName { .. }));
    }
}
