//! The exact bytes of an encoding, as `docs/scale-format.md` describes them.

use scale_func::{Language, MAGIC, ScaleFunc, WASM_HEADER};
use sha2::{Digest, Sha256};

#[test]
fn encoding_matches_the_documented_layout() {
    let func = ScaleFunc::new("hello", "latest", "http@v0.1.0".parse().unwrap(), Language::Rust, WASM_HEADER.to_vec())
        .unwrap();

    let mut expected: Vec<u8> = Vec::new();
    expected.extend_from_slice(b"\x89SCALE\r\n");
    expected.extend_from_slice(&[0x01, 0x00]);
    expected.extend_from_slice(&[0x05, 0, 0, 0]);
    expected.extend_from_slice(b"hello");
    expected.extend_from_slice(&[0x06, 0, 0, 0]);
    expected.extend_from_slice(b"latest");
    expected.extend_from_slice(&[0x0b, 0, 0, 0]);
    expected.extend_from_slice(b"http@v0.1.0");
    expected.extend_from_slice(&[0x04, 0, 0, 0]);
    expected.extend_from_slice(b"rust");
    expected.extend_from_slice(&[0x08, 0, 0, 0]);
    expected.extend_from_slice(b"\0asm\x01\0\0\0");
    let checksum = Sha256::digest(&expected);
    expected.extend_from_slice(&checksum);

    let bytes = func.encode();
    assert_eq!(bytes, expected);
    assert_eq!(bytes.len(), 96);
    assert!(bytes.starts_with(&MAGIC));
    // The hex of this example appears in docs/scale-format.md.
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        concat!(
            "895343414c450d0a",
            "0100",
            "05000000",
            "68656c6c6f",
            "06000000",
            "6c6174657374",
            "0b000000",
            "687474704076302e312e30",
            "04000000",
            "72757374",
            "08000000",
            "0061736d01000000",
            "e9322098ee13fbf9fdad7eb48a6c91110f9f898818b0d1a5096af3bd4264f54e",
        )
    );
}
