//! A fixed number of warm passthrough runs, for instruction-count profiling:
//!
//! ```sh
//! cargo xtask fixtures
//! cargo build --release -p scale-runtime --example hot_loop
//! valgrind --tool=callgrind target/release/examples/hot_loop rust 100000
//! ```
//!
//! Arguments: the fixture language (`rust` or `go`, default `rust`), the
//! number of runs (default 1,000,000) and the number of threads sharing the
//! runtime and the runs (default 1). Prints the time per run it saw.
//!
//! `SCALE_HOT_LIMITS` sets limits on the runtime: `budget` (10^9
//! operations), `deadline` (10 s) or `budget,deadline`, to count what each
//! costs a warm run.
//!
//! A fourth argument, a number of rounds, measures how runs scale over the
//! threads on a machine whose speed drifts (`hot_loop rust 1000000 2 9`).
//! Each round does the runs on one thread, then on all of them sharing the
//! runtime, then on all of them with a runtime each (the control: threads
//! that share nothing the runtime owns), back to back; the medians of the
//! rounds' ratios over one thread are printed.

use std::path::PathBuf;
use std::time::Duration;

use scale_runtime::{Runtime, ScaleFunc};

#[path = "../benches/support/threads.rs"]
mod threads;
use threads::time_on_threads;

fn main() {
    let mut args = std::env::args().skip(1);
    let lang = args.next().unwrap_or_else(|| "rust".into());
    let runs: u64 = args.next().map(|n| n.parse().expect("runs is a number")).unwrap_or(1_000_000);
    let threads: u64 = args.next().map(|n| n.parse().expect("threads is a number")).unwrap_or(1).max(1);
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/fixtures/{lang}/passthrough.scale"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|err| panic!("{}: {err}: run `cargo xtask fixtures` first", path.display()));
    let limits = std::env::var("SCALE_HOT_LIMITS").unwrap_or_default();
    let load = || {
        let mut builder = Runtime::builder().function(ScaleFunc::decode(&bytes).expect("fixture decodes"));
        for limit in limits.split(',').filter(|limit| !limit.is_empty()) {
            builder = match limit {
                "budget" => builder.cpu_budget(1_000_000_000),
                "deadline" => builder.deadline(Duration::from_secs(10)),
                other => panic!("SCALE_HOT_LIMITS: unknown limit {other:?} (budget, deadline)"),
            };
        }
        builder.build().expect("runtime")
    };
    let runtime = load();
    let rounds: u32 = args.next().map(|n| n.parse().expect("rounds is a number")).unwrap_or(0);
    if rounds == 0 {
        let elapsed = time_runs(std::slice::from_ref(&runtime), runs, threads);
        println!(
            "{runs} runs on {threads} thread(s) in {elapsed:.2?}: {:.0} ns per run",
            elapsed.as_nanos() as f64 / runs.max(1) as f64
        );
        return;
    }
    // The control: one runtime per thread, sharing nothing the runtime owns.
    let apart: Vec<Runtime> = (0..threads).map(|_| load()).collect();
    let per_run = |elapsed: Duration| elapsed.as_nanos() as f64 / runs.max(1) as f64;
    let (mut shared_ratios, mut apart_ratios) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let one = time_runs(std::slice::from_ref(&runtime), runs, 1);
        let shared = time_runs(std::slice::from_ref(&runtime), runs, threads);
        let own = time_runs(&apart, runs, threads);
        let (shared_ratio, apart_ratio) =
            (one.as_secs_f64() / shared.as_secs_f64(), one.as_secs_f64() / own.as_secs_f64());
        println!(
            "round {round}: {:.0} ns per run on 1 thread; on {threads}: {:.0} sharing a runtime ({shared_ratio:.2}x), \
             {:.0} apart ({apart_ratio:.2}x)",
            per_run(one),
            per_run(shared),
            per_run(own),
        );
        shared_ratios.push(shared_ratio);
        apart_ratios.push(apart_ratio);
    }
    println!(
        "median of {rounds} rounds on {threads} threads: {:.2}x sharing a runtime, {:.2}x apart",
        median(shared_ratios),
        median(apart_ratios)
    );
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 { values[middle] } else { (values[middle - 1] + values[middle]) / 2.0 }
}

/// Runs the passthrough fixture `runs` times, split over `threads` threads
/// that start together, and returns the time from the first start to the
/// last end. Thread `i` uses `runtimes[i % runtimes.len()]`.
fn time_runs(runtimes: &[Runtime], runs: u64, threads: u64) -> Duration {
    static BODY: [u8; 64] = [b'x'; 64];
    time_on_threads(threads, |thread| {
        let runtime = &runtimes[thread % runtimes.len()];
        for _ in 0..runs / threads {
            let mut instance = runtime.instance().expect("instance");
            instance.context_mut().request.set_body(&BODY[..]);
            instance.run().expect("run");
            std::hint::black_box(instance.context().response.body.len());
        }
    })
}
