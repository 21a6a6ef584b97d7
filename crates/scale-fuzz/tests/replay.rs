//! Replays the committed fuzz inputs on stable, and keeps the seeds current.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use scale_func::{Language, ScaleFunc, SignatureId, WASM_HEADER};
use scale_fuzz::{CONTROL_LEN, Outcome, TARGETS, controls, generate_module, guest_output_input, load_and_run};
use scale_runtime::{Error, Runtime};
use scale_signature_http::Context;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|entry| entry.expect("readable directory").path()).collect();
    files.sort();
    files
}

#[test]
fn every_committed_input_replays() {
    for (target, run) in TARGETS {
        let seeds = files(&fuzz_dir().join("corpus").join(target));
        assert!(!seeds.is_empty(), "fuzz/corpus/{target} has no seeds");
        for path in seeds.iter().chain(&files(&fuzz_dir().join("regressions").join(target))) {
            let data = std::fs::read(path).expect("readable input");
            eprintln!("{target}: {}", path.display());
            run(&data);
        }
    }
}

fn signature() -> SignatureId {
    SignatureId::new("http", "v0.1.0").unwrap()
}

fn function(name: &str, wasm: Vec<u8>) -> ScaleFunc {
    ScaleFunc::new(name, "fuzz", signature(), Language::Rust, wasm).unwrap()
}

fn fuzz_guest() -> Vec<u8> {
    wat::parse_str(scale_fuzz::GUEST_WAT).unwrap()
}

/// The smallest module the runtime accepts.
const MINIMAL: &str = r#"(module (memory (export "memory") 1)
    (data (i32.const 8) "\0a\04\0a\00\12\00")
    (func (export "scale_abi_version") (result i32) i32.const 1)
    (func (export "resize") (param i32) (result i32) i32.const 1024)
    (func (export "run") (param i32) (result i64) i64.const 0x800000006))"#;

/// A request body of `len` bytes ending in the control block `words`, where
/// `len` is at least the block's length.
fn body(len: usize, words: [u32; 13]) -> Vec<u8> {
    let mut body = vec![b'.'; len - CONTROL_LEN];
    body.extend(controls(words));
    body
}

/// The encoded length of a context whose request body is `body`.
fn context_len(body: &[u8]) -> u32 {
    let mut ctx = Context::default();
    ctx.request.body = body.to_vec().into();
    ctx.encode_to_vec().len() as u32
}

/// The seeds of each target, by file name.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let [grow, next, next_result, panic, spin, answer, relative] = [1, 2, 4, 8, 16, 32, 64];
    // `first` hands its own input to `next` (so `second` sees the same
    // controls and does the same), the answer goes 8 KiB past the input,
    // and `run` answers with it.
    let pass_on = |cap: u32, extra: u32| {
        let len = context_len(&body(64, [0; 13]));
        body(64, [next | answer | relative | extra, 0, 0, len, 8192, cap, 8192, 16384, 0, 0, 1024, 0, 0])
    };
    let default_answer = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1024, 8, 6];
    let mut guest_output = vec![
        ("default-answer", guest_output_input(0, &[(0, body(60, default_answer))])),
        ("next-passes-on", guest_output_input(4 << 1, &[(0, pass_on(4096, 0))])),
        ("next-result-fetches", guest_output_input(100 << 1, &[(0, pass_on(16, next_result))])),
        ("handler-fails", guest_output_input(1, &[(0, pass_on(4096, 0))])),
        ("panic", guest_output_input(0, &[(0, body(64, [panic | relative, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0]))])),
        ("spin", guest_output_input(0, &[(0, body(60, [spin, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))])),
    ];
    // Grows a page, moves the input buffer there for the next, larger, run.
    let moving = [grow, 1, 0, 0, 0, 0, 0, 0, 0, 0, 70_000, 8, 6];
    let moved = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 70_000, 8, 6];
    guest_output.push(("resize-moves", guest_output_input(0, &[(0, body(60, moving)), (4, body(60, moved))])));

    let mut out = Vec::new();
    let tiny = function("hello", WASM_HEADER.to_vec()).encode();
    out.push(("scale_decode", "header-only", tiny));
    out.push(("scale_decode", "fuzz-guest", function("guest", fuzz_guest()).encode()));
    out.push(("scale_decode", "truncated-magic", scale_func::MAGIC[..6].to_vec()));
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scale-signature-http/testdata/vectors");
    for name in ["all_fields", "empty_context", "multi_valued_headers", "result_context", "result_error"] {
        let leaked: &'static str = name;
        out.push(("signature_decode", leaked, std::fs::read(vectors.join(format!("{name}.bin"))).unwrap()));
    }
    out.extend(guest_output.into_iter().map(|(name, input)| ("guest_output", name, input)));
    out.push(("module_bytes", "fuzz-guest", [&[0][..], &fuzz_guest()].concat()));
    out.push(("module_bytes", "minimal", [&[0][..], &wat::parse_str(MINIMAL).unwrap()].concat()));
    out.push(("module_bytes", "header-only", vec![1]));
    out.push(("arbitrary_module", "shaped-empty", vec![0]));
    out.push(("arbitrary_module", "any-empty", vec![1]));
    let generated: Vec<Vec<u8>> = generated_inputs().take(GENERATED).collect();
    for (name, index) in ARBITRARY_MODULE_SEEDS {
        out.push(("arbitrary_module", name, generated[index].clone()));
    }
    out
}

/// The `arbitrary_module` seeds taken from [`generated_inputs`], by name and
/// index, one per outcome; `arbitrary_module_seeds_reach_their_outcomes`
/// checks that each still reaches its outcome (a new `wasm-smith` makes
/// other modules from the same bytes: then pick the indices anew).
const ARBITRARY_MODULE_SEEDS: [(&str, usize); 9] = [
    ("any-not-scale", 0),
    ("malformed-output", 1),
    ("trap", 2),
    ("start-spins", 3),
    ("start-traps", 5),
    ("cpu-budget", 6),
    ("proc-exit", 69),
    ("abi-version-refused", 89),
    ("memory-limit", 181),
];

/// The committed seeds are the ones `seeds()` makes; `SCALE_FUZZ_BLESS=1`
/// writes them.
#[test]
fn seeds_are_current() {
    let bless = std::env::var_os("SCALE_FUZZ_BLESS").is_some();
    for (target, name, bytes) in seeds() {
        let path = fuzz_dir().join("corpus").join(target).join(name);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(committed == bytes, "{} is stale: run with SCALE_FUZZ_BLESS=1", path.display());
    }
}

/// The guest_output seeds do what their names say.
#[test]
fn guest_output_seeds_reach_their_paths() {
    let runtime = Runtime::builder()
        .functions(["first", "second"].map(|name| function(name, fuzz_guest())))
        .cpu_budget(100_000)
        .build()
        .unwrap();
    let run = |handler: u8, body: Vec<u8>| {
        let mut instance = runtime.instance().unwrap().with_handler(move |ctx: &mut Context| {
            if handler & 1 == 1 {
                return Err("refused".into());
            }
            ctx.response.body = vec![b'h'; usize::from(handler >> 1) * 64].into();
            Ok(())
        });
        instance.context_mut().request.body = body.into();
        instance.run().map(|()| instance.context().clone())
    };
    for (target, name, input) in seeds() {
        if target != "guest_output" || name == "resize-moves" {
            continue;
        }
        let body = input[4..].to_vec();
        let outcome = run(input[0], body);
        match name {
            "default-answer" => assert_eq!(outcome.unwrap(), Context::default()),
            "next-passes-on" => assert_eq!(outcome.unwrap().response.body.len(), 4 * 64),
            "next-result-fetches" => assert_eq!(outcome.unwrap().response.body.len(), 100 * 64),
            "handler-fails" => assert!(matches!(outcome, Err(Error::Handler { .. })), "{outcome:?}"),
            "panic" => assert!(matches!(outcome, Err(Error::Panic { .. })), "{outcome:?}"),
            "spin" => assert!(matches!(outcome, Err(Error::CpuBudget { .. })), "{outcome:?}"),
            other => panic!("no expectation for {other}"),
        }
    }
}

/// Runs `f` on another thread; `None` if it takes longer than `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(limit).ok()
}

/// `resize` is a call into the guest like `run`, and must be held to the CPU
/// budget; on a fresh instance it runs with no limit at all.
#[test]
fn a_resize_that_never_returns_hits_the_cpu_budget() {
    let wat = MINIMAL
        .replace("(param i32) (result i32) i32.const 1024)", "(param i32) (result i32) (loop (br 0)) i32.const 1024)");
    let runtime = Runtime::builder().function(function("spin", wat::parse_str(&wat).unwrap())).cpu_budget(10_000);
    let outcome = within(Duration::from_secs(10), move || runtime.build().unwrap().instance().unwrap().run());
    let outcome = outcome.expect("resize spun past the CPU budget for 10 s");
    assert!(matches!(outcome, Err(Error::CpuBudget { .. })), "{outcome:?}");
}

/// `_initialize` (and a start function) run at instantiation, also unmetered.
#[test]
fn an_initialize_that_never_returns_hits_the_cpu_budget() {
    let wat = MINIMAL.replace("(module", r#"(module (func (export "_initialize") (loop (br 0)))"#);
    let runtime = Runtime::builder().function(function("spin", wat::parse_str(&wat).unwrap())).cpu_budget(10_000);
    let outcome = within(Duration::from_secs(10), move || runtime.build().map(drop));
    let outcome = outcome.expect("_initialize spun past the CPU budget for 10 s");
    assert!(matches!(outcome, Err(Error::CpuBudget { .. })), "{outcome:?}");
}

/// SplitMix64: a fixed sequence of pseudo-random numbers from a seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A fixed series of `arbitrary_module` inputs of 64 to 4159 pseudo-random
/// bytes, three in four of them Scale-shaped (bit 0 of the first byte
/// clear).
fn generated_inputs() -> impl Iterator<Item = Vec<u8>> {
    let mut rng = SplitMix(0x5ca1_ef02);
    (0..).map(move |i| {
        let len = 64 + (rng.next() % 4096) as usize;
        let mut input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        input[0] = if i % 4 == 0 { input[0] | 1 } else { input[0] & !1 };
        input
    })
}

/// How many generated modules `generated_modules_load_and_run` tries.
const GENERATED: usize = 1000;

/// `arbitrary_module` on [`generated_inputs`]: each module loads and runs,
/// or returns an error, without a panic or an abort (either ends the test);
/// and most Scale-shaped modules load, so that the fuzzer reaches the code
/// of the guests it makes.
#[test]
fn generated_modules_load_and_run() {
    let (mut shaped, mut loaded) = (0, 0);
    for (i, input) in generated_inputs().take(GENERATED).enumerate() {
        let wasm = generate_module(&input).expect("a non-empty input makes a module");
        let outcome = load_and_run(wasm);
        if input[0] & 1 == 0 {
            shaped += 1;
            loaded += usize::from(matches!(outcome, Outcome::Failed(_) | Outcome::Ran));
        }
        eprintln!("generated input {i}: {outcome:?}");
    }
    assert!(loaded * 2 > shaped, "only {loaded} of {shaped} Scale-shaped modules loaded");
}

/// The `arbitrary_module` seeds reach what their names say.
#[test]
fn arbitrary_module_seeds_reach_their_outcomes() {
    for (target, name, input) in seeds() {
        if target != "arbitrary_module" {
            continue;
        }
        let outcome = load_and_run(generate_module(&input).expect("a non-empty input makes a module"));
        let reached = match name {
            "abi-version-refused" => matches!(outcome, Outcome::NotLoaded(Error::Instantiation { .. })),
            "any-empty" | "any-not-scale" => matches!(outcome, Outcome::NotLoaded(Error::InvalidModule { .. })),
            "shaped-empty" | "trap" => matches!(outcome, Outcome::Failed(Error::Trap { .. })),
            "start-spins" => matches!(outcome, Outcome::NotLoaded(Error::CpuBudget { .. })),
            "start-traps" => matches!(outcome, Outcome::NotLoaded(Error::Trap { .. })),
            "malformed-output" => matches!(outcome, Outcome::Failed(Error::MalformedOutput { .. })),
            "cpu-budget" => matches!(outcome, Outcome::Failed(Error::CpuBudget { .. })),
            "proc-exit" => matches!(outcome, Outcome::Failed(Error::Panic { .. })),
            "memory-limit" => matches!(outcome, Outcome::Failed(Error::MemoryLimit { .. })),
            other => panic!("no expectation for {other}"),
        };
        assert!(reached, "arbitrary_module seed {name}: {outcome:?}");
    }
}

/// A table grown by 2^31 - 1 elements under the fuzz target's limits (the
/// largest growth that wasmer would try to allocate): growth past the table
/// limit fails inside the guest, with nothing allocated, and this guest
/// then answers pointer 0: malformed output.
#[test]
fn a_table_grown_by_two_to_the_31_is_refused_inside_the_guest() {
    let wasm = wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (table 1 funcref)
            (func (export "scale_abi_version") (result i32) i32.const 1)
            (func (export "resize") (param i32) (result i32) i32.const 1024)
            (func (export "run") (param i32) (result i64)
                (drop (table.grow 0 (ref.null func) (i32.const 0x7fffffff)))
                i64.const 0))"#,
    )
    .expect("valid WAT");
    let outcome = load_and_run(wasm);
    assert!(matches!(outcome, Outcome::Failed(Error::MalformedOutput { .. })), "{outcome:?}");
}
