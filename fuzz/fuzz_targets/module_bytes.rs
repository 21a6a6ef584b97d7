//! See `scale_fuzz::module_bytes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scale_fuzz::module_bytes(data));
