//! See `scale_fuzz::arbitrary_module`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scale_fuzz::arbitrary_module(data));
