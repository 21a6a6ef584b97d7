//! The guest side of the Scale Functions WebAssembly ABI (version 2,
//! [`ABI_VERSION`]).
//!
//! The ABI is written down in the project's `docs/abi.md`. In short, a guest
//! exports `memory`, `scale_abi_version`, `resize` and `run`, and may import
//! `env.next`, `env.next_result` and `env.panic`. This crate provides those
//! exports and imports for Rust guests, working on bytes only: decoding the
//! context and encoding the result are the business of the signature crate
//! and of the SDK (`scale-guest`), whose handler macro expands to
//! [`export_abi!`].
//!
//! ```
//! // A function (in bytes) that answers every run with the bytes it got.
//! fn echo(input: &[u8], output: &mut Vec<u8>) {
//!     output.extend_from_slice(input);
//! }
//! scale_guest_abi::export_abi!(echo);
//! ```
//!
//! On `wasm32` targets [`export_abi!`] defines the exports; elsewhere it
//! expands to nothing, so a guest crate can be unit-tested natively.
//!
//! # Buffers
//!
//! - The *input buffer* is placed by `resize` and stays where it is until the
//!   host calls `resize` again; the host writes each run's context there.
//! - The *output buffer* holds what `run` returns, until the next run.
//! - The *next buffer* receives the answers to `next`.
//!
//! All three live in guest statics. WebAssembly without the threads proposal
//! runs one thread, and the host never calls into the guest while the guest
//! is inside an import, so no two borrows of one buffer can overlap.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

/// The version of the ABI this crate implements, returned by the
/// `scale_abi_version` export. Version 2 adds one answer to `next`: 0, for
/// "the chain gave back the context you sent, unchanged" (see [`Answer`]).
pub const ABI_VERSION: u32 = 2;

/// What the host answered a `next` with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// The rest of the chain gave back the very context the guest sent
    /// (it ended there with no native handlers); the host wrote nothing.
    Unchanged,
    /// An encoded `RunResult`: the context after the rest of the chain, or
    /// the error that stopped it.
    Result(&'a [u8]),
}

/// Packs a pointer and a length into the `i64` that `run` returns:
/// the pointer in the high 32 bits, the length in the low 32.
#[inline]
pub const fn pack(ptr: u32, len: u32) -> u64 {
    ((ptr as u64) << 32) | len as u64
}

/// Splits a value made by [`pack`] into its pointer and length.
#[inline]
pub const fn unpack(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

/// Why a call to `next` did not produce an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NextError {
    /// The guest is not running inside a Scale host (for example in a native
    /// unit test), so there is no chain to hand the context to.
    NoHost,
    /// The host answered outside the ABI (a length that does not fit, or no
    /// kept result when one was announced).
    Protocol {
        /// What the host returned.
        returned: i32,
    },
}

impl fmt::Display for NextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextError::NoHost => f.write_str("next: not running inside a Scale host"),
            NextError::Protocol { returned } => {
                write!(f, "next: the host answered outside the ABI (returned {returned})")
            }
        }
    }
}

impl core::error::Error for NextError {}

/// The host's side of `next`, as the guest sees it. [`WasmHost`] is the real
/// one; tests use fakes.
pub trait NextHost {
    /// `env.next`: runs the chain on `context`; writes the answer into `out`
    /// and returns its length, or returns minus its length when `out` is too
    /// small, or returns 0 when the chain gave `context` back unchanged.
    fn next(&mut self, context: &[u8], out: &mut [u8]) -> Result<i32, NextError>;
    /// `env.next_result`: copies the kept answer into `out`.
    fn next_result(&mut self, out: &mut [u8]) -> Result<i32, NextError>;
}

/// Hands `context` to the rest of the chain through `host`, receiving the
/// answer into `buf` (grown as needed), and returns the answer: its bytes,
/// or [`Answer::Unchanged`].
pub fn next_with<'b>(host: &mut impl NextHost, context: &[u8], buf: &'b mut Vec<u8>) -> Result<Answer<'b>, NextError> {
    if buf.len() < MIN_NEXT_BUFFER {
        buf.resize(MIN_NEXT_BUFFER, 0);
    }
    let returned = host.next(context, buf)?;
    let len = match returned {
        0 => return Ok(Answer::Unchanged),
        n if n > 0 => n as usize,
        n => {
            let needed = n.unsigned_abs() as usize;
            buf.resize(needed, 0);
            match host.next_result(buf)? {
                got if got > 0 && got as usize == needed => needed,
                got => return Err(NextError::Protocol { returned: got }),
            }
        }
    };
    buf.get(..len).map(Answer::Result).ok_or(NextError::Protocol { returned })
}

/// How large the next buffer starts: most answers fit at once.
const MIN_NEXT_BUFFER: usize = 4096;

/// The guest's buffers and their operations, independent of where they live
/// (the statics of a real guest, or a test's locals).
#[derive(Debug, Default)]
// Natively only the input and output buffers are used (by tests).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub struct Buffers {
    input: Vec<u8>,
    output: Vec<u8>,
    next: Vec<u8>,
    request: Vec<u8>,
}

impl Buffers {
    /// Empty buffers.
    pub const fn new() -> Self {
        Self { input: Vec::new(), output: Vec::new(), next: Vec::new(), request: Vec::new() }
    }

    /// The `resize` export: makes the input buffer at least `size` bytes and
    /// returns its address. The buffer keeps its address until the next
    /// `resize` that needs more room.
    pub fn resize(&mut self, size: u32) -> *mut u8 {
        let size = size as usize;
        if self.input.len() < size {
            // Grow to exactly the size asked: the host only writes what it asked for.
            self.input = alloc::vec![0; size];
        }
        self.input.as_mut_ptr()
    }

    /// The `run` export: hands the first `len` input bytes to `f` with a
    /// cleared output buffer, and returns the output's packed pointer and length.
    pub fn run(&mut self, len: u32, f: impl FnOnce(&[u8], &mut Vec<u8>)) -> u64 {
        run_on(&self.input, len, &mut self.output, f)
    }
}

/// Hands the first `len` bytes of `input` (all of it, if shorter) to `f`
/// with `output` cleared, and packs where `output` ends up.
fn run_on(input: &[u8], len: u32, output: &mut Vec<u8>, f: impl FnOnce(&[u8], &mut Vec<u8>)) -> u64 {
    let len = (len as usize).min(input.len());
    output.clear();
    f(&input[..len], output);
    pack(output.as_ptr() as usize as u32, output.len() as u32)
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::*;
    use core::cell::UnsafeCell;

    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        #[link_name = "next"]
        fn env_next(ptr: u32, len: u32, out_ptr: u32, out_cap: u32) -> i32;
        #[link_name = "next_result"]
        fn env_next_result(out_ptr: u32, out_cap: u32) -> i32;
        #[link_name = "panic"]
        fn env_panic(ptr: u32, len: u32);
    }

    /// The single-threaded home of the guest's buffers.
    struct GuestCell(UnsafeCell<Buffers>);

    // SAFETY: wasm32 without the `atomics` feature has exactly one thread, so
    // the cell is never touched from two threads. With `atomics` this module
    // refuses to build (see the compile_error below).
    unsafe impl Sync for GuestCell {}

    #[cfg(target_feature = "atomics")]
    compile_error!("scale-guest-abi supports single-threaded wasm32 only");

    static BUFFERS: GuestCell = GuestCell(UnsafeCell::new(Buffers::new()));

    /// Runs `f` with the guest's buffers.
    ///
    /// Only the exports and [`next`] call this, never while another call holds
    /// the buffers: `run` releases nothing until `f` returns, and `f` reaches
    /// the buffers only through `next`, which uses fields `run` does not hold.
    fn with_buffers<R>(f: impl FnOnce(&mut Buffers) -> R) -> R {
        // SAFETY: one thread (see `GuestCell`), and the host makes no calls
        // into the guest while the guest is inside an import, so the only
        // nesting is `run` → user code → `next`; `run` goes through
        // `run_export`, which does not hold this borrow while user code runs.
        f(unsafe { &mut *BUFFERS.0.get() })
    }

    /// The body of the `resize` export.
    pub fn resize_export(size: u32) -> u32 {
        with_buffers(|buffers| buffers.resize(size) as usize as u32)
    }

    /// The body of the `run` export.
    pub fn run_export(len: u32, f: impl FnOnce(&[u8], &mut Vec<u8>)) -> u64 {
        // Move the input and output buffers out of the statics while user
        // code runs, so that `next` (which uses the other two) never aliases
        // them; put them back afterwards so the input keeps its address.
        let (input, mut output) =
            with_buffers(|buffers| (core::mem::take(&mut buffers.input), core::mem::take(&mut buffers.output)));
        let packed = run_on(&input, len, &mut output, f);
        with_buffers(|buffers| {
            buffers.input = input;
            buffers.output = output;
        });
        packed
    }

    /// The real host, reached through the `env` imports.
    #[derive(Debug)]
    pub struct WasmHost;

    impl NextHost for WasmHost {
        fn next(&mut self, context: &[u8], out: &mut [u8]) -> Result<i32, NextError> {
            // SAFETY: both slices are live guest memory for the whole call; the
            // host reads `context` and writes at most `out.len()` bytes to `out`.
            Ok(unsafe {
                env_next(
                    context.as_ptr() as usize as u32,
                    context.len() as u32,
                    out.as_mut_ptr() as usize as u32,
                    out.len() as u32,
                )
            })
        }

        fn next_result(&mut self, out: &mut [u8]) -> Result<i32, NextError> {
            // SAFETY: `out` is live guest memory; the host writes at most its length.
            Ok(unsafe { env_next_result(out.as_mut_ptr() as usize as u32, out.len() as u32) })
        }
    }

    /// Hands `context` to the rest of the chain and passes the encoded answer to `f`.
    pub fn next<R>(context: &[u8], f: impl FnOnce(Answer<'_>) -> R) -> Result<R, NextError> {
        let mut buf = with_buffers(|buffers| core::mem::take(&mut buffers.next));
        let result = next_with(&mut WasmHost, context, &mut buf).map(f);
        with_buffers(|buffers| buffers.next = buf);
        result
    }

    /// A reusable buffer for encoding what is handed to `next`.
    pub fn take_request_buffer() -> Vec<u8> {
        let mut buf = with_buffers(|buffers| core::mem::take(&mut buffers.request));
        buf.clear();
        buf
    }

    /// Gives back the buffer from [`take_request_buffer`] for the next call.
    pub fn return_request_buffer(buf: Vec<u8>) {
        with_buffers(|buffers| buffers.request = buf);
    }

    /// Tells the host why the guest is about to trap.
    pub fn report_panic(message: &str) {
        // SAFETY: the host only reads `message.len()` bytes at its address.
        unsafe { env_panic(message.as_ptr() as usize as u32, message.len() as u32) }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::*;

    /// Outside WebAssembly there is no host: `next` reports [`NextError::NoHost`].
    pub fn next<R>(_context: &[u8], _f: impl FnOnce(Answer<'_>) -> R) -> Result<R, NextError> {
        Err(NextError::NoHost)
    }

    /// A buffer for encoding what is handed to `next`.
    pub fn take_request_buffer() -> Vec<u8> {
        Vec::new()
    }

    /// Drops the buffer (natively there is nothing to reuse it for).
    pub fn return_request_buffer(_buf: Vec<u8>) {}

    /// Natively a panic unwinds or aborts as usual; there is no host to tell.
    pub fn report_panic(_message: &str) {}
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::{next, report_panic, return_request_buffer, take_request_buffer};
#[cfg(target_arch = "wasm32")]
pub use wasm::{WasmHost, next, report_panic, resize_export, return_request_buffer, run_export, take_request_buffer};

/// Defines the ABI's exports (`scale_abi_version`, `resize`, `run`) around a
/// function `fn(input: &[u8], output: &mut Vec<u8>)` that turns an encoded
/// context into an encoded `RunResult`.
///
/// On targets other than `wasm32` it expands to nothing. Use it once per
/// guest: a second use is a duplicate-symbol error.
#[macro_export]
macro_rules! export_abi {
    ($handler:expr) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // The handler is named before the exports exist, in a scope
            // they are not in: a handler called `run` or `resize` is the
            // caller's function, not the export of the same name.
            const HANDLER: fn(&[u8], &mut $crate::__Vec<u8>) = $handler;
            const _: () = {
                #[unsafe(no_mangle)]
                pub extern "C" fn scale_abi_version() -> u32 {
                    $crate::ABI_VERSION
                }

                #[unsafe(no_mangle)]
                pub extern "C" fn resize(size: u32) -> u32 {
                    $crate::resize_export(size)
                }

                #[unsafe(no_mangle)]
                pub extern "C" fn run(len: u32) -> u64 {
                    $crate::run_export(len, HANDLER)
                }
            };
        };
        // Keep the handler "used" on native targets too.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(&[u8], &mut $crate::__Vec<u8>) = $handler;
    };
}

#[doc(hidden)]
pub use alloc::vec::Vec as __Vec;

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn pack_round_trips_extremes() {
        for (ptr, len) in [(0, 0), (1, u32::MAX), (u32::MAX, 0), (u32::MAX, u32::MAX), (65536, 12)] {
            assert_eq!(unpack(pack(ptr, len)), (ptr, len));
        }
        assert_eq!(pack(1, 2), (1 << 32) | 2);
    }

    #[test]
    fn resize_keeps_the_address_while_the_buffer_is_large_enough() {
        let mut buffers = Buffers::new();
        let first = buffers.resize(100);
        assert_eq!(buffers.resize(50), first);
        assert_eq!(buffers.resize(100), first);
        buffers.resize(1000);
        assert!(buffers.input.len() >= 1000);
    }

    #[test]
    fn run_sees_exactly_len_bytes_and_returns_the_output() {
        let mut buffers = Buffers::new();
        let ptr = buffers.resize(8);
        // SAFETY: `resize` returned a buffer of at least 8 bytes.
        unsafe { core::ptr::copy_nonoverlapping(b"abcdefgh".as_ptr(), ptr, 8) };
        let packed = buffers.run(3, |input, output| {
            assert_eq!(input, b"abc");
            output.extend_from_slice(b"result");
        });
        let (out_ptr, out_len) = unpack(packed);
        assert_eq!(out_len, 6);
        assert_eq!(out_ptr, buffers.output.as_ptr() as usize as u32);
    }

    #[test]
    fn run_clamps_a_len_larger_than_the_buffer() {
        let mut buffers = Buffers::new();
        buffers.resize(4);
        buffers.run(1000, |input, _| assert_eq!(input.len(), 4));
    }

    /// A fake host that answers with a fixed result, honouring `out_cap`.
    struct FakeHost {
        answer: Vec<u8>,
        kept: Option<Vec<u8>>,
        next_result_calls: usize,
    }

    impl NextHost for FakeHost {
        fn next(&mut self, _context: &[u8], out: &mut [u8]) -> Result<i32, NextError> {
            if self.answer.len() <= out.len() {
                out[..self.answer.len()].copy_from_slice(&self.answer);
                Ok(self.answer.len() as i32)
            } else {
                self.kept = Some(self.answer.clone());
                Ok(-(self.answer.len() as i32))
            }
        }

        fn next_result(&mut self, out: &mut [u8]) -> Result<i32, NextError> {
            self.next_result_calls += 1;
            match self.kept.take() {
                Some(kept) if kept.len() <= out.len() => {
                    out[..kept.len()].copy_from_slice(&kept);
                    Ok(kept.len() as i32)
                }
                Some(kept) => Ok(-(kept.len() as i32)),
                None => Ok(0),
            }
        }
    }

    #[test]
    fn next_answer_that_fits_needs_one_call() {
        let mut host = FakeHost { answer: vec![7; 10], kept: None, next_result_calls: 0 };
        let mut buf = Vec::new();
        assert_eq!(next_with(&mut host, b"ctx", &mut buf).unwrap(), Answer::Result(&[7; 10][..]));
        assert_eq!(host.next_result_calls, 0);
    }

    #[test]
    fn next_answer_too_large_is_fetched_with_next_result() {
        let answer: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut host = FakeHost { answer: answer.clone(), kept: None, next_result_calls: 0 };
        let mut buf = Vec::new();
        assert_eq!(next_with(&mut host, b"ctx", &mut buf).unwrap(), Answer::Result(&answer[..]));
        assert_eq!(host.next_result_calls, 1);
    }

    #[test]
    fn next_zero_means_unchanged() {
        struct Zero;
        impl NextHost for Zero {
            fn next(&mut self, _: &[u8], _: &mut [u8]) -> Result<i32, NextError> {
                Ok(0)
            }
            fn next_result(&mut self, _: &mut [u8]) -> Result<i32, NextError> {
                Ok(0)
            }
        }
        let mut buf = Vec::new();
        assert_eq!(next_with(&mut Zero, b"ctx", &mut buf), Ok(Answer::Unchanged));
    }

    #[test]
    fn next_result_that_disagrees_with_next_is_a_protocol_error() {
        struct Liar;
        impl NextHost for Liar {
            fn next(&mut self, _: &[u8], _: &mut [u8]) -> Result<i32, NextError> {
                Ok(-100_000)
            }
            fn next_result(&mut self, _: &mut [u8]) -> Result<i32, NextError> {
                Ok(5)
            }
        }
        let mut buf = Vec::new();
        assert_eq!(next_with(&mut Liar, b"", &mut buf), Err(NextError::Protocol { returned: 5 }));
    }

    #[test]
    fn native_next_has_no_host() {
        assert_eq!(next(b"", |_| ()), Err(NextError::NoHost));
    }
}
