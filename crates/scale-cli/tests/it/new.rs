//! `scale fn new`: the new function's own tests pass, it builds, and it runs.

use std::path::Path;
use std::process::Command;

use crate::{arg, scale, scale_in, temp_dir, workspace_root};

/// Runs `program` in `dir` and panics with its output unless it succeeds.
#[track_caller]
fn succeed(dir: &Path, program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut command = Command::new(program);
    command.current_dir(dir).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap_or_else(|err| panic!("{program} starts: {err}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} failed in {}:\n{text}", dir.display());
    text
}

#[test]
fn a_new_rust_function_tests_builds_and_runs() {
    let dir = temp_dir("a_new_rust_function_tests_builds_and_runs");
    let function = dir.join("greeter");
    let out = scale(["fn", "new", "greeter", "--language", "rust", "--dir", arg(&function)]).expect_success();
    assert!(out.stderr.contains("cargo test"), "{}", out.stderr);
    for file in ["Cargo.toml", "src/lib.rs", "README.md", ".gitignore"] {
        assert!(function.join(file).is_file(), "{file} is missing");
    }
    // Kept between runs, so only the first run compiles the SDK.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scale-cli-rust-target");
    let tests = succeed(&function, "cargo", &["test"], &[("CARGO_TARGET_DIR", &target)]);
    assert!(tests.contains("test result: ok. 3 passed"), "{tests}");
    scale_in(&function, ["fn", "build", ".", "--target-dir", arg(&target)]).expect_success();
    let out = scale(["run", arg(&function.join("greeter.scale")), "--body", "Ada"]).expect_success();
    assert_eq!(out.stdout_str(), "HTTP/1.1 200 OK\ncontent-type: text/plain; charset=utf-8\n\nHello, Ada!\n");
}

#[test]
fn a_new_go_function_tests_builds_and_runs() {
    let dir = temp_dir("a_new_go_function_tests_builds_and_runs");
    let out = scale_in(&dir, ["fn", "new", "go-greeter", "-l", "go"]).expect_success();
    assert!(out.stderr.contains("go test ./..."), "{}", out.stderr);
    let function = dir.join("go-greeter");
    for file in ["go.mod", "scale.go", "scale_test.go", "README.md", ".gitignore"] {
        assert!(function.join(file).is_file(), "{file} is missing");
    }
    succeed(&function, "go", &["vet", "./..."], &[]);
    let tests = succeed(&function, "go", &["test", "-v", "./..."], &[]);
    assert_eq!(tests.matches("--- PASS").count(), 3, "{tests}");
    scale_in(&function, ["fn", "build", "--name", "go-greeter", "."]).expect_success();
    let out = scale(["run", arg(&function.join("go-greeter.scale")), "--body", "Grace"]).expect_success();
    assert_eq!(out.stdout_str(), "HTTP/1.1 200 OK\ncontent-type: text/plain; charset=utf-8\n\nHello, Grace!\n");
}

#[test]
fn new_refuses_bad_names_and_occupied_folders() {
    let dir = temp_dir("new_refuses_bad_names_and_occupied_folders");
    scale_in(&dir, ["fn", "new", "has space", "-l", "go"]).expect_failure("refusing to make the function");
    scale_in(&dir, ["fn", "new", "v1.2", "-l", "rust"]).expect_failure("no `.`");
    std::fs::create_dir_all(dir.join("taken")).unwrap();
    std::fs::write(dir.join("taken/main.go"), "package main\n").unwrap();
    scale_in(&dir, ["fn", "new", "taken", "-l", "go"]).expect_failure("already exists and is not empty");
    assert_eq!(std::fs::read_to_string(dir.join("taken/main.go")).unwrap(), "package main\n", "a file was touched");
    let out = scale_in(&dir, ["fn", "new", "x", "-l", "go", "--checkout", arg(&dir)]);
    out.expect_failure("is not a Scale checkout");
    // An explicit checkout works like the default one.
    scale_in(&dir, ["fn", "new", "y", "-l", "rust", "--checkout", arg(&workspace_root())]).expect_success();
    let manifest = std::fs::read_to_string(dir.join("y/Cargo.toml")).unwrap();
    assert!(manifest.contains("/crates/scale-guest\" }"), "{manifest}");
}
