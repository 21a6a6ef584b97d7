//! Encoding then decoding gives back the same function.

use proptest::prelude::*;
use scale_func::{FORMAT_VERSION, ScaleFunc};
use sha2::{Digest, Sha256};

use crate::common::{Raw, sample, scale_funcs};

proptest! {
    #[test]
    fn decode_inverts_encode(func in scale_funcs()) {
        let bytes = func.encode();
        let back = ScaleFunc::decode(&bytes).unwrap();
        prop_assert_eq!(back.version(), FORMAT_VERSION);
        prop_assert_eq!(back.checksum(), func.checksum());
        prop_assert_eq!(&back, &func);
        // And the encoding is canonical.
        prop_assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn checksum_is_sha256_of_the_function(func in scale_funcs()) {
        let expected: [u8; 32] = Sha256::digest(func.function()).into();
        prop_assert_eq!(func.checksum(), expected);
    }
}

#[test]
fn getters_give_back_the_parts() {
    let func = sample();
    assert_eq!(func.name(), "hello-world");
    assert_eq!(func.tag(), "v1.0");
    assert_eq!(func.signature().name(), "http");
    assert_eq!(func.signature().version(), "v0.1.0");
    assert_eq!(func.language(), scale_func::Language::Rust);
    assert_eq!(func.function().len(), 14);
    assert_eq!(func.clone().into_function(), func.function());
}

#[test]
fn all_supported_languages_round_trip() {
    for language in ["go", "tinygo", "rust"] {
        let bytes = Raw { language: language.as_bytes(), ..Raw::default() }.encode();
        let func = ScaleFunc::decode(&bytes).unwrap();
        assert_eq!(func.language().as_str(), language);
        assert_eq!(func.encode(), bytes);
    }
}
