//! Integration tests of the HTTP signature codec.

mod properties;
mod vectors;
