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

use std::path::PathBuf;
use std::time::Instant;

use scale_runtime::{Runtime, ScaleFunc};

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
    static BODY: [u8; 64] = [b'x'; 64];
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..runs / threads {
                    let mut instance = runtime.instance().expect("instance");
                    instance.context_mut().request.set_body(&BODY[..]);
                    instance.run().expect("run");
                    std::hint::black_box(instance.context().response.body.len());
                }
            });
        }
    });
    let elapsed = start.elapsed();
    println!(
        "{runs} runs on {threads} thread(s) in {elapsed:.2?}: {:.0} ns per run",
        elapsed.as_nanos() as f64 / runs.max(1) as f64
    );
}
