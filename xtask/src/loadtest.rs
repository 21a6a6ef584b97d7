//! `cargo xtask loadtest`: `scale serve` (built-in hello function) against a
//! bare hyper hello server, in the same run, on loopback.
//!
//! Both servers are built in release (`[profile.release]`), started one after
//! the other on a free loopback port (each is killed before the next starts,
//! and on any error), checked once, then driven by a closed-loop load
//! generator: `--connections` keep-alive HTTP/1.1 connections, each sending
//! `GET /` and waiting for the whole response before sending the next. Each
//! run lasts `--warmup` (not recorded) plus `--duration` (recorded), so the
//! test is bounded in time. Every response must be a 200 with the hello body;
//! anything else (or an I/O error, or no answer within [`REQUEST_TIMEOUT`])
//! counts as an error.
//!
//! The generator runs on one thread (a current-thread tokio runtime) and is a
//! small hand-written HTTP/1.1 client (requests are fixed bytes, responses are
//! parsed with `httparse`), so that it takes as little CPU as possible from
//! the servers it measures: on a small machine server and generator share the
//! cores, and a heavier client would hide part of the servers' difference.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xshell::{Shell, cmd};

/// The request every connection sends.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nuser-agent: scale-loadtest\r\n\r\n";
/// The body both servers answer with.
const EXPECTED_BODY: &[u8] = b"Hello, World!\n";
/// A request not answered within this counts as an error (and its connection is replaced).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

const USAGE: &str = "cargo xtask loadtest [--duration 10s] [--warmup 2s] [--connections 32] [--rounds 1]";

#[derive(Debug, Clone, Copy)]
struct Options {
    duration: Duration,
    warmup: Duration,
    connections: usize,
    /// How many times to test both servers, one after the other.
    rounds: usize,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options =
        Options { duration: Duration::from_secs(10), warmup: Duration::from_secs(2), connections: 32, rounds: 1 };
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value (usage: {USAGE})"));
        match arg.as_str() {
            "--duration" => options.duration = parse_duration(&value()?)?,
            "--warmup" => options.warmup = parse_duration(&value()?)?,
            "--connections" => {
                options.connections = value()?.parse().context("--connections takes a number")?;
                if options.connections == 0 {
                    bail!("--connections must be at least 1");
                }
            }
            "--rounds" => options.rounds = value()?.parse().context("--rounds takes a number")?,
            other => bail!("unknown argument {other:?} (usage: {USAGE})"),
        }
    }
    if options.duration.is_zero() || options.rounds == 0 {
        bail!("--duration and --rounds must be more than 0");
    }
    Ok(options)
}

/// `10s`, `500ms`, `1m`, or a number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: f64 = number.parse().with_context(|| format!("bad duration {text:?} (try 10s or 500ms)"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => bail!("bad duration {text:?}: the unit is ms, s or m"),
    };
    Duration::try_from_secs_f64(seconds).with_context(|| format!("bad duration {text:?}"))
}

pub fn run(sh: &Shell, root: &Path, args: impl Iterator<Item = String>) -> Result<()> {
    let options = parse_args(args)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> building the servers (release)");
    cmd!(sh, "{cargo} build --release -p scale-cli").run()?;
    cmd!(sh, "{cargo} build --release -p scale-http --example bare_hyper").run()?;
    let release = crate::target_dir(root).join("release");
    let exe = std::env::consts::EXE_SUFFIX;
    let servers = [
        ("bare hyper", release.join(format!("examples/bare_hyper{exe}")), vec!["--listen", "127.0.0.1:0"]),
        ("scale serve", release.join(format!("scale{exe}")), vec!["serve", "--listen", "127.0.0.1:0"]),
    ];

    eprintln!(
        "==> {} connections, {:?} warm-up + {:?} measured per server, generator on 1 thread, {} CPUs",
        options.connections,
        options.warmup,
        options.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rounds = Vec::new();
    for round in 1..=options.rounds {
        let mut reports = Vec::new();
        for (name, program, args) in &servers {
            let server = Server::start(name, program, args)?;
            let headers = check(server.addr).with_context(|| format!("{name} did not answer as expected"))?;
            eprintln!("==> round {round}: {name} on http://{} answers 200 ({})", server.addr, headers.join(", "));
            let report = drive(server.addr, options).with_context(|| format!("load testing {name}"))?;
            drop(server);
            eprintln!("    {}", report.line(name));
            reports.push(report);
        }
        rounds.push(reports);
    }

    println!();
    println!("| round | server | requests/s | p50 | p99 | errors |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: |");
    let mut errors = 0;
    for (round, reports) in rounds.iter().enumerate() {
        for ((name, _, _), report) in servers.iter().zip(reports) {
            println!(
                "| {} | {name} | {:.0} | {} | {} | {} |",
                round + 1,
                report.per_second(),
                micros(report.percentile(0.50)),
                micros(report.percentile(0.99)),
                report.errors
            );
            errors += report.errors;
        }
    }
    println!();
    let mut ratios = Vec::new();
    for (round, reports) in rounds.iter().enumerate() {
        let ratio = reports[1].per_second() / reports[0].per_second();
        println!(
            "round {}: scale serve / bare hyper = {:.1} % of the requests/s (target: at least 70 %)",
            round + 1,
            ratio * 100.0
        );
        ratios.push(ratio);
    }
    if ratios.len() > 1 {
        // On a shared machine single rounds swing by several points; the
        // median of the rounds' ratios is the figure to compare.
        ratios.sort_by(f64::total_cmp);
        let middle = ratios.len() / 2;
        let median = if ratios.len() % 2 == 0 { (ratios[middle - 1] + ratios[middle]) / 2.0 } else { ratios[middle] };
        println!("median of {} rounds: {:.1} % (target: at least 70 %)", ratios.len(), median * 100.0);
    }
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    Ok(())
}

fn micros(us: u32) -> String {
    if us >= 10_000 { format!("{:.1} ms", f64::from(us) / 1000.0) } else { format!("{us} µs") }
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

/// Spawns a server with standard output discarded, and a thread that reads
/// its standard error to the end (so that it never blocks on a full pipe)
/// and hands over the lines.
pub(crate) fn spawn_server(command: &mut Command, program: &Path) -> Result<(Child, mpsc::Receiver<String>)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line);
        }
    });
    Ok((child, received))
}

impl Server {
    /// Starts `program` and waits for the `http://ADDR` it prints on stderr.
    fn start(name: &str, program: &Path, args: &[&str]) -> Result<Server> {
        let mut command = Command::new(program);
        command.args(args);
        let (child, received) = spawn_server(&mut command, program)?;
        // From here on, the guard kills the server whatever happens.
        let mut server = Server { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut printed = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match received.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("{name} printed no address within {START_TIMEOUT:?}:\n{}", printed.join("\n"))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait()?;
                    bail!("{name} exited ({status}) before serving:\n{}", printed.join("\n"))
                }
            };
            if let Some(rest) = line.split_once("http://").map(|(_, rest)| rest) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                server.addr = addr.parse().with_context(|| format!("{name} printed a bad address: {line}"))?;
                return Ok(server);
            }
            printed.push(line);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one server did under load.
#[derive(Debug, Default)]
struct Report {
    /// Latencies of the successful requests sent in the measured window, in µs, sorted.
    latencies: Vec<u32>,
    errors: u64,
    measured: Duration,
}

impl Report {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.measured.as_secs_f64()
    }

    /// The latency that `fraction` of the requests did not exceed.
    fn percentile(&self, fraction: f64) -> u32 {
        if self.latencies.is_empty() {
            return 0;
        }
        let rank = (fraction * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name}: {:.0} requests/s, p50 {}, p99 {}, max {}, {} requests, {} errors",
            self.per_second(),
            micros(self.percentile(0.50)),
            micros(self.percentile(0.99)),
            micros(self.latencies.last().copied().unwrap_or(0)),
            self.latencies.len(),
            self.errors
        )
    }
}

fn generator() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Sends one request; returns the response's header names.
fn check(addr: SocketAddr) -> Result<Vec<String>> {
    generator()?.block_on(async {
        let mut connection = Connection::open(addr).await?;
        tokio::time::timeout(REQUEST_TIMEOUT, connection.request(true)).await.context("no answer")?
    })
}

/// Drives the server at `addr` for the warm-up and the measured duration.
fn drive(addr: SocketAddr, options: Options) -> Result<Report> {
    generator()?.block_on(async move {
        let measure_from = Instant::now() + options.warmup;
        let end = measure_from + options.duration;
        let tasks: Vec<_> =
            (0..options.connections).map(|_| tokio::spawn(client_loop(addr, measure_from, end))).collect();
        let mut report = Report { measured: options.duration, ..Report::default() };
        for task in tasks {
            let part = task.await.context("a client task failed")??;
            report.latencies.extend(part.latencies);
            report.errors += part.errors;
        }
        report.latencies.sort_unstable();
        Ok(report)
    })
}

/// One closed-loop client: a request, its whole response, the next request.
async fn client_loop(addr: SocketAddr, measure_from: Instant, end: Instant) -> Result<Report> {
    let mut report = Report::default();
    let mut connection = Connection::open(addr).await?;
    loop {
        let sent = Instant::now();
        if sent >= end {
            return Ok(report);
        }
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, connection.request(false)).await;
        let elapsed = sent.elapsed();
        let ok = matches!(outcome, Ok(Ok(_)));
        if sent >= measure_from {
            if ok {
                report.latencies.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
            } else {
                report.errors += 1;
            }
        }
        if !ok {
            if report.errors <= 3
                && let Ok(Err(err)) = &outcome
            {
                eprintln!("    request failed: {err:#}");
            }
            // The connection may be in any state: start a new one.
            tokio::time::sleep(Duration::from_millis(10)).await;
            connection = Connection::open(addr).await?;
        }
    }
}

/// A keep-alive HTTP/1.1 connection.
pub(crate) struct Connection {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    pub(crate) async fn open(addr: SocketAddr) -> Result<Connection> {
        let stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, buffer: Vec::with_capacity(1024) })
    }

    /// Sends `GET /` and reads the response; an error unless it is a 200
    /// with the expected body. Returns the response's header names if `names`.
    pub(crate) async fn request(&mut self, names: bool) -> Result<Vec<String>> {
        self.stream.write_all(REQUEST).await?;
        self.buffer.clear();
        let (status, names, body_at, length) = loop {
            self.read_more().await?;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(body_at) = response.parse(&self.buffer)? {
                let mut length = None;
                for header in response.headers.iter() {
                    if header.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(header.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
                    } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                        bail!("chunked responses are not supported by the load generator");
                    }
                }
                let names = match names {
                    true => response.headers.iter().map(|h| h.name.to_ascii_lowercase()).collect(),
                    false => Vec::new(),
                };
                let length = length.context("the response has no content-length")?;
                break (response.code.unwrap_or(0), names, body_at, length);
            }
        };
        while self.buffer.len() < body_at + length {
            self.read_more().await?;
        }
        let body = &self.buffer[body_at..body_at + length];
        if status != 200 || body != EXPECTED_BODY {
            bail!("got {status} {:?}", String::from_utf8_lossy(body));
        }
        if self.buffer.len() > body_at + length {
            bail!("the server sent more than one response");
        }
        Ok(names)
    }

    async fn read_more(&mut self) -> Result<()> {
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk).await?;
        if read == 0 {
            bail!("the server closed the connection");
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn percentiles() {
        let report = Report { latencies: (1..=100).collect(), errors: 0, measured: Duration::from_secs(1) };
        assert_eq!(report.percentile(0.50), 50);
        assert_eq!(report.percentile(0.99), 99);
        assert_eq!(report.percentile(1.0), 100);
        assert_eq!(Report::default().percentile(0.99), 0);
    }
}
