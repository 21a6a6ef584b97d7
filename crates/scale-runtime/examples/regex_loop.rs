//! The regex workload of the benchmarks in a plain loop, for profiling
//! where a large-body run's time goes:
//!
//! ```sh
//! cargo xtask fixtures
//! cargo build --release -p scale-runtime --example regex_loop
//! SCALE_PERF_MAP=1 perf record -g target/release/examples/regex_loop rust 20000
//! ```
//!
//! Arguments: `native`, `rust` or `go` (default `rust`), the number of runs
//! (default 10,000) and the body size in KiB (default 64). Prints the time
//! per run of the loop alone, after the runtime is built.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use scale_runtime::{Runtime, ScaleFunc};

#[path = "../benches/support/text.rs"]
mod text;
use text::text;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "rust".into());
    let runs: u32 = args.next().map(|n| n.parse().expect("runs is a number")).unwrap_or(10_000);
    let kib: usize = args.next().map(|n| n.parse().expect("KiB is a number")).unwrap_or(64);
    let input = Bytes::from(text(kib * 1024));
    let start;
    if mode == "native" {
        let pattern = regex::bytes::Regex::new(r"\b\w{4}\b").expect("pattern");
        start = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(pattern.replace_all(std::hint::black_box(&input), &b"wasm"[..]).into_owned());
        }
    } else {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/fixtures/{mode}/regex.scale"));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|err| panic!("{}: {err}: run `cargo xtask fixtures` first", path.display()));
        let runtime = Runtime::new([ScaleFunc::decode(&bytes).expect("fixture decodes")]).expect("runtime");
        start = Instant::now();
        for _ in 0..runs {
            let mut instance = runtime.instance().expect("instance");
            instance.context_mut().request.set_body(input.clone());
            instance.run().expect("run");
            std::hint::black_box(instance.context().response.body.len());
        }
    }
    let elapsed = start.elapsed();
    println!("{runs} {mode} runs of {kib} KiB: {:.1} µs per run", elapsed.as_secs_f64() * 1e6 / f64::from(runs.max(1)));
}
