//! Copies of byte strings made in chunks of at most [`CHUNK`] bytes, and
//! [`ChunkedSlice`], a borrowed slice read as a [`Buf`] whose
//! `copy_to_bytes` copies that way.
//!
//! glibc's `memcpy` copies 4 KiB or more with `rep movsb` on CPUs that
//! advertise fast string moves. On some of them (AMD Zen 3 among them) that
//! instruction is many times slower when the target lies a few bytes past
//! the source modulo 4 KiB, which is where the second of two heap blocks
//! allocated one after the other usually is (past the allocator's header).
//! Chunks below that size are copied with vector moves at full speed
//! wherever they lie; where `rep movsb` is fast, chunks cost about the same.
//! A wasm guest's `memory.copy` reaches the same `memcpy` through the
//! runtime, so guests copy in chunks too. The `copy_64KiB` group of
//! `crates/scale-runtime/benches/run.rs` compares the two ways.

use alloc::vec::Vec;

use bytes::{Buf, BufMut, Bytes};

/// The size of one chunk: below the size from which glibc uses `rep movsb`.
pub const CHUNK: usize = 2048;

/// Appends `bytes` to `buf`, a chunk at a time.
pub fn put_slice<B: BufMut + ?Sized>(buf: &mut B, bytes: &[u8]) {
    for chunk in bytes.chunks(CHUNK) {
        buf.put_slice(chunk);
    }
}

/// Appends `bytes` to `vec`, a chunk at a time.
pub fn extend(vec: &mut Vec<u8>, bytes: &[u8]) {
    vec.reserve(bytes.len());
    for chunk in bytes.chunks(CHUNK) {
        vec.extend_from_slice(chunk);
    }
}

/// A copy of `bytes` that owns its memory.
pub fn copy_to_bytes(bytes: &[u8]) -> Bytes {
    if bytes.len() <= CHUNK {
        return Bytes::copy_from_slice(bytes);
    }
    let mut vec = Vec::with_capacity(bytes.len());
    extend(&mut vec, bytes);
    Bytes::from(vec)
}

/// A borrowed byte slice read as a [`Buf`] whose `copy_to_bytes` copies in
/// chunks. The codec's decoders that take a slice read it through this;
/// hand one to those that take any [`Buf`] (`Context::decode_in_place`,
/// `RunResult::decode_into`) to get the same for a slice.
#[derive(Debug, Clone, Copy)]
pub struct ChunkedSlice<'a>(pub &'a [u8]);

impl Buf for ChunkedSlice<'_> {
    fn remaining(&self) -> usize {
        self.0.len()
    }

    fn chunk(&self) -> &[u8] {
        self.0
    }

    fn advance(&mut self, cnt: usize) {
        self.0.advance(cnt);
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        copy_to_bytes(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of every length around the chunk size, each different.
    fn lengths() -> impl Iterator<Item = Vec<u8>> {
        [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17].into_iter().map(|len| (0..len).map(|i| i as u8).collect())
    }

    #[test]
    fn chunks_copy_every_byte_in_order() {
        for bytes in lengths() {
            let mut vec = b"head".to_vec();
            extend(&mut vec, &bytes);
            assert_eq!(vec, [&b"head"[..], &bytes].concat());
            let mut buf = bytes::BytesMut::new();
            put_slice(&mut buf, &bytes);
            assert_eq!(buf, bytes[..]);
            assert_eq!(copy_to_bytes(&bytes), bytes[..]);
        }
    }

    #[test]
    fn a_chunked_slice_takes_its_bytes_off_the_front() {
        for bytes in lengths() {
            let mut buf = ChunkedSlice(&bytes);
            let half = bytes.len() / 2;
            assert_eq!(buf.copy_to_bytes(half), bytes[..half]);
            assert_eq!(buf.remaining(), bytes.len() - half);
            assert_eq!(buf.chunk(), &bytes[half..]);
            buf.advance(buf.remaining());
            assert!(!buf.has_remaining());
        }
    }
}
