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
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use scale_func::{Language, ScaleFunc, SignatureId, WASM_HEADER};
use scale_runtime::{Runtime, RuntimeBuilder};
use scale_signature_http::{Bytes, Context, RunResult};
use sha2::{Digest, Sha256};
use wasm_smith::Config;

/// What a fuzz target does with one input.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name.
pub const TARGETS: [(&str, Target); 5] = [
    ("scale_decode", scale_decode),
    ("signature_decode", signature_decode),
    ("guest_output", guest_output),
    ("module_bytes", module_bytes),
    ("arbitrary_module", arbitrary_module),
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
    let signature = SignatureId::new(scale_signature_http::SIGNATURE_NAME, scale_signature_http::SIGNATURE_VERSION)
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

/// A valid module generated from the input by `wasm-smith`, loaded with
/// `Runtime` (memory limit 1 MiB, CPU budget 100,000 operations, no idle
/// instances) and, if that works, run once: see [`generate_module`] and
/// [`load_and_run`].
pub fn arbitrary_module(data: &[u8]) {
    if let Some(wasm) = generate_module(data) {
        drop(load_and_run(wasm));
    }
}

/// The module an `arbitrary_module` input makes, if the input is not empty.
///
/// Bit 0 of the first byte chooses the config, which the following bytes
/// fill in; the rest drive `wasm-smith` within it. Clear: a Scale-shaped
/// module (see `scale_shaped`), which gets past the runtime's checks of
/// exports and imports, so that its code runs. Set: `wasm-smith`'s own
/// arbitrary config, with any exports and imports and every proposal it
/// knows, for the compiler and the checks at load.
pub fn generate_module(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    let mut u = Unstructured::new(rest);
    if mode & 1 == 1 {
        let mut config = Config::arbitrary(&mut u).ok()?;
        bound(&mut config);
        return Some(wasm_smith::Module::new(config, &mut u).ok()?.to_bytes());
    }
    // The runtime calls `scale_abi_version` at load and refuses a module
    // that names a version it does not speak, which a generated body
    // practically always does; so seven in eight modules answer with a
    // version the runtime speaks instead.
    let abi_version =
        if u.ratio(7, 8).ok()? { Some(u.int_in_range(1..=scale_runtime::ABI_VERSION).ok()?) } else { None };
    let mut config = scale_shaped(&mut u).ok()?;
    bound(&mut config);
    let wasm = wasm_smith::Module::new(config, &mut u).ok()?.to_bytes();
    match abi_version {
        Some(version) => Some(answer_with(&wasm, "scale_abi_version", version)),
        None => Some(wasm),
    }
}

/// `wasm` with the body of its exported function `name` replaced by one
/// that returns `value` (as an `i32`); the rest of the module is copied
/// byte for byte. `wasm` is a valid module from `wasm-smith` in which
/// `name` is a function of type `() -> i32` that the module defines.
fn answer_with(wasm: &[u8], name: &str, value: u32) -> Vec<u8> {
    use wasmparser::{ExternalKind, Parser, Payload, TypeRef};
    let mut module = wasm_encoder::Module::new();
    let mut imported_funcs = 0;
    let mut target = None;
    let mut code: Option<(wasm_encoder::CodeSection, u32)> = None;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.expect("wasm-smith makes valid modules");
        if let Payload::CodeSectionEntry(body) = &payload {
            let (section, entry) = code.as_mut().expect("code entries follow the code section's start");
            if Some(*entry) == target {
                let mut answer = wasm_encoder::Function::new([]);
                answer.instructions().i32_const(value.cast_signed()).end();
                section.function(&answer);
            } else {
                section.raw(body.as_bytes());
            }
            *entry += 1;
            continue;
        }
        if let Some((section, _)) = code.take() {
            module.section(&section);
        }
        match &payload {
            Payload::ImportSection(imports) => {
                for import in imports.clone().into_imports() {
                    let import = import.expect("wasm-smith makes valid modules");
                    imported_funcs += u32::from(matches!(import.ty, TypeRef::Func(_)));
                }
            }
            Payload::ExportSection(exports) => {
                for export in exports.clone() {
                    let export = export.expect("wasm-smith makes valid modules");
                    if export.name == name && export.kind == ExternalKind::Func {
                        target = export.index.checked_sub(imported_funcs);
                    }
                }
            }
            Payload::CodeSectionStart { .. } => {
                code = Some((wasm_encoder::CodeSection::new(), 0));
                continue;
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            let data = &wasm[range.start as usize..range.end as usize];
            module.section(&wasm_encoder::RawSection { id, data });
        }
    }
    module.finish()
}

/// What [`load_and_run`] made of a module.
#[derive(Debug)]
pub enum Outcome {
    /// `ScaleFunc::new` refused the module.
    Invalid(scale_func::Error),
    /// `RuntimeBuilder::build` refused the module.
    NotLoaded(scale_runtime::Error),
    /// The module loaded; making an instance or the run failed.
    Failed(scale_runtime::Error),
    /// The module loaded and its run succeeded.
    Ran,
}

/// Loads `wasm` as the only function of a runtime with the fuzz limits and
/// no idle instances, and runs it once on an empty context. Every error's
/// message is formatted too.
pub fn load_and_run(wasm: Vec<u8>) -> Outcome {
    let func = match scale_func("module", Language::Rust, wasm) {
        Ok(func) => func,
        Err(err) => {
            drop(err.to_string());
            return Outcome::Invalid(err);
        }
    };
    let runtime = match limited().function(func).max_idle(0).build() {
        Ok(runtime) => runtime,
        Err(err) => {
            drop(err.to_string());
            return Outcome::NotLoaded(err);
        }
    };
    match runtime.instance().and_then(|mut instance| instance.run()) {
        Ok(()) => Outcome::Ran,
        Err(err) => {
            drop(err.to_string());
            Outcome::Failed(err)
        }
    }
}

/// The memory limit of the fuzzed guests in 64 KiB pages.
const MEMORY_LIMIT_PAGES: u32 = (MEMORY_LIMIT >> 16) as u32;

/// What a Scale-shaped module may import: the ABI's host functions and some
/// of the WASI shim's (`wasm-smith` takes any subset).
const ABI_IMPORTS: &str = r#"(module
    (import "env" "next" (func (param i32 i32 i32 i32) (result i32)))
    (import "env" "next_result" (func (param i32 i32) (result i32)))
    (import "env" "panic" (func (param i32 i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
    (import "wasi_snapshot_preview1" "poll_oneoff" (func (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))"#;

/// The exports of a Scale-shaped module: the ABI's memory (of the given
/// limits, in pages) and functions, and `_initialize` if asked for.
fn abi_exports(memory_min: u32, memory_max: Option<u32>, initialize: bool) -> Vec<u8> {
    let memory_max = memory_max.map(|max| max.to_string()).unwrap_or_default();
    let initialize = if initialize { r#"(func (export "_initialize") unreachable)"# } else { "" };
    let wat = format!(
        r#"(module
            (memory (export "memory") {memory_min} {memory_max})
            (func (export "scale_abi_version") (result i32) unreachable)
            (func (export "resize") (param i32) (result i32) unreachable)
            (func (export "run") (param i32) (result i64) unreachable)
            {initialize})"#
    );
    wat::parse_str(wat).expect("the ABI's exports are valid WAT")
}

/// A config for modules with exactly the ABI's exports (a `memory` of 0 to
/// 17 pages, one more than the limit, with or without a maximum; and now
/// and then `_initialize`), imports from the ABI's and the WASI shim's
/// functions only, and the proposals wasmer compiles. The input chooses
/// how many memories (mostly the exported one only, now and then up to 3
/// more, which load refuses) and tables (up to 4) there are and how large
/// they may be (memories mostly within the limit, now and then up to
/// 4 GiB; tables with or without a maximum, of up to `u32::MAX` entries),
/// whether shared memories, SIMD and floats are allowed, and the counts
/// that [`bound`] caps. Every instruction is allowed, including loops,
/// `memory.grow`, `table.grow` and bulk memory, and a start function may be
/// chosen.
fn scale_shaped(u: &mut Unstructured<'_>) -> arbitrary::Result<Config> {
    let memory_min = u.int_in_range(0..=MEMORY_LIMIT_PAGES + 1)?;
    let memory_max = if u.arbitrary()? { Some(u.int_in_range(memory_min..=memory_min + 32)?) } else { None };
    let initialize = u.ratio(1, 4)?;
    Ok(Config {
        available_imports: Some(wat::parse_str(ABI_IMPORTS).expect("the ABI's imports are valid WAT")),
        exports: Some(abi_exports(memory_min, memory_max, initialize)),
        max_types: u.int_in_range(0..=32)?,
        max_imports: u.int_in_range(0..=8)?,
        max_funcs: u.int_in_range(0..=16)?,
        max_globals: u.int_in_range(0..=16)?,
        max_instructions: u.int_in_range(0..=200)?,
        max_data_segments: u.int_in_range(0..=8)?,
        max_element_segments: u.int_in_range(0..=8)?,
        max_elements: u.int_in_range(0..=64)?,
        // Beyond the exported one: mostly none, as the ABI asks; now and
        // then more, which load refuses.
        max_memories: if u.ratio(1, 8)? { 3 } else { 0 },
        max_memory32_bytes: *u.choose(&[MEMORY_LIMIT, MEMORY_LIMIT, MEMORY_LIMIT, 2 * MEMORY_LIMIT, 1 << 32])?,
        max_tables: u.int_in_range(0..=4)?,
        max_table_elements: *u.choose(&[16, 10_000, 1_000_000, u64::from(u32::MAX)])?,
        table_max_size_required: u.arbitrary()?,
        threads_enabled: u.arbitrary()?,
        simd_enabled: u.arbitrary()?,
        allow_floats: u.arbitrary()?,
        bulk_memory_enabled: true,
        reference_types_enabled: true,
        multi_value_enabled: true,
        saturating_float_to_int_enabled: true,
        sign_extension_ops_enabled: true,
        extended_const_enabled: true,
        allow_start_export: true,
        // Proposals wasmer 7.4 does not compile: modules using them would
        // be refused at load and never run.
        gc_enabled: false,
        exceptions_enabled: false,
        tail_call_enabled: false,
        memory64_enabled: false,
        relaxed_simd_enabled: false,
        wide_arithmetic_enabled: false,
        custom_page_sizes_enabled: false,
        compact_imports_enabled: false,
        ..Config::default()
    })
}

/// Caps the counts of a config so that a module compiles in milliseconds:
/// at most 16 functions of at most 200 instructions, 32 types, 16 imports,
/// exports, globals and tags, 8 data and element segments of at most 64
/// elements, 4 memories and 4 tables.
fn bound(config: &mut Config) {
    config.max_types = config.max_types.min(32);
    config.max_funcs = config.max_funcs.min(16);
    config.max_instructions = config.max_instructions.min(200);
    config.max_imports = config.max_imports.min(16);
    config.max_exports = config.max_exports.min(16);
    config.max_globals = config.max_globals.min(16);
    config.max_tags = config.max_tags.min(16);
    config.max_data_segments = config.max_data_segments.min(8);
    config.max_element_segments = config.max_element_segments.min(8);
    config.max_elements = config.max_elements.min(64);
    config.max_memories = config.max_memories.min(4);
    config.max_tables = config.max_tables.min(4);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer replaces exactly the named function's body, counting
    /// imported functions, and leaves every other byte as it was.
    #[test]
    fn answer_with_replaces_one_body() {
        let module = |version_body: &str| {
            wat::parse_str(format!(
                r#"(module
                    (import "env" "a" (func))
                    (import "env" "m" (memory 1))
                    (import "env" "b" (func (param i32)))
                    (func $first (result i32) i32.const 7)
                    (func (export "scale_abi_version") (result i32) {version_body})
                    (func (result i32) i32.const 9)
                    (data (i32.const 0) "data")
                    (@custom "note" "kept"))"#
            ))
            .unwrap()
        };
        let generated = module("(local i64) local.get 0 i32.wrap_i64");
        assert_eq!(answer_with(&generated, "scale_abi_version", 2), module("i32.const 2"));
        assert_eq!(answer_with(&generated, "absent", 2), generated);
    }
}
