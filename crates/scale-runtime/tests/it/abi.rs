//! Every ABI rule of docs/abi.md, checked with tiny hand-written modules.

use scale_func::{Language, ScaleFunc, SignatureId};
use scale_runtime::{Error, Runtime};

/// `RunResult { context: Context::default() }`, as a WAT data string.
const DEFAULT_RESULT: &str = r#"\0a\04\0a\00\12\00"#;
const DEFAULT_RESULT_LEN: u64 = 6;

/// A module with the ABI's exports: the input buffer lives at 1024, and
/// `run`'s body is `run` (it gets the input length as local 0 and must
/// leave an i64 on the stack). `extra` adds imports and functions.
pub(crate) fn module(imports: &str, run: &str, extra: &str) -> String {
    module_speaking(1, imports, run, extra)
}

/// [`module`], with `scale_abi_version` returning `version`.
fn module_speaking(version: u32, imports: &str, run: &str, extra: &str) -> String {
    format!(
        r#"(module
            {imports}
            (memory (export "memory") 1)
            (data (i32.const 8) "{DEFAULT_RESULT}")
            (func (export "scale_abi_version") (result i32) i32.const {version})
            (func (export "resize") (param i32) (result i32) i32.const 1024)
            (func (export "run") (param $len i32) (result i64) {run})
            {extra}
        )"#
    )
}

pub(crate) fn packed(ptr: u64, len: u64) -> String {
    format!("i64.const {}", (ptr << 32) | len)
}

pub(crate) fn function(wat: &str) -> ScaleFunc {
    let wasm = wasmer::wat2wasm(wat.as_bytes()).unwrap_or_else(|err| panic!("bad test WAT: {err}\n{wat}"));
    ScaleFunc::new("wat", "test", SignatureId::new("http", "v0.1.0").unwrap(), Language::Rust, wasm.into_owned())
        .unwrap()
}

fn load(wat: &str) -> Result<Runtime, Error> {
    Runtime::new([function(wat)])
}

fn run_once(wat: &str) -> Result<scale_runtime::Context, Error> {
    let runtime = load(wat).expect("module loads");
    let mut instance = runtime.instance()?;
    instance.run()?;
    Ok(instance.context().clone())
}

fn invalid_reason(err: Error) -> String {
    match err {
        Error::InvalidModule { reason, .. } => reason,
        other => panic!("expected InvalidModule, got {other:?}"),
    }
}

fn malformed_what(err: Error) -> String {
    match err {
        Error::MalformedOutput { function, what } => {
            assert_eq!(function, "wat");
            what
        }
        other => panic!("expected MalformedOutput, got {other:?}"),
    }
}

#[test]
fn a_minimal_module_runs() {
    let ctx = run_once(&module("", &packed(8, DEFAULT_RESULT_LEN), "")).unwrap();
    assert_eq!(ctx, scale_runtime::Context::default());
}

#[test]
fn a_missing_export_is_refused_naming_it() {
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "scale_abi_version") (result i32) i32.const 1)
        (func (export "resize") (param i32) (result i32) i32.const 0))"#;
    let reason = invalid_reason(load(wat).unwrap_err());
    assert!(reason.contains("`run`"), "{reason}");
}

#[test]
fn a_missing_memory_is_refused() {
    let wat = r#"(module
        (func (export "scale_abi_version") (result i32) i32.const 1)
        (func (export "resize") (param i32) (result i32) i32.const 0)
        (func (export "run") (param i32) (result i64) i64.const 0))"#;
    let reason = invalid_reason(load(wat).unwrap_err());
    assert!(reason.contains("`memory`"), "{reason}");
}

#[test]
fn a_mistyped_export_is_refused_naming_it() {
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "scale_abi_version") (result i32) i32.const 1)
        (func (export "resize") (param i32) (result i32) i32.const 0)
        (func (export "run") (param i32) (result i32) i32.const 0))"#;
    let reason = invalid_reason(load(wat).unwrap_err());
    assert!(reason.contains("`run`") && reason.contains("expected"), "{reason}");
}

#[test]
fn an_unknown_import_is_refused_naming_it() {
    let wat = module(r#"(import "env" "open_socket" (func (param i32) (result i32)))"#, &packed(8, 6), "");
    let reason = invalid_reason(load(&wat).unwrap_err());
    assert!(reason.contains("env.open_socket"), "{reason}");

    let wat =
        module(r#"(import "wasi_snapshot_preview1" "sock_open" (func (param i32) (result i32)))"#, &packed(8, 6), "");
    let reason = invalid_reason(load(&wat).unwrap_err());
    assert!(reason.contains("wasi_snapshot_preview1.sock_open"), "{reason}");
}

#[test]
fn a_mistyped_import_is_refused_naming_it() {
    let wat = module(r#"(import "env" "next" (func (param i32 i32) (result i32)))"#, &packed(8, 6), "");
    let reason = invalid_reason(load(&wat).unwrap_err());
    assert!(reason.contains("env.next"), "{reason}");
    let wat =
        module(r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))"#, &packed(8, 6), "");
    let reason = invalid_reason(load(&wat).unwrap_err());
    assert!(reason.contains("fd_write"), "{reason}");
}

#[test]
fn an_unknown_abi_version_is_refused_at_instantiation() {
    for version in [0, 3] {
        let err = load(&module_speaking(version, "", &packed(8, 6), "")).unwrap_err();
        let expected = format!("ABI version {version}");
        assert!(matches!(&err, Error::Instantiation { reason, .. } if reason.contains(&expected)), "{err:?}");
    }
}

#[test]
fn garbage_that_is_not_wasm_is_refused() {
    let func = ScaleFunc::new(
        "junk",
        "test",
        SignatureId::new("http", "v0.1.0").unwrap(),
        Language::Rust,
        b"\0asm\x01\0\0\0\xff\xff\xff\xff".to_vec(),
    )
    .unwrap();
    assert!(matches!(Runtime::new([func]), Err(Error::InvalidModule { .. })));
}

#[test]
fn run_returning_pointer_zero_is_malformed() {
    let what = malformed_what(run_once(&module("", &packed(0, 6), "")).unwrap_err());
    assert!(what.contains("run returned"), "{what}");
}

#[test]
fn run_returning_a_length_past_memory_is_malformed() {
    let what = malformed_what(run_once(&module("", &packed(65530, 100), "")).unwrap_err());
    assert!(what.contains("outside"), "{what}");
    let what = malformed_what(run_once(&module("", &packed(8, u32::MAX as u64), "")).unwrap_err());
    assert!(what.contains("outside"), "{what}");
}

#[test]
fn run_returning_garbage_is_malformed_and_the_instance_discarded() {
    // Eight 0xff bytes at 2048: not a RunResult.
    let wat = module("", &packed(2048, 8), r#"(data (i32.const 2048) "\ff\ff\ff\ff\ff\ff\ff\ff")"#);
    let runtime = load(&wat).unwrap();
    let mut instance = runtime.instance().unwrap();
    let what = malformed_what(instance.run().unwrap_err());
    assert!(what.contains("does not decode"), "{what}");
    // The next run gets a fresh instance; the broken one is thrown away.
    let _ = instance.run();
    assert!(runtime.pool_stats().discarded >= 1);
    assert_eq!(runtime.pool_stats().created, 2);
}

#[test]
fn run_returning_an_empty_result_is_malformed() {
    let what = malformed_what(run_once(&module("", &packed(8, 0), "")).unwrap_err());
    assert!(what.contains("neither"), "{what}");
}

#[test]
fn resize_returning_out_of_bounds_is_malformed() {
    for ptr in ["0", "65535", "-16"] {
        let wat = module("", &packed(8, 6), "").replace(
            "(func (export \"resize\") (param i32) (result i32) i32.const 1024)",
            &format!("(func (export \"resize\") (param i32) (result i32) i32.const {ptr})"),
        );
        let what = malformed_what(run_once(&wat).unwrap_err());
        assert!(what.contains("resize"), "{ptr}: {what}");
    }
}

const NEXT_IMPORTS: &str = r#"
    (import "env" "next" (func $next (param i32 i32 i32 i32) (result i32)))
    (import "env" "next_result" (func $next_result (param i32 i32) (result i32)))"#;

#[test]
fn next_with_pointers_outside_memory_traps_as_malformed() {
    let cases = [
        "(call $next (i32.const -16) (i32.const 10) (i32.const 4096) (i32.const 100))",
        "(call $next (i32.const 1024) (local.get $len) (i32.const 65500) (i32.const 100))",
        "(call $next (i32.const 65535) (i32.const 2) (i32.const 4096) (i32.const 100))",
    ];
    for call in cases {
        let wat = module(NEXT_IMPORTS, &format!("{call} drop {}", packed(8, 6)), "");
        let what = malformed_what(run_once(&wat).unwrap_err());
        assert!(what.contains("next"), "{call}: {what}");
    }
}

#[test]
fn next_with_bytes_that_are_not_a_context_traps_as_malformed() {
    let wat = module(
        NEXT_IMPORTS,
        &format!("(call $next (i32.const 2048) (i32.const 3) (i32.const 4096) (i32.const 100)) drop {}", packed(8, 6)),
        r#"(data (i32.const 2048) "\ff\ff\ff")"#,
    );
    let what = malformed_what(run_once(&wat).unwrap_err());
    assert!(what.contains("does not decode"), "{what}");
}

/// A guest of ABI `version` that hands its input to `next` with an answer
/// buffer at 4096 holding the byte 0x77. It answers with what `next`
/// answered, or, when `next` returned 0, with the default context, after
/// checking that the buffer was left alone.
fn relay_or_default(version: u32) -> String {
    module_speaking(
        version,
        NEXT_IMPORTS,
        &format!(
            r#"(local $n i32)
            (local.set $n (call $next (i32.const 1024) (local.get $len) (i32.const 4096) (i32.const 4096)))
            (if (i32.gt_s (local.get $n) (i32.const 0))
                (then (return (i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.extend_i32_u (local.get $n))))))
            (if (i32.ne (local.get $n) (i32.const 0)) (then unreachable))
            (if (i32.ne (i32.load8_u (i32.const 4096)) (i32.const 0x77)) (then unreachable))
            {}"#,
            packed(8, DEFAULT_RESULT_LEN)
        ),
        r#"(data (i32.const 4096) "\77")"#,
    )
}

#[test]
fn a_version_2_guest_is_told_unchanged_where_the_chain_ends() {
    let runtime = load(&relay_or_default(2)).unwrap();
    let mut instance = runtime.instance().unwrap();
    instance.context_mut().response.set_body_string("sent");
    instance.run().unwrap();
    // `next` returned 0 and wrote nothing, so the guest answered the default context.
    assert_eq!(instance.context().response.body_str(), Some(""));

    // With a native handler the answer is the handler's context, as for version 1.
    let mut instance = runtime.instance().unwrap().with_handler(|ctx| {
        ctx.response.set_body_string("handled");
        Ok(())
    });
    instance.run().unwrap();
    assert_eq!(instance.context().response.body_str(), Some("handled"));
}

#[test]
fn a_version_1_guest_gets_its_context_back_as_bytes() {
    let runtime = load(&relay_or_default(1)).unwrap();
    let mut instance = runtime.instance().unwrap();
    instance.context_mut().response.set_body_string("sent");
    instance.run().unwrap();
    assert_eq!(instance.context().response.body_str(), Some("sent"));
}

#[test]
fn a_version_2_guest_handing_next_bytes_that_are_not_a_context_traps_as_malformed() {
    let wat = module_speaking(
        2,
        NEXT_IMPORTS,
        &format!("(call $next (i32.const 2048) (i32.const 3) (i32.const 4096) (i32.const 100)) drop {}", packed(8, 6)),
        r#"(data (i32.const 2048) "\ff\ff\ff")"#,
    );
    let what = malformed_what(run_once(&wat).unwrap_err());
    assert!(what.contains("does not decode"), "{what}");
}

/// A guest that hands its input to `next` with an answer buffer of `cap`
/// bytes at 4096; if the answer does not fit, it asks `next_result` to
/// write it at 8192 (up to 57344 bytes). It returns the answer as its own result.
fn relay(cap: u32) -> String {
    module(
        NEXT_IMPORTS,
        &format!(
            r#"(local $n i32)
            (local.set $n (call $next (i32.const 1024) (local.get $len) (i32.const 4096) (i32.const {cap})))
            (if (i32.gt_s (local.get $n) (i32.const 0))
                (then (return (i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.extend_i32_u (local.get $n))))))
            ;; nothing kept yet for a too-small buffer? ask with a buffer that is still too small first
            (if (i32.ne (call $next_result (i32.const 8192) (i32.const 1)) (local.get $n)) (then unreachable))
            (local.set $n (call $next_result (i32.const 8192) (i32.const 57344)))
            (if (i32.le_s (local.get $n) (i32.const 0)) (then unreachable))
            ;; a second next_result finds nothing kept
            (if (i32.ne (call $next_result (i32.const 8192) (i32.const 57344)) (i32.const 0)) (then unreachable))
            (i64.or (i64.shl (i64.const 8192) (i64.const 32)) (i64.extend_i32_u (local.get $n)))"#
        ),
        "",
    )
}

#[test]
fn next_answers_in_place_when_the_buffer_is_large_enough() {
    let runtime = load(&relay(60_000)).unwrap();
    let mut instance = runtime.instance().unwrap().with_handler(|ctx| {
        ctx.response.set_body_string("from the handler");
        Ok(())
    });
    instance.run().unwrap();
    assert_eq!(instance.context().response.body_str(), Some("from the handler"));
}

#[test]
fn next_keeps_an_answer_too_large_for_the_buffer_for_next_result() {
    let runtime = load(&relay(16)).unwrap();
    let big = "x".repeat(20_000);
    let body = big.clone();
    let mut instance = runtime.instance().unwrap().with_handler(move |ctx| {
        ctx.response.set_body_string(body.clone());
        Ok(())
    });
    for _ in 0..2 {
        instance.run().unwrap();
        assert_eq!(instance.context().response.body_str(), Some(big.as_str()));
    }
}

#[test]
fn a_handler_error_reaches_the_guest_as_an_error_result() {
    let runtime = load(&relay(60_000)).unwrap();
    let mut instance = runtime.instance().unwrap().with_handler(|_| Err("handler says no".into()));
    let err = instance.run().unwrap_err();
    // The guest relayed the error result; the host reports the handler's error.
    assert!(matches!(&err, Error::Handler { index: 0, source } if source.to_string() == "handler says no"), "{err:?}");
}

#[test]
fn a_reported_panic_message_is_kept() {
    let wat = module(
        r#"(import "env" "panic" (func $panic (param i32 i32)))"#,
        "(call $panic (i32.const 2048) (i32.const 11)) unreachable",
        r#"(data (i32.const 2048) "it went bad")"#,
    );
    let err = run_once(&wat).unwrap_err();
    assert!(
        matches!(&err, Error::Panic { function, message } if function == "wat" && message == "it went bad"),
        "{err:?}"
    );
}

#[test]
fn a_panic_message_at_a_bad_address_is_described() {
    let wat = module(
        r#"(import "env" "panic" (func $panic (param i32 i32)))"#,
        "(call $panic (i32.const -100) (i32.const 50)) unreachable",
        "",
    );
    let err = run_once(&wat).unwrap_err();
    assert!(matches!(&err, Error::Panic { message, .. } if message.contains("outside")), "{err:?}");
}

#[test]
fn a_plain_trap_is_reported_as_a_trap() {
    let err = run_once(&module("", "unreachable", "")).unwrap_err();
    assert!(matches!(&err, Error::Trap { function, .. } if function == "wat"), "{err:?}");
    let err = run_once(&module("", "(i64.load (i32.const 70000))", "")).unwrap_err();
    assert!(matches!(&err, Error::Trap { .. }), "{err:?}");
}

#[test]
fn unbounded_recursion_is_a_trap_not_a_host_crash() {
    let wat = module("", "call $deep i64.const 0 i64.add", r#"(func $deep (result i64) call $deep)"#);
    let err = run_once(&wat).unwrap_err();
    assert!(matches!(&err, Error::Trap { .. }), "{err:?}");
}

#[test]
fn a_module_whose_minimum_memory_exceeds_the_limit_is_refused() {
    let wat =
        module("", &packed(8, 6), "").replace("(memory (export \"memory\") 1)", "(memory (export \"memory\") 2000)");
    let err = Runtime::builder().memory_limit(16 << 20).function(function(&wat)).build().unwrap_err();
    assert!(matches!(&err, Error::InvalidModule { reason, .. } if reason.contains("memory")), "{err:?}");
}

#[test]
fn growing_past_the_memory_limit_is_a_memory_limit_error() {
    // Grows by 1 GiB; the grow fails, and the guest traps as a real one would.
    let wat =
        module("", "(if (i32.eq (memory.grow (i32.const 16384)) (i32.const -1)) (then unreachable)) i64.const 0", "");
    let runtime = Runtime::builder().memory_limit(16 << 20).function(function(&wat)).build().unwrap();
    let err = runtime.instance().unwrap().run().unwrap_err();
    assert!(matches!(err, Error::MemoryLimit { limit_bytes, .. } if limit_bytes == 16 << 20), "{err:?}");
}

#[test]
fn proc_exit_ends_the_run_not_the_host() {
    let wat = module(
        r#"(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))"#,
        "(call $exit (i32.const 3)) unreachable",
        "",
    );
    let err = run_once(&wat).unwrap_err();
    assert!(matches!(&err, Error::Panic { message, .. } if message.contains("code 3")), "{err:?}");
}

#[test]
fn the_sandbox_has_no_arguments_environment_or_files() {
    // args_sizes_get and environ_sizes_get write zero counts; path_open and
    // fd_read on anything but stdin fail. The guest traps unless all hold.
    let wat = module(
        r#"(import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))"#,
        r#"(i32.store (i32.const 3000) (i32.const 99))
           (i32.store (i32.const 3004) (i32.const 99))
           (if (i32.ne (call $args (i32.const 3000) (i32.const 3004)) (i32.const 0)) (then unreachable))
           (if (i32.ne (i32.load (i32.const 3000)) (i32.const 0)) (then unreachable))
           (if (i32.ne (call $env (i32.const 3000) (i32.const 3004)) (i32.const 0)) (then unreachable))
           (if (i32.ne (i32.load (i32.const 3004)) (i32.const 0)) (then unreachable))
           (if (i32.eqz (call $open (i32.const 3) (i32.const 0) (i32.const 2048) (i32.const 11) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 3000))) (then unreachable))
           (if (i32.ne (call $prestat (i32.const 3) (i32.const 3000)) (i32.const 8)) (then unreachable))
           (if (i32.eqz (call $accept (i32.const 3) (i32.const 0) (i32.const 3000))) (then unreachable))
           i64.const 34359738374"#,
        r#"(data (i32.const 2048) "/etc/passwd")"#,
    );
    run_once(&wat).unwrap();
}

#[test]
fn output_written_to_stdout_is_bounded_and_the_run_continues() {
    // Writes a 60 KiB iovec 100 times (6 MB in all): the host keeps 64 KiB and counts the rest.
    let wat = module(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))"#,
        r#"(local $i i32)
           (i32.store (i32.const 3000) (i32.const 4096))
           (i32.store (i32.const 3004) (i32.const 61440))
           (loop $again
             (if (i32.ne (call $write (i32.const 1) (i32.const 3000) (i32.const 1) (i32.const 3008)) (i32.const 0)) (then unreachable))
             (if (i32.ne (i32.load (i32.const 3008)) (i32.const 61440)) (then unreachable))
             (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (br_if $again (i32.lt_u (local.get $i) (i32.const 100))))
           i64.const 34359738374"#,
        "",
    );
    run_once(&wat).unwrap();
}

mod cache {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("scale-cache-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
    }

    #[test]
    fn a_cached_module_is_written_then_loaded() {
        let dir = temp_dir("roundtrip");
        let wat = module("", &packed(8, DEFAULT_RESULT_LEN), "");
        Runtime::builder().cache_dir(&dir).function(function(&wat)).build().unwrap();
        let files = entries(&dir);
        assert_eq!(files.len(), 1, "{files:?}");
        let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
        let runtime = Runtime::builder().cache_dir(&dir).function(function(&wat)).build().unwrap();
        runtime.instance().unwrap().run().unwrap();
        assert_eq!(std::fs::metadata(&files[0]).unwrap().modified().unwrap(), written, "loaded, not rewritten");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_cache_entry_is_recompiled_not_loaded() {
        let dir = temp_dir("corrupt");
        let wat = module("", &packed(8, DEFAULT_RESULT_LEN), "");
        Runtime::builder().cache_dir(&dir).function(function(&wat)).build().unwrap();
        let file = entries(&dir).remove(0);
        let mut bytes = std::fs::read(&file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        let runtime = Runtime::builder().cache_dir(&dir).function(function(&wat)).build().unwrap();
        runtime.instance().unwrap().run().unwrap();
        assert_ne!(std::fs::read(&file).unwrap(), bytes, "the corrupt entry was replaced");
        // A foreign file under the same name is not loaded either.
        std::fs::write(&file, b"not a module at all").unwrap();
        let runtime = Runtime::builder().cache_dir(&dir).function(function(&wat)).build().unwrap();
        runtime.instance().unwrap().run().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn metering_is_part_of_the_cache_key() {
        let dir = temp_dir("key");
        let wat = module("", &packed(8, DEFAULT_RESULT_LEN), "");
        Runtime::builder().cache_dir(&dir).function(function(&wat)).build().unwrap();
        Runtime::builder().cache_dir(&dir).cpu_budget(1000).function(function(&wat)).build().unwrap();
        assert_eq!(entries(&dir).len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
