//! `scale fn build`

use std::path::Path;

use scale_func::{Language, ScaleFunc};

use crate::{arg, scale, scale_in, temp_dir, workspace_root};

#[test]
fn build_rust_passthrough_then_run() {
    let dir = temp_dir("build_rust_passthrough_then_run");
    let source = workspace_root().join("testdata/rust/passthrough");
    // Kept between runs (temp_dir would empty it), so only the first run compiles the guest SDK.
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scale-cli-rust-target");
    let output = dir.join("passthrough.scale");
    let args = ["fn", "build", arg(&source), "--target-dir", arg(&target_dir), "-o", arg(&output)];
    let out = scale(args).expect_success();
    assert!(out.stderr.contains("building Rust function in"), "{}", out.stderr);
    assert!(out.stderr.contains("for wasm32-unknown-unknown"), "{}", out.stderr);
    // cargo's own progress is streamed through.
    assert!(out.stderr.contains("Finished `release` profile"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("wrote {} (", output.display())), "{}", out.stderr);

    let func = ScaleFunc::decode(&std::fs::read(&output).unwrap()).unwrap();
    // The default name is the package's.
    assert_eq!((func.name(), func.tag(), func.language()), ("fixture-passthrough", "latest", Language::Rust));
    let out = scale(["run", arg(&output), "--body", "hello"]).expect_success();
    assert_eq!(out.stdout_str(), "HTTP/1.1 200 OK\n\n");
}

#[test]
fn build_go_passthrough_then_run() {
    let dir = temp_dir("build_go_passthrough_then_run");
    let source = workspace_root().join("testdata/go/passthrough");
    let out = scale_in(&dir, ["fn", "build", arg(&source), "--tag", "v2"]).expect_success();
    assert!(out.stderr.contains("building Go function in"), "{}", out.stderr);
    assert!(out.stderr.contains(" with go1."), "{}", out.stderr);

    // The default name is the folder's, and the file lands in the current directory.
    let output = dir.join("passthrough.scale");
    let func = ScaleFunc::decode(&std::fs::read(&output).unwrap()).unwrap();
    assert_eq!((func.name(), func.tag(), func.language()), ("passthrough", "v2", Language::Go));
    let out = scale(["run", arg(&output), "-H", "x-a: b"]).expect_success();
    assert_eq!(out.stdout_str(), "HTTP/1.1 200 OK\n\n");
}

#[test]
fn build_shows_the_compilers_errors() {
    let dir = temp_dir("build_shows_the_compilers_errors");
    std::fs::write(dir.join("go.mod"), "module example.com/broken\n\ngo 1.24\n").unwrap();
    std::fs::write(dir.join("scale.go"), "package scale\n\nfunc Scale() { nope() }\n").unwrap();
    let out = scale_in(&dir, ["fn", "build", ".", "--name", "broken"]).expect_failure("building . failed");
    assert!(out.stderr.contains("undefined: nope"), "{}", out.stderr);
    assert!(!dir.join("broken.scale").exists());
}

#[test]
fn build_refuses_a_folder_without_a_manifest() {
    let dir = temp_dir("build_refuses_a_folder_without_a_manifest");
    scale(["fn", "build", arg(&dir)]).expect_failure("neither a go.mod nor a Cargo.toml");
    scale(["fn", "build", arg(&dir.join("missing"))]).expect_failure("is not a directory");
}

#[test]
fn build_refuses_a_bad_name_before_building() {
    let source = workspace_root().join("testdata/go/passthrough");
    let out = scale(["fn", "build", arg(&source), "--name", "my_function"]).expect_failure("invalid function name");
    assert!(!out.stderr.contains("building Go function"), "it built first:\n{}", out.stderr);
}

#[test]
fn build_refuses_a_go_folder_name_that_is_no_function_name() {
    let dir = temp_dir("build_refuses_a_go_folder_name_that_is_no_function_name");
    std::fs::write(dir.join("go.mod"), "module example.com/hello\n\ngo 1.24\n").unwrap();
    let out = scale(["fn", "build", arg(&dir)]).expect_failure("invalid function name");
    assert!(out.stderr.contains("hint: a Go function is named after its folder"), "{}", out.stderr);
}

#[test]
fn build_refuses_wasi_for_go() {
    let source = workspace_root().join("testdata/go/passthrough");
    scale(["fn", "build", arg(&source), "--wasi"]).expect_failure("apply to Rust functions only");
}
