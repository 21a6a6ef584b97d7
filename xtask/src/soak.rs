//! `cargo xtask soak [--runs N] [--stress-runs N]`: the full-scale
//! reliability runs of `scale-runtime`'s tests (docs/reliability.md), in
//! release mode: the fault-injection soak (10,000 runs by default, with its
//! resident-set bound enforced) and the concurrency tests (8 threads ×
//! 100,000 runs by default). CI runs the same tests with reduced counts.

use std::path::Path;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

const DEFAULT_RUNS: u64 = 10_000;
const DEFAULT_STRESS_RUNS: u64 = 100_000;

pub fn soak(sh: &Shell, root: &Path, mut args: impl Iterator<Item = String>) -> Result<()> {
    let mut runs = DEFAULT_RUNS;
    let mut stress_runs = DEFAULT_STRESS_RUNS;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64> {
            let text = args.next().with_context(|| format!("{name} needs a number"))?;
            text.parse().with_context(|| format!("{name} {text:?} is not a number"))
        };
        match arg.as_str() {
            "--runs" => runs = value("--runs")?,
            "--stress-runs" => stress_runs = value("--stress-runs")?,
            other => bail!("unknown argument {other:?}: cargo xtask soak [--runs N] [--stress-runs N]"),
        }
    }
    super::fixtures(sh, root)?;
    let cargo = super::cargo();
    super::step(&format!("fault-injection soak: {runs} runs (release)"));
    cmd!(sh, "{cargo} test --release -p scale-runtime --test it reliability::soak:: -- --nocapture --test-threads 1")
        .env("SCALE_SOAK_RUNS", runs.to_string())
        .run()?;
    super::step(&format!("concurrency: 8 threads × {stress_runs} runs (release)"));
    cmd!(
        sh,
        "{cargo} test --release -p scale-runtime --test it reliability::concurrency:: -- --nocapture --test-threads 1"
    )
    .env("SCALE_STRESS_RUNS", stress_runs.to_string())
    .run()?;
    Ok(())
}
