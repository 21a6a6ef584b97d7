//! `scale serve --config`: routes, the admin listener, reloads and shutdown,
//! on a real server process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{arg, fixture, temp_dir};

/// A running `scale serve --config`, killed when dropped.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) public: SocketAddr,
    pub(crate) admin: SocketAddr,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// What the server wrote on standard error so far.
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let status = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

/// The address on a "… on http://ADDR" line.
fn address(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("http://")? + "http://".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Starts `scale serve --config CONFIG` on free ports, and waits for both listeners.
pub(crate) fn serve_config(config: &Path, extra: &[&str]) -> Served {
    serve_config_with(config, extra, Stdio::null())
}

/// [`serve_config`], with the server's standard output going to `stdout`.
fn serve_config_with(config: &Path, extra: &[&str], stdout: Stdio) -> Served {
    let mut child = crate::scale_command()
        .args(["serve", "--config", arg(config), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (mut public, mut admin) = (None, None);
    while public.is_none() || admin.is_none() {
        let line = lines.next().expect("scale serve exited before listening").unwrap();
        stderr.lock().unwrap().push_str(&format!("{line}\n"));
        if line.starts_with("serving ") {
            public = address(&line);
        } else if line.starts_with("admin ") {
            admin = address(&line);
        }
    }
    let kept = std::sync::Arc::clone(&stderr);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    Served { child, public: public.unwrap(), admin: admin.unwrap(), stderr }
}

/// One request; the status, the headers (lower-case names) and the body.
pub(crate) fn exchange(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// Writes `scale.toml` in `dir`: one route on `path` running `file`, with
/// the limit keys `keys` (TOML lines); returns its path.
fn one_route(dir: &Path, path: &str, file: &str, keys: &str) -> PathBuf {
    let config = dir.join("scale.toml");
    std::fs::write(&config, format!("[[route]]\npath = \"{path}\"\nfunctions = [\"{file}\"]\n{keys}")).unwrap();
    config
}

/// Copies a fixture next to the configuration, under `name`.
fn place(dir: &Path, language: &str, fixture_name: &str, name: &str) {
    std::fs::copy(fixture(language, fixture_name), dir.join(name)).unwrap();
}

/// Replaces `name` with a fixture the way a deployment does: written beside
/// it, then renamed over it.
fn swap_in(dir: &Path, language: &str, fixture_name: &str, name: &str) {
    replace_with(dir, name, &std::fs::read(fixture(language, fixture_name)).unwrap());
}

/// Replaces `name` with `bytes`, written beside it, then renamed over it.
fn replace_with(dir: &Path, name: &str, bytes: &[u8]) {
    let staging = dir.join(format!(".{name}.new"));
    std::fs::write(&staging, bytes).unwrap();
    std::fs::rename(&staging, dir.join(name)).unwrap();
}

/// Waits until `done` holds, looking every 20 ms; fails with `what` after `within`.
fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the series `series` (name and labels, as exposed) in the
/// admin listener's `/metrics`.
pub(crate) fn metric(admin: SocketAddr, series: &str) -> Option<f64> {
    let (status, head, text) = exchange(admin, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/openmetrics-text"), "{head}");
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

const TWO_ROUTES: &str = r#"
[defaults]
deadline = "5s"

[[route]]
path = "/hello"
methods = ["GET"]
functions = ["modify.scale"]

[[route]]
path = "/api/*"
functions = ["handler.scale"]
memory_limit = 32
"#;

#[test]
fn routes_answer_by_path_and_method() {
    let dir = temp_dir("routes_answer_by_path_and_method");
    place(&dir, "rust", "modify", "modify.scale");
    place(&dir, "go", "http-handler", "handler.scale");
    std::fs::write(dir.join("scale.toml"), TWO_ROUTES).unwrap();
    let served = serve_config(&dir.join("scale.toml"), &[]);
    let at = served.public;
    assert_eq!(exchange(at, "GET", "/hello").2, "modified");
    assert_eq!(exchange(at, "HEAD", "/hello").0, 200);
    for path in ["/api", "/api/", "/api/items/7?x=1"] {
        let (status, _, body) = exchange(at, "POST", path);
        assert_eq!((status, body.as_str()), (200, "-modified"), "{path}");
    }
    let (status, head, _) = exchange(at, "POST", "/hello");
    assert_eq!(status, 405);
    assert!(head.contains("\r\nallow: get, head"), "{head}");
    for path in ["/", "/hello/more", "/apiary", "/nothing"] {
        assert_eq!(exchange(at, "GET", path).0, 404, "{path}");
    }
    let admin = served.admin;
    assert_eq!(metric(admin, "scale_runs_total{route=\"/hello\"}"), Some(2.0));
    assert_eq!(metric(admin, "scale_runs_total{route=\"/api/*\"}"), Some(3.0));
    assert_eq!(metric(admin, "scale_run_duration_seconds_count{route=\"/api/*\"}"), Some(3.0));
    assert_eq!(metric(admin, "scale_pool_created_instances{route=\"/hello\",function=\"modify\"}"), Some(1.0));
    assert_eq!(metric(admin, "scale_in_flight_requests{route=\"/hello\"}"), Some(0.0));
    let (status, _, text) = exchange(admin, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(text.contains("scale_build_info{version=\""), "{text}");
    assert_eq!(exchange(admin, "GET", "/healthz").0, 200);
    assert_eq!(exchange(admin, "GET", "/readyz").0, 200);
    assert_eq!(exchange(admin, "GET", "/other").0, 404);
    let (status, head, _) = exchange(admin, "POST", "/healthz");
    assert_eq!(status, 405);
    assert!(head.contains("\r\nallow: get, head"), "{head}");
}

#[test]
fn errors_are_counted_by_function_and_kind() {
    let dir = temp_dir("errors_are_counted_by_function_and_kind");
    place(&dir, "rust", "loop", "loop.scale");
    place(&dir, "go", "error", "error.scale");
    std::fs::write(
        dir.join("scale.toml"),
        "[[route]]\npath = \"/loop\"\nfunctions = [\"loop.scale\"]\ncpu_budget = 1000000\n\n\
         [[route]]\npath = \"/error\"\nfunctions = [\"error.scale\"]\n",
    )
    .unwrap();
    let served = serve_config(&dir.join("scale.toml"), &[]);
    assert_eq!(exchange(served.public, "GET", "/loop").0, 503);
    assert_eq!(exchange(served.public, "GET", "/error").0, 500);
    assert_eq!(exchange(served.public, "GET", "/error").0, 500);
    let admin = served.admin;
    assert_eq!(metric(admin, "scale_run_errors_total{route=\"/loop\",function=\"loop\",kind=\"budget\"}"), Some(1.0));
    assert_eq!(
        metric(admin, "scale_run_errors_total{route=\"/error\",function=\"error\",kind=\"guest_error\"}"),
        Some(2.0)
    );
}

#[test]
fn a_mistake_in_the_file_names_the_line_and_the_route_and_nothing_starts() {
    let dir = temp_dir("a_mistake_in_the_file_names_the_line_and_the_route_and_nothing_starts");
    place(&dir, "rust", "modify", "modify.scale");
    let cases = [
        (
            "[[route]]\npath = \"/a\"\nfunctions = [\"modify.scale\"]\nspeed = 3\n",
            "scale.toml:4: route \"/a\": unknown field `speed`",
        ),
        ("[[route]]\npath = \"/a\"\nfunctions = [\"gone.scale\"]\n", "scale.toml:3: route \"/a\": "),
        (
            "[[route]]\npath = \"/a\"\nfunctions = [\"modify.scale\"]\n[[route]]\npath = \"/a\"\nfunctions = [\"modify.scale\"]\n",
            "scale.toml:5: route \"/a\": the same path as the route on line 1",
        ),
        (
            "[[route]]\npath = \"/u/*\"\nfunctions = [\"modify.scale\"]\n[[route]]\npath = \"/u/{id}\"\nfunctions = [\"modify.scale\"]\n",
            "scale.toml:4: route \"/u/{id}\": it conflicts with route \"/u/*\" on line 1",
        ),
        (
            "[[route]]\npath = \"/a\"\nfunctions = [\"not-wasm.scale\"]\n",
            "scale.toml:1: route \"/a\": loading its functions",
        ),
    ];
    std::fs::write(dir.join("not-wasm.scale"), b"this is not a .scale file").unwrap();
    for (text, needle) in cases {
        std::fs::write(dir.join("scale.toml"), text).unwrap();
        let out = crate::scale(["serve", "--config", arg(&dir.join("scale.toml")), "--listen", "127.0.0.1:0"]);
        let out = out.expect_failure(needle);
        assert!(!out.stderr.contains("serving "), "it started:\n{}", out.stderr);
    }
    let out = crate::scale(["serve", "--config", arg(&dir.join("scale.toml")), "--cpu-budget", "5"]);
    out.expect_failure("--cpu-budget: with --config, set limits in the file");
}

#[test]
fn sigterm_drains_lets_the_request_in_flight_finish_and_exits_zero() {
    let dir = temp_dir("sigterm_drains_lets_the_request_in_flight_finish_and_exits_zero");
    place(&dir, "rust", "large-body", "echo.scale");
    let config = one_route(&dir, "/*", "echo.scale", "");
    let mut served = serve_config(&config, &["--shutdown-grace", "20s"]);
    // A request in flight: its head is in, its body still to come.
    let mut slow = TcpStream::connect(served.public).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    served.terminate();
    // Not ready any more, while the request in flight goes on.
    eventually("/readyz stayed ready after SIGTERM", Duration::from_secs(10), || {
        exchange(served.admin, "GET", "/readyz").0 == 503
    });
    // The listener is closed: no new connections.
    eventually("still accepting connections after SIGTERM", Duration::from_secs(10), || {
        TcpStream::connect_timeout(&served.public, Duration::from_secs(1)).is_err()
    });
    slow.write_all(b"llo").unwrap();
    let mut reply = String::new();
    slow.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nhello"), "{reply}");
    let status = served.child.wait().unwrap();
    assert!(status.success(), "exit {status:?}\n{}", served.stderr());
    assert!(served.stderr().contains("stopped"), "{}", served.stderr());
}

#[test]
fn functions_swapped_under_load_answer_whole_versions_and_a_broken_one_is_refused() {
    let dir = temp_dir("functions_swapped_under_load_answer_whole_versions_and_a_broken_one_is_refused");
    place(&dir, "rust", "modify", "live.scale");
    let config = one_route(&dir, "/*", "live.scale", "");
    let served = serve_config(&config, &[]);
    let (public, admin) = (served.public, served.admin);
    // v1 answers 200 "modified"; v2 answers 201 with no body.
    let done = AtomicBool::new(false);
    let (sent, v1, v2) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) || sent.load(Ordering::Relaxed) < 2000 {
                    let (status, _, body) = exchange(public, "GET", "/");
                    match (status, body.as_str()) {
                        (200, "modified") => v1.fetch_add(1, Ordering::Relaxed),
                        (201, "") => v2.fetch_add(1, Ordering::Relaxed),
                        other => panic!("a response of neither version: {other:?}"),
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for swap in 0..50 {
            let (language, name) = if swap % 2 == 0 { ("go", "status") } else { ("rust", "modify") };
            swap_in(&dir, language, name, "live.scale");
            // Wait for this version to serve before the next swap.
            let want = if swap % 2 == 0 { 201 } else { 200 };
            eventually(&format!("swap {swap} never served"), Duration::from_secs(30), || {
                exchange(public, "GET", "/").0 == want
            });
        }
        done.store(true, Ordering::Relaxed);
    });
    assert!(sent.load(Ordering::Relaxed) >= 2000);
    assert!(v1.load(Ordering::Relaxed) > 0 && v2.load(Ordering::Relaxed) > 0);
    let reloads = metric(admin, "scale_reloads_total{route=\"/*\",outcome=\"ok\"}").unwrap();
    assert!(reloads >= 50.0, "{reloads} reloads");
    // The last swap put v1 back. A broken file is refused, and v1 keeps serving.
    let refused = metric(admin, "scale_reloads_total{route=\"/*\",outcome=\"refused\"}").unwrap();
    replace_with(&dir, "live.scale", b"SCALE but not really");
    eventually("the broken file was never refused", Duration::from_secs(30), || {
        metric(admin, "scale_reloads_total{route=\"/*\",outcome=\"refused\"}").unwrap() > refused
    });
    for _ in 0..20 {
        assert_eq!(exchange(public, "GET", "/").2, "modified");
    }
    assert!(!served.stderr().contains("panicked"), "{}", served.stderr());
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A real Prometheus (the Debian package, which `.ci/run` installs) scrapes
/// the admin listener, and its query API counts the runs that were made.
#[test]
fn prometheus_scrapes_the_run_counter() {
    let dir = temp_dir("prometheus_scrapes_the_run_counter");
    place(&dir, "rust", "modify", "modify.scale");
    let config = one_route(&dir, "/hello", "modify.scale", "");
    let served = serve_config(&config, &[]);
    const REQUESTS: usize = 37;
    for _ in 0..REQUESTS {
        assert_eq!(exchange(served.public, "GET", "/hello").0, 200);
    }
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: scale\n    static_configs:\n      - targets: [\"{}\"]\n",
            served.admin
        ),
    )
    .unwrap();
    let port = free_port();
    let prometheus = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus runs (the Debian package `prometheus`; .ci/run installs it)");
    let _prometheus = Killed(prometheus);
    let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let query = "/api/v1/query?query=scale_runs_total%7Broute%3D%22%2Fhello%22%7D";
    let deadline = Instant::now() + Duration::from_secs(90);
    let counted = loop {
        assert!(Instant::now() < deadline, "Prometheus never reported the runs");
        std::thread::sleep(Duration::from_millis(500));
        let Ok(mut stream) = TcpStream::connect(api) else { continue };
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET {query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        if stream.read_to_string(&mut reply).is_err() {
            continue;
        }
        let Some((_, body)) = reply.split_once("\r\n\r\n") else { continue };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else { continue };
        if let Some(value) = json["data"]["result"][0]["value"][1].as_str() {
            break value.parse::<f64>().unwrap();
        }
    };
    assert_eq!(counted, REQUESTS as f64);
}

#[test]
fn json_logs_have_one_access_line_per_request() {
    let dir = temp_dir("json_logs_have_one_access_line_per_request");
    place(&dir, "rust", "modify", "modify.scale");
    let config = one_route(&dir, "/hello", "modify.scale", "");
    let mut served = serve_config_with(&config, &["--log-format", "json"], Stdio::piped());
    let stdout = served.child.stdout.take().unwrap();
    let public = served.public;
    assert_eq!(exchange(public, "GET", "/hello?x=1").0, 200);
    assert_eq!(exchange(public, "GET", "/nowhere").0, 404);
    let mut lines = BufReader::new(stdout).lines();
    let mut access = Vec::new();
    while access.len() < 2 {
        let line = lines.next().expect("the access lines").unwrap();
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|err| panic!("{err}: {line}"));
        if json["target"] == "scale::access" {
            access.push(json);
        }
    }
    assert_eq!(access[0]["method"], "GET");
    assert_eq!(access[0]["path"], "/hello");
    assert_eq!(access[0]["route"], "/hello");
    assert_eq!(access[0]["status"], 200);
    assert!(access[0]["duration_us"].as_u64().is_some(), "{}", access[0]);
    assert_eq!((access[1]["route"].as_str(), access[1]["status"].as_u64()), (Some("-"), Some(404)));
}

/// SIGHUP reloads every route; a new version that does not load (a wrong
/// signature, a module that does not compile, a damaged file) is refused,
/// counted and logged with its reason, and the last good version keeps
/// serving.
#[test]
fn sighup_reloads_and_each_kind_of_bad_version_is_refused_and_logged() {
    let dir = temp_dir("sighup_reloads_and_each_kind_of_bad_version_is_refused_and_logged");
    place(&dir, "rust", "modify", "live.scale");
    let config = one_route(&dir, "/*", "live.scale", "");
    let mut served = serve_config_with(&config, &["--log-format", "json"], Stdio::piped());
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let stdout = served.child.stdout.take().unwrap();
    let kept = std::sync::Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(json) = serde_json::from_str(&line) {
                kept.lock().unwrap().push(json);
            }
        }
    });
    let (public, admin) = (served.public, served.admin);
    let count = |outcome: &str| metric(admin, &format!("scale_reloads_total{{route=\"/*\",outcome=\"{outcome}\"}}"));
    let wait_for = |outcome: &str, above: f64, what: &str| {
        eventually(&format!("{what}: no {outcome} reload was counted"), Duration::from_secs(30), || {
            count(outcome).unwrap_or(0.0) > above
        });
    };

    // SIGHUP with nothing changed on disk: the route is compiled again and swapped in.
    let ok = count("ok").unwrap_or(0.0);
    let status = std::process::Command::new("kill").args(["-HUP", &served.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    wait_for("ok", ok, "SIGHUP");
    assert_eq!(exchange(public, "GET", "/").2, "modified");

    // A version that compiles to nothing: a valid container around a module
    // whose only section is of an unknown kind.
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.extend_from_slice(&[0x7f, 0x03, 1, 2, 3]);
    let signature = scale_func::SignatureId::new("http", "v0.1.0").unwrap();
    let broken = scale_func::ScaleFunc::new("live", "test", signature, scale_func::Language::Rust, wasm).unwrap();
    // A damaged copy of the good version: one byte of its module changed.
    let mut damaged = std::fs::read(dir.join("live.scale")).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    let bad = [
        ("a wrong signature", std::fs::read(fixture("go", "bad-signature")).unwrap(), "was built for signature"),
        ("a module that does not compile", broken.encode(), "invalid module"),
        ("a damaged file", damaged, "checksum mismatch"),
    ];
    for (what, bytes, reason) in bad {
        let refused = count("refused").unwrap_or(0.0);
        replace_with(&dir, "live.scale", &bytes);
        wait_for("refused", refused, what);
        for _ in 0..5 {
            assert_eq!(exchange(public, "GET", "/").2, "modified", "after {what}");
        }
        eventually(&format!("{what}: no log line gives {reason:?}"), Duration::from_secs(10), || {
            logs.lock().unwrap().iter().any(|line| {
                line["level"] == "ERROR"
                    && line["message"].as_str().is_some_and(|message| message.starts_with("reload refused"))
                    && line["route"] == "/*"
                    && line["error"].as_str().is_some_and(|error| error.contains(reason))
            })
        });
    }
    assert!(!served.stderr().contains("panicked"), "{}", served.stderr());
}

/// When the grace period ends with a run still going, the server stops
/// anyway and exits 0: a run does not hold the process past the grace.
#[test]
fn the_grace_period_bounds_the_exit_whatever_runs_are_left() {
    let dir = temp_dir("the_grace_period_bounds_the_exit_whatever_runs_are_left");
    place(&dir, "rust", "escape", "escape.scale");
    let config = one_route(&dir, "/*", "escape.scale", "cpu_budget = \"none\"\ndeadline = \"120s\"\n");
    for dispatch in ["blocking", "auto"] {
        let mut served = serve_config(&config, &["--shutdown-grace", "1s", "--dispatch", dispatch]);
        // A run that sleeps for a minute.
        let mut slow = TcpStream::connect(served.public).unwrap();
        slow.write_all(b"POST /sleep HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n60").unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let signalled = Instant::now();
        served.terminate();
        let status = loop {
            if let Some(status) = served.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                signalled.elapsed() < Duration::from_secs(30),
                "{dispatch}: still running 30 s after SIGTERM with a 1 s grace period\n{}",
                served.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{dispatch}: exit {status:?}\n{}", served.stderr());
        assert!(served.stderr().contains("grace period over"), "{dispatch}: {}", served.stderr());
    }
}

/// A long run on a tokio worker (the default dispatch runs inline when runs
/// are bounded) holds up only its own request: other connections, the admin
/// listener and the answers to them go on while it lasts.
#[test]
fn a_long_inline_run_holds_up_only_its_own_request() {
    let dir = temp_dir("a_long_inline_run_holds_up_only_its_own_request");
    place(&dir, "rust", "escape", "escape.scale");
    let config = one_route(&dir, "/*", "escape.scale", "cpu_budget = \"none\"\ndeadline = \"30s\"\n");
    let served = serve_config(&config, &["--dispatch", "auto"]);
    for attempt in 0..3 {
        // A run that sleeps for 4 s, inline on a worker.
        let mut slow = TcpStream::connect(served.public).unwrap();
        slow.write_all(b"POST /sleep HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\n4").unwrap();
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        // Meanwhile, fresh connections are answered, public and admin.
        let (status, _, body) = exchange(served.public, "GET", "/env");
        let public = started.elapsed();
        assert_eq!(exchange(served.admin, "GET", "/healthz").0, 200);
        let admin = started.elapsed();
        assert!(
            admin < Duration::from_secs(3),
            "attempt {attempt}: answered only after {public:?} (public, {status} {body:?}) and {admin:?} (admin), \
             while a 4 s run went on"
        );
        let mut reply = String::new();
        slow.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    }
}
