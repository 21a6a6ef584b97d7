//! `scale fn inspect`

use crate::{arg, fixture, scale, temp_dir, workspace_root};

#[test]
fn inspect_shows_metadata_exports_and_imports_of_a_rust_fixture() {
    let path = fixture("rust", "http-handler");
    let func = scale_func::ScaleFunc::decode(&std::fs::read(&path).unwrap()).unwrap();
    let out = scale(["fn", "inspect", arg(&path)]).expect_success().stdout_str();
    let field = |label: &str| -> String {
        let line = out.lines().find(|line| line.starts_with(label)).unwrap_or_else(|| panic!("no {label}:\n{out}"));
        line[label.len()..].trim().to_string()
    };
    assert_eq!(field("name:"), "http-handler");
    assert_eq!(field("tag:"), "test");
    assert_eq!(field("signature:"), "http@v0.1.0");
    assert_eq!(field("language:"), "rust");
    assert_eq!(field("checksum:"), format!("sha256 {}", func.checksum_hex()));
    assert!(field("wasm size:").ends_with(&format!("({} bytes)", func.function().len())), "{out}");
    assert_eq!(field("valid:"), "yes");
    for line in [
        "  run                func (i32) -> i64",
        "  resize             func (i32) -> i32",
        "  scale_abi_version  func () -> i32",
        "  env.panic  func (i32, i32) -> ()",
    ] {
        assert!(out.lines().any(|l| l == line), "no line {line:?} in:\n{out}");
    }
    assert!(out.contains("\nimports (1):\n"), "a wasm32-unknown-unknown guest imports only env.panic:\n{out}");
}

#[test]
fn inspect_shows_the_wasi_imports_of_a_go_fixture() {
    let out = scale(["fn", "inspect", arg(&fixture("go", "next"))]).expect_success();
    let out = out.stdout_str();
    assert!(out.contains("language:  go\n"), "{out}");
    for needle in ["_initialize", "env.next ", "env.next_result", "wasi_snapshot_preview1.fd_write", "go:buildid"] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
}

#[test]
fn inspect_refuses_a_file_that_is_not_a_scale_file() {
    let manifest = workspace_root().join("crates/scale-cli/Cargo.toml");
    let out = scale(["fn", "inspect", arg(&manifest)]).expect_failure("not a .scale file");
    assert!(out.stderr.contains("Cargo.toml"), "the file is not named:\n{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn inspect_explains_a_raw_wasm_module() {
    let dir = temp_dir("inspect_explains_a_raw_wasm_module");
    let wasm = dir.join("fn.wasm");
    std::fs::write(&wasm, scale_func::WASM_HEADER).unwrap();
    scale(["fn", "inspect", arg(&wasm)]).expect_failure("raw WebAssembly module");
}

#[test]
fn inspect_reports_a_corrupted_file() {
    let dir = temp_dir("inspect_reports_a_corrupted_file");
    let mut bytes = std::fs::read(fixture("rust", "status")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let path = dir.join("status.scale");
    std::fs::write(&path, bytes).unwrap();
    scale(["fn", "inspect", arg(&path)]).expect_failure("checksum mismatch");
}

#[test]
fn inspect_names_a_missing_file() {
    scale(["fn", "inspect", "no-such-file.scale"]).expect_failure("cannot read no-such-file.scale");
}
