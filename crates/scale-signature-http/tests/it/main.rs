//! Integration tests of the HTTP signature codec.

mod go_sources;
mod properties;
mod vectors;
