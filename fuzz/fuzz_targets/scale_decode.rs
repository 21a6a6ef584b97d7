//! See `scale_fuzz::scale_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scale_fuzz::scale_decode(data));
