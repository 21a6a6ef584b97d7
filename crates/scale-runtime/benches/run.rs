//! What a run costs. `cargo xtask fixtures` first, then `cargo bench -p scale-runtime`.
//!
//! - `run_passthrough/{rust,go}`: `instance()` + set a 64-byte body + `run()`
//!   on the passthrough fixture, pooled and warm: the whole round trip,
//!   encoding and decoding on both sides included.
//! - `run_passthrough/{rust,go}/per-run`: the same under
//!   `Isolation::PerRun`: every run ends by resetting the guest.
//! - `reset/{pooled,per-run}/{1,16,256}`: a run of a tiny module that
//!   writes one byte in each of 1, 16 or 256 memory pages of 4 KiB, pooled
//!   or under per-run isolation: the difference is what the reset of that
//!   many dirtied pages costs (the page faults of the next run included).
//! - `run_limits/rust/{none,budget,deadline,both}`: `run_passthrough/rust`
//!   with no limit, a CPU budget, a deadline, or both: what each limit
//!   costs a warm run.
//! - `handler/rust/{sync,async}/{run,run_async}`: a warm run of the `next`
//!   fixture (passthrough → native handler → back) whose handler sets a
//!   header, as a plain handler or an async one (a future ready at once),
//!   with `run()` or with `run_async()` awaited by a minimal executor: what
//!   an async handler and a run on a runner thread cost.
//! - `baseline/wasmer_call`: one typed call of an exported identity function
//!   on a bare wasmer instance, no codec and no memory traffic: the floor.
//! - `copy_64KiB/{whole,chunks}/{0,16}`: copying 64 KiB in one call or in
//!   the 2 KiB chunks the codec and the runtime use
//!   (`scale_signature_http::raw::chunked_copy`), to a target 0 or 16 bytes past the
//!   source modulo 4 KiB (see `docs/benchmarks.md`, *Large copies*).

use std::path::PathBuf;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use scale_runtime::{Isolation, Runtime, ScaleFunc};
use scale_signature_http::raw::chunked_copy::CHUNK;
use wasmer::{Instance, Module, Store, TypedFunction, imports};

fn fixture(lang: &str, name: &str) -> ScaleFunc {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/fixtures/{lang}/{name}.scale"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|err| panic!("{}: {err}: run `cargo xtask fixtures` first", path.display()));
    ScaleFunc::decode(&bytes).expect("fixture decodes")
}

/// Benches `instance()` + a 64-byte body + `run()` on `runtime`, warm.
fn bench_passthrough(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, runtime: &Runtime) {
    static BODY: [u8; 64] = [b'x'; 64];
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut instance = runtime.instance().unwrap();
            instance.context_mut().request.set_body(&BODY[..]);
            instance.run().unwrap();
            std::hint::black_box(instance.context().request.body.len());
        })
    });
}

fn run_passthrough(c: &mut Criterion) {
    let mut group = c.benchmark_group("run_passthrough");
    for lang in ["rust", "go"] {
        for isolation in [Isolation::Pooled, Isolation::PerRun] {
            let runtime = Runtime::builder()
                .isolation(isolation)
                .function(fixture(lang, "passthrough"))
                .build()
                .expect("runtime");
            // Warm the pool.
            runtime.instance().unwrap().run().unwrap();
            let name = match isolation {
                Isolation::PerRun => format!("{lang}/per-run"),
                _ => lang.to_string(),
            };
            bench_passthrough(&mut group, &name, &runtime);
        }
    }
    group.finish();
}

/// A module whose `run` writes a byte in each of `pages` 4 KiB pages from
/// 64 KiB on, and answers with the default context.
fn dirtying(pages: u32) -> ScaleFunc {
    let wat = format!(
        r#"(module
            (memory (export "memory") 20)
            (data (i32.const 8) "\0a\04\0a\00\12\00")
            (func (export "scale_abi_version") (result i32) i32.const 2)
            (func (export "resize") (param i32) (result i32) i32.const 1024)
            (func (export "run") (param i32) (result i64)
                (local $page i32)
                (loop $next
                    (i32.store8 (i32.add (i32.const 65536) (i32.mul (local.get $page) (i32.const 4096))) (local.get $page))
                    (local.set $page (i32.add (local.get $page) (i32.const 1)))
                    (br_if $next (i32.lt_u (local.get $page) (i32.const {pages}))))
                i64.const 0x0000000800000006))"#
    );
    let wasm = wasmer::wat2wasm(wat.as_bytes()).expect("valid WAT").into_owned();
    let signature = scale_func::SignatureId::new("http", "v0.1.0").expect("a valid signature");
    ScaleFunc::new("dirty", "bench", signature, scale_func::Language::Rust, wasm).expect("a valid function")
}

fn reset(c: &mut Criterion) {
    let mut group = c.benchmark_group("reset");
    for (name, isolation) in [("pooled", Isolation::Pooled), ("per-run", Isolation::PerRun)] {
        for pages in [1, 16, 256] {
            let runtime = Runtime::builder().isolation(isolation).function(dirtying(pages)).build().expect("runtime");
            let mut instance = runtime.instance().unwrap();
            instance.run().unwrap();
            group.bench_function(format!("{name}/{pages}"), |b| b.iter(|| instance.run().unwrap()));
        }
    }
    group.finish();
}

fn run_limits(c: &mut Criterion) {
    let mut group = c.benchmark_group("run_limits/rust");
    let budget = 1_000_000_000;
    let deadline = std::time::Duration::from_secs(10);
    let builders = [
        ("none", Runtime::builder()),
        ("budget", Runtime::builder().cpu_budget(budget)),
        ("deadline", Runtime::builder().deadline(deadline)),
        ("both", Runtime::builder().cpu_budget(budget).deadline(deadline)),
    ];
    for (name, builder) in builders {
        let runtime = builder.function(fixture("rust", "passthrough")).build().expect("runtime");
        runtime.instance().unwrap().run().unwrap();
        bench_passthrough(&mut group, name, &runtime);
    }
    group.finish();
}

/// Polls `future` on this thread until it is ready, parking in between.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}

fn handler(c: &mut Criterion) {
    let mut group = c.benchmark_group("handler/rust");
    let runtime = Runtime::new([fixture("rust", "next")]).expect("runtime");
    let sync = || {
        runtime.instance().unwrap().with_handler(|ctx| {
            ctx.response.headers_mut().set("x-handler", ["yes"]);
            Ok(())
        })
    };
    let asynchronous = || {
        runtime.instance().unwrap().with_async_handler(|mut ctx: scale_runtime::Context| async move {
            ctx.response.headers_mut().set("x-handler", ["yes"]);
            Ok(ctx)
        })
    };
    sync().run().unwrap();
    block_on(asynchronous().run_async()).unwrap();
    group.bench_function("sync/run", |b| b.iter(|| sync().run().unwrap()));
    group.bench_function("async/run", |b| b.iter(|| asynchronous().run().unwrap()));
    group.bench_function("sync/run_async", |b| b.iter(|| block_on(sync().run_async()).unwrap()));
    group.bench_function("async/run_async", |b| b.iter(|| block_on(asynchronous().run_async()).unwrap()));
    group.finish();
}

fn baseline(c: &mut Criterion) {
    let wasm = wasmer::wat2wasm(br#"(module (func (export "id") (param i32) (result i32) local.get 0))"#).unwrap();
    let mut store = Store::default();
    let module = Module::new(&store, wasm).unwrap();
    let instance = Instance::new(&mut store, &module, &imports! {}).unwrap();
    let id: TypedFunction<i32, i32> = instance.exports.get_typed_function(&store, "id").unwrap();
    c.bench_function("baseline/wasmer_call", |b| {
        b.iter(|| std::hint::black_box(id.call(&mut store, std::hint::black_box(7)).unwrap()))
    });
}

fn copy(c: &mut Criterion) {
    const LEN: usize = 64 * 1024;
    const PAGE: usize = 4096;
    let mut arena: Vec<u8> = (0..4 * LEN).map(|i| i as u8).collect();
    // The source starts a page; each target starts `distance` bytes past a
    // page boundary, `distance` being how far past the source it lies,
    // modulo 4 KiB. Two heap blocks allocated one after the other lie 16
    // bytes apart that way (glibc's chunk header).
    let source = (PAGE - arena.as_ptr() as usize % PAGE) % PAGE;
    let mut group = c.benchmark_group("copy_64KiB");
    group.throughput(criterion::Throughput::Bytes(LEN as u64));
    for distance in [0, 16] {
        let target = source + 2 * LEN + distance;
        let (from, to) = arena.split_at_mut(target);
        let (from, to) = (&from[source..source + LEN], &mut to[..LEN]);
        group
            .bench_function(format!("whole/{distance}"), |b| b.iter(|| to.copy_from_slice(std::hint::black_box(from))));
        group.bench_function(format!("chunks/{distance}"), |b| {
            b.iter(|| {
                for (to, from) in to.chunks_mut(CHUNK).zip(std::hint::black_box(from).chunks(CHUNK)) {
                    to.copy_from_slice(from);
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = run_passthrough, reset, run_limits, handler, baseline, copy
}
criterion_main!(benches);
