//! Integration tests of the `.scale` format.

mod common;
mod corruption;
mod errors;
mod layout;
mod robustness;
mod roundtrip;
