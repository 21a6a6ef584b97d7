//! Project automation. `cargo xtask fixtures` builds the test fixtures;
//! `cargo xtask test` checks formatting and lints, builds the fixtures and
//! runs every test (Rust and Go).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use scale_build::{GoBuild, RustTarget};
use scale_func::{Language, ScaleFunc, SignatureId};
use sha2::{Digest, Sha256};
use xshell::{Shell, cmd};

mod chart;
mod fuzz;
mod image;
mod loadtest;
mod manifests;
mod mem;
mod replicas;
mod soak;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  fixtures          build every fixture under testdata/ into target/fixtures/{go,rust}/<name>.scale
  test              fmt check, clippy (in the test build), fixtures, then every Rust and Go test
  default-function  rebuild crates/scale-cli/assets/hello.scale (the function `scale serve` runs by default)
  mem               memory figures: RSS per idle pooled instance, RSS over 1,000,000 runs (release build)
  chart             draw docs/benchmarks/regex.svg from the results of `cargo bench -p scale-runtime --bench workloads`
  soak              full-scale reliability runs in release: fault-injection soak and 8-thread stress
                    (cargo xtask soak [--runs 10000] [--stress-runs 100000])
  fuzz              run each cargo-fuzz target for a bounded time, nightly + cargo-fuzz (cargo xtask fuzz [--seconds 30])
  loadtest          requests/s and latency of `scale serve` against a bare hyper server, on loopback
                    (cargo xtask loadtest [--duration 10s] [--warmup 2s] [--connections 32] [--rounds 1])
  image             a FROM-scratch container image of `scale serve`, built with podman
                    (cargo xtask image [--binary PATH] [--tag localhost/scale:latest] [--check])
  manifests         validate deploy/kubernetes/*.yaml against the Kubernetes schemas, offline (kubernetes-validate)
  replicas          three `scale serve` replicas behind HAProxy under load, one killed: failed requests
                    (cargo xtask replicas [--duration 20s] [--kill-after 8s] [--connections 16] [--binary PATH] [--no-retries])";

fn main() -> Result<()> {
    let task = std::env::args().nth(1);
    let sh = Shell::new()?;
    let root = workspace_root();
    sh.change_dir(&root);
    match task.as_deref() {
        Some("fixtures") => fixtures(&sh, &root),
        Some("test") => test(&sh, &root),
        Some("default-function") => default_function(&root),
        Some("mem") => mem::mem(&sh),
        Some("chart") => chart::chart(&root),
        Some("soak") => soak::soak(&sh, &root, std::env::args().skip(2)),
        Some("fuzz") => fuzz::fuzz(&sh, &root, &std::env::args().skip(2).collect::<Vec<_>>()),
        Some("loadtest") => loadtest::run(&sh, &root, std::env::args().skip(2)),
        Some("image") => image::run(&sh, &root, std::env::args().skip(2)),
        Some("manifests") => manifests::check(&sh, &root).map(drop),
        Some("replicas") => replicas::run(&root, std::env::args().skip(2)),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace root").to_path_buf()
}

/// Cargo's target directory.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Where built fixtures go; tests read them from here.
fn fixtures_dir(root: &Path) -> PathBuf {
    root.join("target").join("fixtures")
}

fn test(sh: &Shell, root: &Path) -> Result<()> {
    let cargo = cargo();
    step("cargo fmt --check");
    cmd!(sh, "{cargo} fmt --all -- --check").run().context("formatting differs: run `cargo fmt --all`")?;
    // Clippy runs inside the test build instead of as a `cargo clippy` of its
    // own, which would compile every dependency a second time (in check
    // mode): `clippy-driver` wraps rustc for the workspace's crates only, and
    // `-D warnings` reaches only them too (cargo caps lints of dependencies).
    // The same settings build and run the tests below, so nothing is rebuilt.
    let sysroot = cmd!(sh, "rustc --print sysroot").read()?;
    let driver = Path::new(sysroot.trim()).join("bin").join(format!("clippy-driver{}", std::env::consts::EXE_SUFFIX));
    if !driver.exists() {
        bail!("{} is missing: install clippy (`rustup component add clippy`)", driver.display());
    }
    let lint_env = [("RUSTC_WORKSPACE_WRAPPER", driver.into_os_string()), ("RUSTFLAGS", "-D warnings".into())];
    step("clippy -D warnings, while building every target of the workspace for tests");
    cmd!(sh, "{cargo} test --workspace --all-targets --all-features --no-run").envs(lint_env.clone()).run()?;
    tidy(sh)?;
    step("no_std guest crates build for wasm32");
    for target in ["wasm32-unknown-unknown", "wasm32-wasip1"] {
        cmd!(sh, "{cargo} check --quiet -p scale-signature-http --no-default-features --target {target}").run()?;
        cmd!(sh, "{cargo} check --quiet -p scale-guest-abi --target {target}").run()?;
    }
    fixtures(sh, root)?;
    step("cargo test --workspace");
    cmd!(sh, "{cargo} test --workspace --all-features").envs(lint_env).run()?;
    step("go vet and go test (Go guest package)");
    let _dir = sh.push_dir(root.join("crates/scale-signature-http/go"));
    cmd!(sh, "go vet ./...").run()?;
    cmd!(sh, "go test ./...").run()?;
    drop(_dir);
    // The test build above made the debug `scale`: the deployment checks use it.
    let scale = target_dir(root).join("debug").join(format!("scale{}", std::env::consts::EXE_SUFFIX));
    step("deploy: Kubernetes manifests against the API schemas (offline)");
    let deployment = manifests::check(sh, root)?;
    step("deploy: the container image (podman): two routes, then the Kubernetes configuration; SIGTERM");
    image::check(sh, root, &scale, Some(&deployment))?;
    step("deploy: three replicas behind HAProxy, one killed under load");
    replicas::test(root, &replicas::Options::short(scale))?;
    Ok(())
}

/// Crates that must never depend on these, whatever their features: the
/// layering rules of ARCHITECTURE.md.
const LAYERS: &[(&str, &[&str])] = &[
    ("scale-signature-http", &["wasmer", "tokio", "hyper"]),
    ("scale-guest-abi", &["wasmer", "tokio", "hyper", "scale-signature-http"]),
    ("scale-guest", &["wasmer", "tokio", "hyper"]),
    ("scale-func", &["wasmer", "tokio", "hyper"]),
    ("scale-runtime", &["tokio", "hyper"]),
];

fn tidy(sh: &Shell) -> Result<()> {
    step("tidy: crate layering");
    let cargo = cargo();
    for (krate, forbidden) in LAYERS {
        let tree = cmd!(sh, "{cargo} tree --quiet -p {krate} --all-features -e normal,build --prefix none").read()?;
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if forbidden.contains(&name) {
                bail!("{krate} depends on {name}, which ARCHITECTURE.md's layering forbids");
            }
        }
    }
    Ok(())
}

fn step(what: &str) {
    eprintln!("\n==> {what}");
}

fn fixtures(sh: &Shell, root: &Path) -> Result<()> {
    let out = fixtures_dir(root);
    rust_fixtures(sh, root, &out.join("rust"))?;
    go_fixtures(root, &out.join("go"))?;
    Ok(())
}

/// Rebuilds the built-in function of `scale serve`. Its `.scale` is
/// committed, so that the CLI builds without a wasm toolchain.
fn default_function(root: &Path) -> Result<()> {
    step("default function");
    let func = scale_build::RustBuild::new(root.join("crates/scale-cli/hello"))
        .name("hello")
        .target_dir(root.join("target/fixtures-build/hello"))
        .build()?;
    let out = root.join("crates/scale-cli/assets/hello.scale");
    std::fs::write(&out, func.encode())?;
    eprintln!("wrote {} ({} bytes)", out.display(), func.function().len());
    Ok(())
}

/// Fixture folders under `dir`, sorted.
fn fixture_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() && !entry.file_name().to_string_lossy().starts_with('.') {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Fixtures built for `wasm32-wasip1` instead of `wasm32-unknown-unknown`.
const WASIP1_RUST_FIXTURES: &[&str] = &["file", "escape"];

/// Rust fixtures of a signature other than HTTP: fixture, then the
/// signature's name and version, as its host side declares them (for
/// `tally`, crates/scale-runtime/examples/custom_signature/signature.rs).
const RUST_FIXTURE_SIGNATURES: &[(&str, &str, &str)] = &[("tally", "tally", "v1")];

fn rust_fixtures(sh: &Shell, root: &Path, out: &Path) -> Result<()> {
    step("Rust fixtures");
    let cargo = cargo();
    let manifest = root.join("testdata/rust/Cargo.toml");
    let target_dir = root.join("target/fixtures-build");
    let mut excludes = Vec::new();
    for name in WASIP1_RUST_FIXTURES {
        excludes.push("--exclude".to_string());
        excludes.push(format!("fixture-{name}"));
    }
    cmd!(sh, "{cargo} build --release --quiet --manifest-path {manifest} --target-dir {target_dir} --target wasm32-unknown-unknown --workspace {excludes...}")
        .run()
        .context("building the Rust fixtures (is the wasm32-unknown-unknown target installed? `rustup target add wasm32-unknown-unknown`)")?;
    for name in WASIP1_RUST_FIXTURES {
        let package = format!("fixture-{name}");
        cmd!(sh, "{cargo} build --release --quiet --manifest-path {manifest} --target-dir {target_dir} --target wasm32-wasip1 -p {package}")
            .run()
            .context("building the wasip1 Rust fixtures (is the wasm32-wasip1 target installed? `rustup target add wasm32-wasip1`)")?;
    }
    std::fs::create_dir_all(out)?;
    for name in fixture_names(&root.join("testdata/rust"))? {
        let target =
            if WASIP1_RUST_FIXTURES.contains(&name.as_str()) { RustTarget::Wasip1 } else { RustTarget::Unknown };
        let wasm_path =
            target_dir.join(target.triple()).join("release").join(format!("fixture_{}.wasm", name.replace('-', "_")));
        let wasm = std::fs::read(&wasm_path).with_context(|| format!("reading {}", wasm_path.display()))?;
        let func = match RUST_FIXTURE_SIGNATURES.iter().find(|(fixture, ..)| *fixture == name) {
            Some(&(_, signature, version)) => {
                ScaleFunc::new(&name, "test", SignatureId::new(signature, version)?, Language::Rust, wasm)?
            }
            None => scale_build::pack(wasm, &name, "test", Language::Rust)?,
        };
        write_if_changed(&out.join(format!("{name}.scale")), &func.encode())?;
    }
    Ok(())
}

/// Fixtures recorded with another signature, which runtimes must refuse.
const BAD_SIGNATURE_FIXTURES: &[&str] = &["bad-signature"];

fn go_fixtures(root: &Path, out: &Path) -> Result<()> {
    step("Go fixtures");
    let version = scale_build::check_go(Path::new("go")).context("the Go fixtures need Go")?;
    std::fs::create_dir_all(out)?;
    let source_root = root.join("testdata/go");
    for name in fixture_names(&source_root)? {
        let dir = source_root.join(&name);
        let scale_path = out.join(format!("{name}.scale"));
        let stamp_path = out.join(format!("{name}.stamp"));
        let stamp = go_stamp(&dir, &version)?;
        if scale_path.exists() && std::fs::read_to_string(&stamp_path).is_ok_and(|old| old == stamp) {
            continue;
        }
        eprintln!("building Go fixture {name}");
        let mut build =
            GoBuild::new(&dir).name(&name).tag("test").work_dir(root.join("target/fixtures-build/go").join(&name));
        if BAD_SIGNATURE_FIXTURES.contains(&name.as_str()) {
            build = build.record_signature(SignatureId::new("not-http", "v9.9.9")?);
        }
        let func = build.build().with_context(|| format!("building Go fixture {name}"))?;
        std::fs::write(&scale_path, func.encode())?;
        std::fs::write(&stamp_path, stamp)?;
    }
    Ok(())
}

/// A hash of everything a Go fixture's build depends on: its files, the Go
/// package shipped with the signature crate, and the Go version.
fn go_stamp(dir: &Path, go_version: &str) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(go_version.as_bytes());
    for (name, text) in scale_signature_http::go_sources::FILES {
        hasher.update(name.as_bytes());
        hasher.update(text.as_bytes());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.sort();
    for file in files {
        if file.is_file() {
            hasher.update(file.file_name().unwrap_or_default().as_encoded_bytes());
            hasher.update(std::fs::read(&file)?);
        }
    }
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
