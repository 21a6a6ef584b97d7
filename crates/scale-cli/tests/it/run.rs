//! `scale run`

use crate::{arg, fixture, scale, scale_with_stdin, temp_dir, workspace_root};

#[test]
fn run_prints_status_line_headers_and_body() {
    let out = scale(["run", arg(&fixture("rust", "http-handler")), "--body", "ignored by this fixture"]);
    // The fixture appends to the response body, which starts out empty.
    assert_eq!(out.expect_success().stdout_str(), "HTTP/1.1 200 OK\n\n-modified\n");
}

#[test]
fn run_sends_the_body_to_the_function() {
    let out = scale(["run", arg(&fixture("rust", "large-body")), "--body", "Hello, World!", "--body-only"]);
    assert_eq!(out.expect_success().stdout, b"Hello, World!");
}

#[test]
fn run_reads_the_body_from_a_file_or_standard_input() {
    let dir = temp_dir("run_reads_the_body_from_a_file_or_standard_input");
    let body: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let path = dir.join("body.bin");
    std::fs::write(&path, &body).unwrap();
    let echo = fixture("go", "large-body");
    let out = scale(["run", arg(&echo), "--body-file", arg(&path), "--body-only"]).expect_success();
    assert!(out.stdout == body, "the body came back changed");
    let out = scale_with_stdin(["run", arg(&echo), "--body-file", "-", "--body-only"], &body).expect_success();
    assert!(out.stdout == body, "the body from standard input came back changed");
}

#[test]
fn run_sends_request_headers_and_prints_response_headers() {
    for language in ["rust", "go"] {
        let out = scale(["run", arg(&fixture(language, "headers")), "-H", "X-Test-Header: hello there"]);
        assert_eq!(
            out.expect_success().stdout_str(),
            "HTTP/1.1 200 OK\nx-multi: a\nx-multi: b\nx-response: hello there\n\n",
            "{language}"
        );
    }
}

#[test]
fn run_prints_the_status_the_function_set() {
    let out = scale(["run", arg(&fixture("go", "status"))]).expect_success();
    assert_eq!(out.stdout_str(), "HTTP/1.1 201 Created\n\n");
}

#[test]
fn run_chains_the_files_in_order() {
    // rust/modifynext sets the body and calls next; go/http-next appends and calls next.
    let out = scale(["run", arg(&fixture("rust", "modifynext")), arg(&fixture("go", "http-next")), "--body-only"]);
    assert_eq!(out.expect_success().stdout_str(), "modified-modified");
}

#[test]
fn run_fails_with_the_guest_error() {
    let out = scale(["run", arg(&fixture("go", "error"))]).expect_failure("guest error");
    assert!(out.stderr.contains("\"error\""), "the function is not named:\n{}", out.stderr);
    assert!(out.stdout.is_empty(), "a failed run printed a response");
}

#[test]
fn run_reports_a_panic() {
    scale(["run", arg(&fixture("rust", "panic"))]).expect_failure("panicked: guest panic");
}

#[test]
fn run_stops_a_loop_with_a_cpu_budget() {
    scale(["run", arg(&fixture("rust", "loop")), "--cpu-budget", "1000000"]).expect_failure("CPU budget");
}

#[test]
fn run_refuses_a_file_that_is_not_a_scale_file() {
    let manifest = workspace_root().join("Cargo.toml");
    let out = scale(["run", arg(&manifest)]).expect_failure("not a .scale file");
    assert!(out.stderr.contains("Cargo.toml"), "the file is not named:\n{}", out.stderr);
}

#[test]
fn run_refuses_a_malformed_header() {
    let out = scale(["run", arg(&fixture("rust", "passthrough")), "-H", "no colon here"]);
    assert!(!out.success);
    assert!(out.stderr.contains("no ':'"), "{}", out.stderr);
}

#[test]
fn run_needs_a_file() {
    let out = scale(["run"]);
    assert!(!out.success);
    assert!(out.stderr.contains("FILE.scale"), "{}", out.stderr);
}

/// The `.module` files in `dir`.
fn cached_modules(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter(|entry| entry.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "module")))
            .count()
    })
}

#[test]
fn run_caches_compiled_modules_by_default() {
    let dir = temp_dir("run_caches_compiled_modules_by_default");
    let default = dir.join("default");
    let status = fixture("go", "status");
    let run = |extra: &[&str]| {
        let mut command = crate::scale_command();
        command.env(scale_runtime::CACHE_DIR_VAR, &default).arg("run").arg(&status).args(extra);
        let out = command.output().expect("scale runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "HTTP/1.1 201 Created\n\n");
    };
    run(&["--no-cache"]);
    assert_eq!(cached_modules(&default), 0, "--no-cache wrote a module");
    run(&[]);
    assert_eq!(cached_modules(&default), 1, "no module in the default cache");
    // The second run loads it (the same single entry, still valid).
    run(&[]);
    assert_eq!(cached_modules(&default), 1);
    let chosen = dir.join("chosen");
    run(&["--cache-dir", arg(&chosen)]);
    assert_eq!(cached_modules(&chosen), 1, "nothing in --cache-dir");
    let out = scale(["run", arg(&status), "--no-cache", "--cache-dir", arg(&chosen)]);
    assert!(!out.success && out.stderr.contains("cannot be used with"), "{}", out.stderr);
}

#[test]
fn run_serves_when_the_default_cache_cannot_be_made() {
    let dir = temp_dir("run_serves_when_the_default_cache_cannot_be_made");
    let file = dir.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let out = crate::scale_command()
        .env(scale_runtime::CACHE_DIR_VAR, file.join("cache"))
        .args(["run", "--body-only", arg(&fixture("rust", "large-body")), "--body", "still here"])
        .output()
        .expect("scale runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(out.stdout, b"still here");
    assert!(stderr.contains("cannot make the module cache directory; not caching"), "no warning: {stderr}");
}

#[test]
fn run_ends_its_output_with_a_newline_and_keeps_body_only_exact() {
    let out = scale(["run", arg(&fixture("rust", "large-body")), "--body", "no newline"]).expect_success();
    assert_eq!(out.stdout_str(), "HTTP/1.1 200 OK\n\nno newline\n");
    let out = scale(["run", arg(&fixture("rust", "large-body")), "--body", "one newline\n"]).expect_success();
    assert_eq!(out.stdout_str(), "HTTP/1.1 200 OK\n\none newline\n");
    let out = scale(["run", arg(&fixture("rust", "large-body")), "--body", "no newline", "--body-only"]);
    assert_eq!(out.expect_success().stdout, b"no newline", "not a terminal: the exact bytes");
}
