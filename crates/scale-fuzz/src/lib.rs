//! What each fuzz target of `fuzz/` does with one input.
//!
//! `fuzz/fuzz_targets/<target>.rs` calls the function of the same name, and
//! `tests/replay.rs` runs every committed input of `fuzz/corpus/<target>/`
//! and `fuzz/regressions/<target>/` through it on stable, so the corpora are
//! exercised even where cargo-fuzz is not installed. Each function returns
//! normally for every input; a panic (including a failed assertion of an
//! invariant) is a finding.
//!
//! See the `## Fuzzing` section of `docs/reliability.md`.

use std::sync::OnceLock;

use scale_func::{Language, ScaleFunc, Signature, WASM_HEADER};
use scale_runtime::{Runtime, RuntimeBuilder};
use scale_signature_http::{Bytes, Context, RunResult};
use sha2::{Digest, Sha256};

/// What a fuzz target does with one input.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name.
pub const TARGETS: [(&str, Target); 4] = [
    ("scale_decode", scale_decode),
    ("signature_decode", signature_decode),
    ("guest_output", guest_output),
    ("module_bytes", module_bytes),
];

/// `ScaleFunc::decode` on the input, and on the input with its last 32
/// bytes replaced by the right checksum (so that the fuzzer gets past the
/// checksum to the field rules). What decodes must encode to the same bytes.
pub fn scale_decode(data: &[u8]) {
    check_scale_decode(data);
    if let Some(covered) = data.len().checked_sub(scale_func::CHECKSUM_LEN) {
        let mut sealed = data[..covered].to_vec();
        sealed.extend_from_slice(&Sha256::digest(&sealed));
        check_scale_decode(&sealed);
    }
}

fn check_scale_decode(data: &[u8]) {
    match ScaleFunc::decode(data) {
        Ok(func) => assert_eq!(func.encode(), data, "a decoded .scale file encodes to other bytes"),
        Err(err) => drop(err.to_string()),
    }
}

/// `Context::decode` and `RunResult::decode` on the input, from a slice and
/// from `Bytes` (the runtime's path). What decodes must survive a round trip.
pub fn signature_decode(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let context = Context::decode(data);
    assert_eq!(context, Context::decode(bytes.clone()), "slice and Bytes decode differently");
    match context {
        Ok(context) => {
            let again = Context::decode(&context.encode_to_vec()[..]).expect("a re-encoded context decodes");
            assert_eq!(again, context, "a context changed in a round trip");
        }
        Err(err) => drop(err.to_string()),
    }
    let result = RunResult::decode(data);
    assert_eq!(result, RunResult::decode(bytes), "slice and Bytes decode differently");
    match result {
        Ok(result) => {
            let encoded = result.encode_to_vec();
            assert_eq!(encoded.len(), result.encoded_len(), "RunResult::encoded_len is wrong");
            let again = RunResult::decode(&encoded[..]).expect("a re-encoded run result decodes");
            assert_eq!(again, result, "a run result changed in a round trip");
        }
        Err(err) => drop(err.to_string()),
    }
}

/// The memory limit of the fuzzed guests: 16 pages.
const MEMORY_LIMIT: u64 = 1 << 20;
/// The CPU budget of the fuzzed guests, in wasm operations per call.
const CPU_BUDGET: u64 = 100_000;

fn limited() -> RuntimeBuilder {
    Runtime::builder().memory_limit(MEMORY_LIMIT).cpu_budget(CPU_BUDGET)
}

fn scale_func(name: &str, language: Language, wasm: Vec<u8>) -> Result<ScaleFunc, scale_func::Error> {
    let signature = Signature::new(scale_signature_http::SIGNATURE_NAME, scale_signature_http::SIGNATURE_VERSION)
        .expect("the HTTP signature's own name is valid");
    ScaleFunc::new(name, "fuzz", signature, language, wasm)
}

/// The source of the guest that `guest_output` runs: see its comments for
/// what the fuzz input controls.
pub const GUEST_WAT: &str = include_str!("guest.wat");

/// Two copies of the `guest_output` guest as a chain, compiled once. No
/// instance is kept idle, so every input starts from fresh instances and
/// replays the same.
fn guest_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let wasm = wat::parse_str(GUEST_WAT).expect("the fuzz guest is valid WAT");
        let functions = ["first", "second"].map(|name| scale_func(name, Language::Rust, wasm.clone()).expect("valid"));
        limited().functions(functions).max_idle(0).build().expect("the fuzz guest loads")
    })
}

/// The length of the control block at the end of a request body (see
/// `guest.wat`).
pub const CONTROL_LEN: usize = 13 * 4;

/// Runs the fixed guest of [`GUEST_WAT`], twice in a chain with a native
/// handler after it, on a series of contexts taken from the input, in one
/// [`scale_runtime::Instance`]. The guest answers `resize`, `run` and its
/// calls to `next`, `next_result` and `panic` with pointers, lengths and
/// bytes from the input. Any error is fine; a failed run must leave the
/// instance's context as it was.
///
/// The input: one byte for the handler (bit 0: it fails; bits 1-7: the
/// size of the response body it sets, in 64-byte units), then up to eight
/// runs, each a byte `pad`, a `u16` little-endian length `n` and `n` bytes:
/// the request body is `pad * 256` zero bytes followed by those `n` bytes,
/// which end with the control block.
pub fn guest_output(data: &[u8]) {
    let Some((&handler, mut rest)) = data.split_first() else { return };
    let Ok(instance) = guest_runtime().instance() else { return };
    let mut instance = instance.with_handler(move |ctx: &mut Context| {
        if handler & 1 == 1 {
            return Err("the fuzz handler fails".into());
        }
        ctx.response.body = Bytes::from(vec![b'h'; usize::from(handler >> 1) * 64]);
        Ok(())
    });
    for _ in 0..8 {
        let [pad, lo, hi, tail @ ..] = rest else { return };
        let (body, tail) = tail.split_at(usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len()));
        rest = tail;
        let mut context = Context::default();
        context.request.body = [&vec![0; usize::from(*pad) * 256][..], body].concat().into();
        instance.set_context(context.clone());
        if let Err(err) = instance.run() {
            drop(err.to_string());
            assert_eq!(instance.context(), &context, "a failed run changed the context: {err}");
        }
    }
}

/// The input as a function's module (after a mode byte: bit 0 puts the
/// wasm header in front, bit 1 makes it a Go function): loaded with
/// `Runtime` and, if that works, run once.
pub fn module_bytes(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let wasm = if mode & 1 == 1 { [&WASM_HEADER[..], rest].concat() } else { rest.to_vec() };
    let language = if mode & 2 == 2 { Language::Go } else { Language::Rust };
    let Ok(func) = scale_func("module", language, wasm) else { return };
    match limited().function(func).build() {
        Ok(runtime) => {
            if let Err(err) = runtime.instance().and_then(|mut instance| instance.run()) {
                drop(err.to_string());
            }
        }
        Err(err) => drop(err.to_string()),
    }
}

/// Builds a `guest_output` input, for seeds and tests: the handler byte and
/// each run's `pad` and request-body bytes (whose last [`CONTROL_LEN`]
/// bytes are the control block; see [`controls`]).
pub fn guest_output_input(handler: u8, runs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut input = vec![handler];
    for (pad, body) in runs {
        input.push(*pad);
        input.extend_from_slice(&u16::try_from(body.len()).expect("bodies are small").to_le_bytes());
        input.extend_from_slice(body);
    }
    input
}

/// A control block from its 13 words (see `guest.wat`).
pub fn controls(words: [u32; 13]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
