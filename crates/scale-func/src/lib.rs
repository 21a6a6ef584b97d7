//! The `.scale` file format of Scale Functions: one compiled WebAssembly
//! function together with its name, tag, signature and source language,
//! sealed with a SHA-256 checksum.
//!
//! ```
//! use scale_func::{Language, ScaleFunc, SignatureId};
//!
//! // The smallest WebAssembly module there is: the bare 8-byte header.
//! let wasm = b"\0asm\x01\0\0\0".to_vec();
//! let signature: SignatureId = "http@v0.1.0".parse()?;
//! let func = ScaleFunc::new("hello-world", "latest", signature, Language::Rust, wasm)?;
//!
//! // What goes into the `.scale` file, and back.
//! let bytes = func.encode();
//! let back = ScaleFunc::decode(&bytes)?;
//! assert_eq!(back, func);
//! assert_eq!(back.name(), "hello-world");
//! assert_eq!(back.signature().to_string(), "http@v0.1.0");
//! assert_eq!(back.checksum_hex().len(), 64);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A [`ScaleFunc`] is valid by construction: [`ScaleFunc::new`] and
//! [`ScaleFunc::decode`] enforce every rule of the format, and the fields
//! are read through getters, so the [`checksum`](ScaleFunc::checksum) of the
//! function bytes can never be stale.
//!
//! Decoding reports what went wrong with a typed [`DecodeError`]. Input
//! that is not a `.scale` file at all gets a hint rather than a checksum
//! error:
//!
//! ```
//! use scale_func::{DecodeError, NotScaleHint, ScaleFunc};
//!
//! let err = ScaleFunc::decode(b"\0asm\x01\0\0\0").unwrap_err();
//! assert!(matches!(err, DecodeError::NotAScaleFile { hint: NotScaleHint::Wasm }));
//! ```
//!
//! # Format
//!
//! All integers are little-endian.
//!
//! | bytes | contents |
//! |---|---|
//! | 8 | [`MAGIC`]: `89 53 43 41 4c 45 0d 0a` (`\x89SCALE\r\n`) |
//! | 2 | format version, `u16`: [`FORMAT_VERSION`], 1 |
//! | 4 + n | name: `u32` length n, then n bytes of UTF-8 |
//! | 4 + n | tag, likewise |
//! | 4 + n | signature as `name@version`, likewise |
//! | 4 + n | language (`go`, `tinygo` or `rust`), likewise |
//! | 4 + n | function: `u32` length n, then the n bytes of the wasm module |
//! | 32 | SHA-256 of every byte before it |
//!
//! The repository's `docs/scale-format.md` describes it in full, with the
//! validation rules and the error each failure gives.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The modules in layers, each using only those of the layers below it:
//
// 1. `constants` (magic, versions, lengths) and `display` (how values are
//    shown in messages);
// 2. `rules` (names, tags, the wasm header) and `language`;
// 3. `signature_id`;
// 4. `error` (what building or decoding a function reports);
// 5. `format` (the byte layout of a `.scale` file);
// 6. `func` (`ScaleFunc`, the public type).
mod constants;
mod display;
mod error;
mod format;
mod func;
mod language;
mod rules;
mod signature_id;

pub use constants::{CHECKSUM_LEN, FORMAT_VERSION, FormatVersion, MAGIC, MAX_NAME_LEN, WASM_HEADER};
pub use error::{DecodeError, Error, Field, NotScaleHint, Section};
pub use func::ScaleFunc;
pub use language::{Language, ParseLanguageError};
pub use rules::{Malformed, NotWasm};
pub use signature_id::{SignatureId, SignatureIdError};
