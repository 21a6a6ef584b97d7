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
//! A fourth argument, a number of rounds, measures how runs scale over the
//! threads on a machine whose speed drifts: each round does the runs on one
//! thread and then on all of them, back to back, and the median of the
//! rounds' ratios is printed (`hot_loop rust 1000000 2 9`).

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
    let runtime = Runtime::new([ScaleFunc::decode(&bytes).expect("fixture decodes")]).expect("runtime");
    let rounds: u32 = args.next().map(|n| n.parse().expect("rounds is a number")).unwrap_or(0);
    if rounds == 0 {
        let elapsed = time_runs(&runtime, runs, threads);
        println!(
            "{runs} runs on {threads} thread(s) in {elapsed:.2?}: {:.0} ns per run",
            elapsed.as_nanos() as f64 / runs.max(1) as f64
        );
        return;
    }
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let one = time_runs(&runtime, runs, 1);
        let all = time_runs(&runtime, runs, threads);
        let ratio = one.as_secs_f64() / all.as_secs_f64();
        println!(
            "round {round}: {:.0} ns per run on 1 thread, {:.0} on {threads}: {ratio:.2}x",
            one.as_nanos() as f64 / runs.max(1) as f64,
            all.as_nanos() as f64 / runs.max(1) as f64,
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let middle = ratios.len() / 2;
    let median = if ratios.len() % 2 == 1 { ratios[middle] } else { (ratios[middle - 1] + ratios[middle]) / 2.0 };
    println!("median of {rounds} rounds: {median:.2}x on {threads} threads");
}

/// Runs the passthrough fixture `runs` times, split over `threads` threads
/// that start together, and returns the time from the first start to the
/// last end.
fn time_runs(runtime: &Runtime, runs: u64, threads: u64) -> Duration {
    static BODY: [u8; 64] = [b'x'; 64];
    time_on_threads(threads, || {
        for _ in 0..runs / threads {
            let mut instance = runtime.instance().expect("instance");
            instance.context_mut().request.set_body(&BODY[..]);
            instance.run().expect("run");
            std::hint::black_box(instance.context().response.body.len());
        }
    })
}
