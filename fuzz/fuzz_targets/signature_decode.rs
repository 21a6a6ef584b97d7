//! See `scale_fuzz::signature_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scale_fuzz::signature_decode(data));
