//! Copies of large byte strings, made in pieces of [`PIECE`] bytes.
//!
//! glibc's `memcpy` (2.36 here) copies 4 KiB or more with `rep movsb` on
//! CPUs that advertise fast string moves. On the AMD EPYC (Zen 3) machines
//! this project is measured on, that instruction crawls when the target lies
//! a few bytes past the source modulo 4 KiB, which is where the second of two
//! heap blocks allocated one after the other usually is (16 bytes further,
//! past the allocator's header): 64 KiB took 26 µs to copy in one call and
//! 1.8 µs in 2 KiB pieces, which glibc copies with vector moves (the
//! `copy_64KiB` group of `crates/scale-runtime/benches/run.rs`). A wasm
//! guest's `memory.copy` reaches the same `memcpy` through the runtime, so
//! guests copy in pieces too. Where `rep movsb` is fast, pieces cost about
//! the same.

use alloc::vec::Vec;

use bytes::{Buf, BufMut, Bytes};

/// The size of one piece: below the size from which glibc uses `rep movsb`.
pub const PIECE: usize = 2048;

/// Appends `bytes` to `buf`, a piece at a time.
pub fn put_slice<B: BufMut + ?Sized>(buf: &mut B, bytes: &[u8]) {
    for piece in bytes.chunks(PIECE) {
        buf.put_slice(piece);
    }
}

/// Appends `bytes` to `vec`, a piece at a time.
pub fn extend(vec: &mut Vec<u8>, bytes: &[u8]) {
    vec.reserve(bytes.len());
    for piece in bytes.chunks(PIECE) {
        vec.extend_from_slice(piece);
    }
}

/// A copy of `bytes` that owns its memory.
pub fn copy_to_bytes(bytes: &[u8]) -> Bytes {
    if bytes.len() <= PIECE {
        return Bytes::copy_from_slice(bytes);
    }
    let mut vec = Vec::with_capacity(bytes.len());
    extend(&mut vec, bytes);
    Bytes::from(vec)
}

/// A byte slice read as a [`Buf`] whose `copy_to_bytes` copies in pieces.
/// The codec's decoders that take a slice read it through this; hand one to
/// those that take any [`Buf`] (`Context::decode_in_place`,
/// `RunResult::decode_into`) to get the same for a slice.
#[derive(Debug, Clone, Copy)]
pub struct Slice<'a>(pub &'a [u8]);

impl Buf for Slice<'_> {
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

    /// Bytes of every length around the piece size, each different.
    fn lengths() -> impl Iterator<Item = Vec<u8>> {
        [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 17].into_iter().map(|len| (0..len).map(|i| i as u8).collect())
    }

    #[test]
    fn pieces_copy_every_byte_in_order() {
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
    fn a_slice_buf_takes_its_bytes_off_the_front() {
        for bytes in lengths() {
            let mut buf = Slice(&bytes);
            let half = bytes.len() / 2;
            assert_eq!(buf.copy_to_bytes(half), bytes[..half]);
            assert_eq!(buf.remaining(), bytes.len() - half);
            assert_eq!(buf.chunk(), &bytes[half..]);
            buf.advance(buf.remaining());
            assert!(!buf.has_remaining());
        }
    }
}
