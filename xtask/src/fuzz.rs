//! `cargo xtask fuzz [--seconds N]`: runs every cargo-fuzz target of `fuzz/`
//! for a bounded time. Needs the nightly toolchain and cargo-fuzz.

use std::path::Path;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

/// The targets in `fuzz/fuzz_targets`, in the order they run.
const TARGETS: [&str; 5] = ["scale_decode", "signature_decode", "guest_output", "module_bytes", "arbitrary_module"];

const DEFAULT_SECONDS: u64 = 30;

const SANITIZER: [&str; 2] = ["--sanitizer", "none"];

/// Longest time one input may take before libFuzzer reports it as a hang.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

pub fn fuzz(sh: &Shell, root: &Path, args: &[String]) -> Result<()> {
    let seconds = match args {
        [] => DEFAULT_SECONDS,
        [flag, n] if flag == "--seconds" => n.parse().with_context(|| format!("--seconds {n}: not a number"))?,
        _ => bail!("usage: cargo xtask fuzz [--seconds N]"),
    };
    // `cargo` through rustup, whatever toolchain runs xtask: `+nightly` needs the proxy.
    if cmd!(sh, "rustup run nightly rustc --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        bail!("cargo xtask fuzz needs the nightly toolchain: rustup toolchain install nightly");
    }
    if cmd!(sh, "cargo +nightly fuzz --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        bail!("cargo xtask fuzz needs cargo-fuzz: cargo install cargo-fuzz");
    }
    let _dir = sh.push_dir(root.join("fuzz"));
    // No sanitizer: wasmer runs guests on stacks of its own and unwinds traps
    // across them, which AddressSanitizer reports as stack-buffer-overflow
    // in its `__asan_handle_no_return` (a false positive). libFuzzer still
    // catches panics, aborts, crashes and hangs.
    crate::step("cargo fuzz build");
    cmd!(sh, "cargo +nightly fuzz build {SANITIZER...}").run()?;
    let timeout = format!("-timeout={INPUT_TIMEOUT_SECONDS}");
    let total = format!("-max_total_time={seconds}");
    for target in TARGETS {
        crate::step(&format!("cargo fuzz run {target} for {seconds} s"));
        // New inputs go to a working corpus under target/; the committed
        // seeds in corpus/<target> are only read.
        let corpus = root.join("fuzz/target/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let seeds = root.join("fuzz/corpus").join(target);
        let run = cmd!(sh, "cargo +nightly fuzz run {SANITIZER...} {target} {corpus} {seeds} -- {total} {timeout}");
        run.run().with_context(|| {
            format!(
                "fuzz target {target} found a failure: the input is in fuzz/artifacts/{target}/; replay it with \
                 `cargo +nightly fuzz run -s none {target} <file>`, then commit it to fuzz/regressions/{target}/ \
                 with the fix"
            )
        })?;
    }
    Ok(())
}
