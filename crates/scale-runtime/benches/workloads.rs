//! What real workloads cost. `cargo xtask fixtures` first, then
//! `cargo bench -p scale-runtime --bench workloads`; `cargo xtask chart`
//! draws `docs/benchmarks/regex.svg` from the regex group's results.
//!
//! - `regex/{native,rust,go}/<n>KiB`: the regex benchmark of upstream Scale.
//!   Every four-letter word (`\b\w{4}\b`) of an n KiB body is replaced by
//!   "wasm"; `native` is the `regex` crate called directly, `rust` and `go`
//!   are the `regex` fixtures (Rust `regex`, Go `regexp`) run through the
//!   runtime, pooled and warm, `instance()` and the codec included.
//! - `run_chain/rust_go_native`: Rust `next` → Go `next` → a native handler;
//!   `run_chain/rust_x3`: three Rust `next` functions → the same handler.
//! - `next_native/{rust,go}`: one `next` function → a native handler.
//! - `instantiate/{rust,go}`: `instance()` on a pool miss: a fresh instance
//!   of the passthrough fixture (the runtime keeps no idle instances). Only
//!   `instance()` is timed; dropping the instance is not.
//!   `instantiate/{rust,go}/per-run`: the same under `Isolation::PerRun`,
//!   where fresh instances start from the function's template.
//! - `load/{rust,go}/{compile,cache}`: `Runtime` build of the passthrough
//!   fixture, compiling with Cranelift or loading from a warm module cache.
//!   Both include the one instance the builder makes.
//! - `threads/{1,2}`: passthrough runs (Rust) per second on one shared
//!   `Runtime`, from one thread or split over two. The threads start once
//!   per sample, outside the timing, and then run for the whole sample.
//!   `threads/2_apart`, the control: two threads, each with a `Runtime` of
//!   its own, so that they share nothing the runtime owns.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use scale_runtime::{Instance, Isolation, Runtime, ScaleFunc};

#[path = "support/text.rs"]
mod text;
#[path = "support/threads.rs"]
mod threads;
use text::text;
use threads::time_on_threads;

const LANGS: [&str; 2] = ["rust", "go"];

fn fixture(lang: &str, name: &str) -> ScaleFunc {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/fixtures/{lang}/{name}.scale"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|err| panic!("{}: {err}: run `cargo xtask fixtures` first", path.display()));
    ScaleFunc::decode(&bytes).expect("fixture decodes")
}

const PATTERN: &str = r"\b\w{4}\b";

fn regex(c: &mut Criterion) {
    let native = regex::bytes::Regex::new(PATTERN).expect("pattern");
    let runtimes: Vec<(&str, Runtime)> =
        LANGS.iter().map(|&lang| (lang, Runtime::new([fixture(lang, "regex")]).expect("runtime"))).collect();
    let run = |runtime: &Runtime, body: &Bytes| -> Bytes {
        let mut instance = runtime.instance().unwrap();
        instance.context_mut().request.set_body(body.clone());
        instance.run().unwrap();
        instance.context().response.body.clone()
    };

    let mut group = c.benchmark_group("regex");
    for kib in [2usize, 4, 8, 16, 32, 64] {
        let input = Bytes::from(text(kib * 1024));
        let expected = native.replace_all(&input, &b"wasm"[..]).into_owned();
        assert_ne!(expected, input, "the input has four-letter words");
        for (lang, runtime) in &runtimes {
            let got = run(runtime, &input);
            assert!(got == expected[..], "the {lang} guest's output differs from the native one at {kib} KiB");
        }
        let size = format!("{kib}KiB");
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(BenchmarkId::new("native", &size), |b| {
            b.iter(|| black_box(native.replace_all(black_box(&input), &b"wasm"[..]).into_owned()))
        });
        for (lang, runtime) in &runtimes {
            group.bench_function(BenchmarkId::new(*lang, &size), |b| b.iter(|| black_box(run(runtime, &input).len())));
        }
    }
    group.finish();
}

/// The native handler that ends the chains: it sets the response body.
fn with_marker(instance: Instance) -> Instance {
    instance.with_handler(|ctx| {
        ctx.response.set_body(&b"native"[..]);
        Ok(())
    })
}

/// Benchmarks `instance()` + a 64-byte body + `run()` through the native
/// handler, after checking once that the chain reached the handler.
fn bench_through_handler(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    runtime: &Runtime,
) {
    static BODY: [u8; 64] = [b'x'; 64];
    let run = || {
        let mut instance = with_marker(runtime.instance().unwrap());
        instance.context_mut().request.set_body(&BODY[..]);
        instance.run().unwrap();
        instance
    };
    assert_eq!(run().context().response.body(), b"native", "{id}: the chain did not reach the native handler");
    group.bench_function(id, |b| b.iter(|| black_box(run().context().response.body.len())));
}

fn run_chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("run_chain");
    let mixed = Runtime::new([fixture("rust", "next"), fixture("go", "next")]).expect("runtime");
    bench_through_handler(&mut group, "rust_go_native", &mixed);
    let rust_x3 =
        Runtime::new([fixture("rust", "next"), fixture("rust", "next"), fixture("rust", "next")]).expect("runtime");
    bench_through_handler(&mut group, "rust_x3", &rust_x3);
    group.finish();
}

fn next_native(c: &mut Criterion) {
    let mut group = c.benchmark_group("next_native");
    for lang in LANGS {
        let runtime = Runtime::new([fixture(lang, "next")]).expect("runtime");
        bench_through_handler(&mut group, lang, &runtime);
    }
    group.finish();
}

fn instantiate(c: &mut Criterion) {
    let mut group = c.benchmark_group("instantiate");
    for (lang, isolation) in LANGS.iter().flat_map(|&lang| [(lang, Isolation::Pooled), (lang, Isolation::PerRun)]) {
        // No idle instances are kept, so every `instance()` is a pool miss.
        let runtime = Runtime::builder()
            .isolation(isolation)
            .function(fixture(lang, "passthrough"))
            .max_idle(0)
            .build()
            .expect("runtime");
        // The builder's first instance sits in the pool; take it out.
        drop(runtime.instance().unwrap());
        let before = runtime.pool_stats();
        drop(runtime.instance().unwrap());
        let after = runtime.pool_stats();
        assert_eq!((after.created - before.created, after.reused - before.reused), (1, 0), "{lang}: not a pool miss");
        let name = match isolation {
            Isolation::PerRun => format!("{lang}/per-run"),
            _ => lang.to_string(),
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let instance = runtime.instance().unwrap();
                    total += start.elapsed();
                    drop(black_box(instance));
                }
                total
            })
        });
    }
    group.finish();
}

fn load(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    let cache_root = std::env::temp_dir().join(format!("scale-bench-cache-{}", std::process::id()));
    for lang in LANGS {
        let function = fixture(lang, "passthrough");
        group.bench_function(BenchmarkId::new(lang, "compile"), |b| {
            b.iter(|| black_box(Runtime::new([function.clone()]).unwrap()))
        });
        let cache = cache_root.join(lang);
        let cached = || Runtime::builder().function(function.clone()).cache_dir(&cache).build().unwrap();
        drop(cached()); // warm the cache
        group.bench_function(BenchmarkId::new(lang, "cache"), |b| b.iter(|| black_box(cached())));
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&cache_root);
}

fn threads(c: &mut Criterion) {
    static BODY: [u8; 64] = [b'x'; 64];
    let load = || Runtime::new([fixture("rust", "passthrough")]).expect("runtime");
    let shared = load();
    // The control: a runtime per thread, so that the threads share nothing
    // the runtime owns. What two threads gain here is what the machine
    // allows; the shared runtime's figure is measured against it.
    let apart = [load(), load()];
    let runs = |runtime: &Runtime, count: u64| {
        for _ in 0..count {
            let mut instance = runtime.instance().unwrap();
            instance.context_mut().request.set_body(&BODY[..]);
            instance.run().unwrap();
            black_box(instance.context().request.body.len());
        }
    };
    let mut group = c.benchmark_group("threads");
    group.throughput(Throughput::Elements(1));
    // Each sample starts its threads once, lets them all begin at once, and
    // times from the first thread's start to the last one's end: runs per
    // second in a steady state, thread start-up and joins outside the timing.
    for threads in [1u64, 2] {
        group.bench_function(threads.to_string(), |b| {
            b.iter_custom(|iters| time_on_threads(threads, |_| runs(&shared, iters.div_ceil(threads))))
        });
    }
    group.bench_function("2_apart", |b| {
        b.iter_custom(|iters| time_on_threads(2, |thread| runs(&apart[thread], iters.div_ceil(2))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = regex, run_chain, next_native, instantiate, load, threads
}
criterion_main!(benches);
