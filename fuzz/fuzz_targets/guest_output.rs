//! See `scale_fuzz::guest_output`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scale_fuzz::guest_output(data));
