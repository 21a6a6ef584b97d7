//! Memory figures of the runtime (Linux: reads `VmRSS` from /proc/self/status).
//!
//! ```sh
//! cargo xtask fixtures
//! cargo run --release -p scale-runtime --example memory     # or: cargo xtask mem
//! ```
//!
//! - **idle**: resident memory per pooled idle instance of the passthrough
//!   fixture: `N` instances are taken at once, run once each and given back
//!   to the pool; the RSS that this added, divided by the instances made.
//! - **growth**: RSS after loading, after a warm-up, and after 1,000,000
//!   passthrough runs (`instance()` + a 64-byte body + `run()`, as in the
//!   `run_passthrough` benchmark), and the growth since the warm-up.
//!
//! Each measurement runs in a child process of its own, so that memory freed
//! by one does not hide what the next one needs.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use scale_runtime::{Runtime, ScaleFunc};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const IDLE_INSTANCES: usize = 64;
const WARM_UP_RUNS: u64 = 10_000;
const RUNS: u64 = 1_000_000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["idle", lang] => idle(lang),
        ["growth", lang] => growth(lang),
        [] => {
            println!("machine: {} CPUs", std::thread::available_parallelism().map_or(0, |n| n.get()));
            for lang in ["rust", "go"] {
                for what in ["idle", "growth"] {
                    child(what, lang)?;
                }
            }
            Ok(())
        }
        _ => Err("usage: memory [idle|growth rust|go]".into()),
    }
}

/// Runs this program again for one measurement and passes its output on.
fn child(what: &str, lang: &str) -> Result<()> {
    let status = Command::new(std::env::current_exe()?).args([what, lang]).status()?;
    if !status.success() {
        return Err(format!("`memory {what} {lang}` failed: {status}").into());
    }
    Ok(())
}

fn fixture(lang: &str, name: &str) -> Result<ScaleFunc> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/fixtures/{lang}/{name}.scale"));
    let bytes =
        std::fs::read(&path).map_err(|err| format!("{}: {err}: run `cargo xtask fixtures` first", path.display()))?;
    Ok(ScaleFunc::decode(&bytes)?)
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS in /proc/self/status")?;
    let kib = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim();
    Ok(kib.parse()?)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn idle(lang: &str) -> Result<()> {
    let runtime = Runtime::builder().function(fixture(lang, "passthrough")?).max_idle(IDLE_INSTANCES).build()?;
    // One run first, so that what is measured is instances, not first-run
    // costs of the host (lazily made tables, allocator arenas).
    runtime.instance()?.run()?;
    let created_before = runtime.pool_stats().created;
    let before = rss_kib()?;
    let mut held = Vec::with_capacity(IDLE_INSTANCES);
    for _ in 0..IDLE_INSTANCES {
        let mut instance = runtime.instance()?;
        instance.run()?;
        held.push(instance);
    }
    drop(held);
    let after = rss_kib()?;
    let stats = runtime.pool_stats();
    let made = stats.created - created_before;
    assert_eq!(stats.idle, IDLE_INSTANCES as u64, "every instance went back to the pool");
    let per_instance = (after.saturating_sub(before)) as f64 / made.max(1) as f64;
    println!(
        "idle/{lang}: {IDLE_INSTANCES} idle instances ({made} made): RSS {:.1} -> {:.1} MiB, {:.0} KiB ({:.2} MiB) per instance",
        mib(before),
        mib(after),
        per_instance,
        per_instance / 1024.0
    );
    Ok(())
}

fn growth(lang: &str) -> Result<()> {
    static BODY: [u8; 64] = [b'x'; 64];
    let runtime = Runtime::new([fixture(lang, "passthrough")?])?;
    let run = |count: u64| -> Result<()> {
        for _ in 0..count {
            let mut instance = runtime.instance()?;
            instance.context_mut().request.set_body(&BODY[..]);
            instance.run()?;
        }
        Ok(())
    };
    let start = rss_kib()?;
    run(WARM_UP_RUNS)?;
    let warm = rss_kib()?;
    let timer = Instant::now();
    let mut peak = warm;
    for _ in 0..10 {
        run(RUNS / 10)?;
        peak = peak.max(rss_kib()?);
    }
    let elapsed = timer.elapsed();
    let end = rss_kib()?;
    let growth = (end as f64 - warm as f64) / warm as f64 * 100.0;
    let stats = runtime.pool_stats();
    println!(
        "growth/{lang}: RSS start {:.1} MiB, after {WARM_UP_RUNS} runs {:.1} MiB, after {RUNS} more {:.1} MiB \
         (peak {:.1} MiB): {growth:+.2}% ({:.2} s, {} instances made)",
        mib(start),
        mib(warm),
        mib(end),
        mib(peak),
        elapsed.as_secs_f64(),
        stats.created
    );
    Ok(())
}
