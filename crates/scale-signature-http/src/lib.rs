//! The HTTP signature of Scale Functions.
//!
//! A Scale function receives a [`Context`] holding the incoming [`Request`] and
//! the [`Response`] built so far, changes it, and hands it on to the next
//! function of the chain. This crate holds those types and their wire codec,
//! shared by the host runtime and by guests (it is `no_std` + `alloc` with the
//! default `std` feature turned off, so it builds for `wasm32`).
//!
//! ```
//! use scale_signature_http::{Context, RunResult};
//!
//! let mut ctx = Context::default();
//! ctx.request_mut().set_uri("/hello");
//! ctx.response_mut().set_body_string("Hello, World!");
//! ctx.response_mut().headers_mut().set("Content-Type", ["text/plain"]);
//!
//! // What travels between host and guest:
//! let bytes = ctx.encode_to_vec();
//! let back = Context::decode(&bytes[..]).unwrap();
//! assert_eq!(back, ctx);
//!
//! // A run hands back a context or an error message.
//! let err = RunResult::Error("no such user".into()).encode_to_vec();
//! assert_eq!(RunResult::decode(&err[..]).unwrap(), RunResult::Error("no such user".into()));
//! ```
//!
//! Host code reads and writes the public fields directly
//! (`ctx.request.body = ...`); guest code usually goes through the accessors,
//! which keep `content_length` in step with the body and refuse status codes
//! outside 100–599.
//!
//! # Wire format
//!
//! Protocol buffers, described in `proto/http_signature.proto` and in the
//! project's `docs/abi.md`. [`Context`] implements [`prost::Message`], so it
//! can be embedded in other prost messages; [`RunResult`] wraps the
//! context-or-error answer of a run.
//!
//! The module `raw`, hidden from these docs, holds what the Scale runtime
//! and the guest SDKs use besides: the fast paths that work on encoded
//! contexts, and the chunked copies. It is for them, not a stable API.
//!
//! # Features
//!
//! - `std` (default): `std::error::Error` for the error types.
//! - `http`: conversions to and from `http::Request<Bytes>` and
//!   `http::Response<Bytes>`.
//! - `go-sources`: the sources of the Go guest package (in `go/` beside
//!   this crate), for tools that build Go functions.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

// The modules in layers, each using only those of the layers below it:
//
// 1. `types` (the context and its accessors), `error` (`DecodeError`) and
//    `raw::chunked_copy`;
// 2. `message` (the prost codec of the context's messages) and `http_conv`;
// 3. `validate` (checking an encoding without decoding it) and
//    `run_result` (`RunResult`);
// 4. `raw::layout` (`EncodedContext`: the fast paths on encoded bytes);
// 5. `raw` (what the runtime and the SDKs use besides the public API).
mod error;
#[cfg(feature = "go-sources")]
pub mod go_sources;
#[cfg(feature = "http")]
mod http_conv;
mod message;
#[doc(hidden)]
pub mod raw;
mod run_result;
mod types;
mod validate;

pub use error::DecodeError;
#[cfg(feature = "http")]
pub use http_conv::ConversionError;
pub use run_result::RunResult;
pub use types::{Context, HeaderValues, Headers, HeadersIter, InvalidStatusCode, MAX_HEADER_ITEMS, Request, Response};

pub use bytes::Bytes;

/// The name under which functions built against this signature are recorded
/// in a `.scale` file.
pub const SIGNATURE_NAME: &str = "http";

/// The version of this signature, recorded in a `.scale` file beside
/// [`SIGNATURE_NAME`] (as `http@v0.1.0`).
pub const SIGNATURE_VERSION: &str = "v0.1.0";
