//! Decoding arbitrary input never panics.

use proptest::prelude::*;
use scale_func::{MAGIC, ScaleFunc};

use crate::common::{Raw, seal};

fn with_header(rest: &[u8]) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(rest);
    bytes
}

/// Little-endian `u32` lengths that are small, so that arbitrary input
/// gets past the framing more often than pure noise would.
fn framed_noise() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0u32..40, prop::collection::vec(any::<u8>(), 0..40)), 0..7).prop_map(|fields| {
        let mut out = Vec::new();
        for (len, bytes) in fields {
            out.extend_from_slice(&len.to_le_bytes());
            out.extend(bytes);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ScaleFunc::decode(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_magic_and_version(rest in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ScaleFunc::decode(&with_header(&rest));
    }

    #[test]
    fn arbitrary_framing_after_magic_and_version(rest in framed_noise()) {
        let bytes = with_header(&rest);
        let _ = ScaleFunc::decode(&bytes);
        // With a correct checksum too, to reach the field checks.
        let _ = ScaleFunc::decode(&seal(bytes));
    }

    #[test]
    fn arbitrary_field_contents(
        name in prop::collection::vec(any::<u8>(), 0..300),
        tag in prop::collection::vec(any::<u8>(), 0..300),
        signature in prop::collection::vec(any::<u8>(), 0..40),
        language in prop::collection::vec(any::<u8>(), 0..8),
        function in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let bytes = Raw {
            version: 1,
            name: &name,
            tag: &tag,
            signature: &signature,
            language: &language,
            function: &function,
        }
        .encode();
        if let Ok(func) = ScaleFunc::decode(&bytes) {
            // Whatever decodes also encodes back to the same bytes.
            prop_assert_eq!(func.encode(), bytes);
        }
    }
}
