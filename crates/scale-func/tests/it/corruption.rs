//! Damage to a valid file is detected.

use proptest::prelude::*;
use scale_func::ScaleFunc;

use crate::common::{sample, scale_funcs};

#[test]
fn every_single_byte_change_is_detected() {
    let bytes = sample().encode();
    for pos in 0..bytes.len() {
        for mask in 1..=255u8 {
            let mut damaged = bytes.clone();
            damaged[pos] ^= mask;
            if let Ok(func) = ScaleFunc::decode(&damaged) {
                panic!("byte {pos} xor {mask:#04x} went unnoticed: {func:?}");
            }
        }
    }
}

#[test]
fn every_truncation_and_extension_is_detected() {
    let bytes = sample().encode();
    for len in 0..bytes.len() {
        assert!(ScaleFunc::decode(&bytes[..len]).is_err(), "cut to {len}");
    }
    for extra in 0..=255u8 {
        let mut longer = bytes.clone();
        longer.push(extra);
        assert!(ScaleFunc::decode(&longer).is_err(), "extra byte {extra}");
    }
}

proptest! {
    #[test]
    fn random_byte_changes_are_detected(
        func in scale_funcs(),
        pos in any::<prop::sample::Index>(),
        mask in 1..=255u8,
    ) {
        let mut bytes = func.encode();
        let pos = pos.index(bytes.len());
        bytes[pos] ^= mask;
        prop_assert!(ScaleFunc::decode(&bytes).is_err());
    }
}
