//! Integration tests of the runtime: ABI rules with tiny WAT modules, and the
//! Go and Rust fixture matrix (built by `cargo xtask fixtures`).

mod abi;
mod asynchronous;
mod common;
mod custom_signature;
mod fixtures;
mod hostile;
mod isolation;
mod reliability;
