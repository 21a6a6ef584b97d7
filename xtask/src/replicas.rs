//! `cargo xtask replicas`: three `scale serve` replicas behind HAProxy on
//! loopback, under load, one of them killed (SIGKILL) mid-test.
//!
//! HAProxy balances round-robin and checks each replica's admin `/readyz`
//! every 500 ms, taking a replica out after two failed checks. The load
//! generator (the closed-loop HTTP/1.1 client of `cargo xtask loadtest`)
//! sends `GET /` through HAProxy on `--connections` keep-alive connections;
//! every answer must be the built-in hello function's 200. A thread reads
//! HAProxy's state through its stats socket, to see when it marks the killed
//! replica DOWN. Requests are counted in three windows: answered before the
//! kill; in flight at the kill or sent before HAProxy marked the replica
//! down; sent after. The run fails if a request fails outside the middle
//! window, if HAProxy never marks the replica down, or if a replica serves
//! nothing.
//!
//! By default HAProxy retries a request whose connection failed or whose
//! server closed without answering on another replica (`retry-on
//! conn-failure empty-response`, `option redispatch`); `--no-retries` turns
//! that off, to see what the health checks alone give.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::loadtest::{Connection, parse_duration};

const USAGE: &str =
    "cargo xtask replicas [--duration 20s] [--kill-after 8s] [--connections 16] [--binary PATH] [--no-retries]
  --binary      the scale executable [default: target/debug/scale, from `cargo build -p scale-cli`]
  --no-retries  HAProxy does not retry failed requests on another replica";

/// How many replicas run.
const REPLICAS: usize = 3;
/// The replica killed (0-based).
const VICTIM: usize = 1;
/// A request not answered within this counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a replica, or HAProxy, may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the stats socket is read.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    pub kill_after: Duration,
    pub connections: usize,
    pub binary: Option<PathBuf>,
    pub retries: bool,
}

impl Options {
    /// The short run of `cargo xtask test`.
    pub fn short(binary: PathBuf) -> Self {
        Options {
            duration: Duration::from_secs(6),
            kill_after: Duration::from_secs(2),
            connections: 8,
            binary: Some(binary),
            retries: true,
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        duration: Duration::from_secs(20),
        kill_after: Duration::from_secs(8),
        connections: 16,
        binary: None,
        retries: true,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value (usage: {USAGE})"));
        match arg.as_str() {
            "--duration" => options.duration = parse_duration(&value()?)?,
            "--kill-after" => options.kill_after = parse_duration(&value()?)?,
            "--connections" => options.connections = value()?.parse().context("--connections takes a number")?,
            "--binary" => options.binary = Some(PathBuf::from(value()?)),
            "--no-retries" => options.retries = false,
            other => bail!("unknown argument {other:?} (usage: {USAGE})"),
        }
    }
    if options.connections == 0 || options.kill_after >= options.duration {
        bail!("--connections must be at least 1 and --kill-after shorter than --duration");
    }
    Ok(options)
}

pub fn run(root: &Path, args: impl Iterator<Item = String>) -> Result<()> {
    let options = parse_args(args)?;
    test(root, &options)
}

/// Runs the test; an error if a request failed outside the detection window.
pub fn test(root: &Path, options: &Options) -> Result<()> {
    let binary = options.binary.clone().unwrap_or_else(|| {
        crate::target_dir(root).join("debug").join(format!("scale{}", std::env::consts::EXE_SUFFIX))
    });
    if !binary.is_file() {
        bail!("{} is missing: build it with `cargo build -p scale-cli` or give --binary", binary.display());
    }
    if Command::new("haproxy").arg("-v").stdout(Stdio::null()).status().is_err() {
        bail!("haproxy is missing: install it with `apt-get install haproxy` (or run .ci/run)");
    }
    let dir = crate::target_dir(root).join("replicas");
    std::fs::create_dir_all(&dir)?;

    // The replicas start at once: each compiles the function on its own.
    let starting: Vec<_> = (0..REPLICAS)
        .map(|index| {
            let binary = binary.clone();
            std::thread::spawn(move || Replica::start(index, &binary))
        })
        .collect();
    let mut replicas = Vec::new();
    for handle in starting {
        replicas.push(handle.join().map_err(|_| anyhow::anyhow!("a replica's start panicked"))??);
    }
    for replica in &replicas {
        eprintln!("replica r{}: http://{} (admin http://{})", replica.index + 1, replica.public, replica.admin);
    }
    let balancer = Balancer::start(&dir, &replicas, options.retries)?;
    eprintln!(
        "haproxy on http://{}, {} retries; {} connections for {:?}, r{} killed after {:?}",
        balancer.addr,
        if options.retries { "with" } else { "without" },
        options.connections,
        options.duration,
        VICTIM + 1,
        options.kill_after
    );

    // Watches HAProxy's view of the victim from the start to the end.
    let stop = Arc::new(AtomicBool::new(false));
    let detected: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let watcher = {
        let (socket, stop, detected) = (balancer.socket.clone(), Arc::clone(&stop), Arc::clone(&detected));
        std::thread::spawn(move || -> Result<()> {
            let name = format!("r{}", VICTIM + 1);
            while !stop.load(Ordering::Acquire) {
                let stats = show_stat(&socket)?;
                if let Some(row) = stats.iter().find(|row| row.get("svname").is_some_and(|n| *n == name))
                    && row.get("status").is_some_and(|status| status.starts_with("DOWN"))
                {
                    detected.lock().expect("not poisoned").get_or_insert_with(Instant::now);
                }
                std::thread::sleep(POLL);
            }
            Ok(())
        })
    };

    let start = Instant::now();
    let kill_at = start + options.kill_after;
    let end = start + options.duration;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let load = {
        let addr = balancer.addr;
        let connections = options.connections;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let tasks: Vec<_> = (0..connections).map(|_| tokio::spawn(client(addr, end))).collect();
                let mut outcomes = Vec::new();
                for task in tasks {
                    outcomes.extend(task.await.context("a client task failed")?);
                }
                anyhow::Ok(outcomes)
            })
        })
    };
    std::thread::sleep(kill_at.saturating_duration_since(Instant::now()));
    let before_kill = show_stat(&balancer.socket)?;
    let killed = Instant::now();
    replicas[VICTIM].child.kill().context("killing the replica")?;
    let _ = replicas[VICTIM].child.wait();
    let outcomes = load.join().map_err(|_| anyhow::anyhow!("the load generator panicked"))??;
    stop.store(true, Ordering::Release);
    watcher.join().map_err(|_| anyhow::anyhow!("the stats watcher panicked"))??;
    let after = show_stat(&balancer.socket)?;
    let detected = *detected.lock().expect("not poisoned");

    // Requests answered (or failed) before the kill; sent after HAProxy
    // marked the victim down; the others, in flight at the kill or sent
    // before the detection.
    let mut counts = [[0u64; 2]; 3];
    for outcome in &outcomes {
        let window = if outcome.done < killed {
            0
        } else if detected.is_none_or(|at| outcome.sent < at) {
            1
        } else {
            2
        };
        counts[window][usize::from(!outcome.ok)] += 1;
    }
    let total: u64 = counts.iter().flatten().sum();
    println!();
    match detected {
        Some(at) => println!("haproxy marked r{} DOWN {:.0?} after the kill", VICTIM + 1, at - killed),
        None => println!("haproxy never marked r{} DOWN", VICTIM + 1),
    }
    println!("| requests | succeeded | failed |");
    println!("| --- | ---: | ---: |");
    let windows = ["done before the kill", "in flight at the kill or sent before DOWN", "sent after DOWN"];
    for (name, [ok, failed]) in windows.iter().zip(counts) {
        println!("| {name} | {ok} | {failed} |");
    }
    println!("{total} requests in {:.1?} ({:.0}/s)", options.duration, total as f64 / options.duration.as_secs_f64());
    let column = |rows: &[Stats], server: &str, name: &str| -> u64 {
        rows.iter()
            .find(|row| row.get("svname").is_some_and(|n| n == server))
            .and_then(|row| row.get(name))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    println!("| replica | requests before the kill | requests in all | retried (wretr) | redispatched (wredis) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut idle = Vec::new();
    for index in 0..REPLICAS {
        let server = format!("r{}", index + 1);
        let (before, all) = (column(&before_kill, &server, "stot"), column(&after, &server, "stot"));
        println!(
            "| {server}{} | {before} | {all} | {} | {} |",
            if index == VICTIM { " (killed)" } else { "" },
            column(&after, &server, "wretr"),
            column(&after, &server, "wredis")
        );
        if before == 0 || (index != VICTIM && all == before) {
            idle.push(server);
        }
    }

    if detected.is_none() {
        bail!("haproxy did not take the killed replica out within {:?}", end - killed);
    }
    if !idle.is_empty() {
        bail!("{} served no requests in a part of the run where it should have", idle.join(", "));
    }
    let [[_, failed_before], [_, _], [ok_after, failed_after]] = counts;
    if failed_before > 0 || failed_after > 0 {
        bail!("{failed_before} requests failed before the kill and {failed_after} after haproxy took the replica out");
    }
    if ok_after == 0 {
        bail!("no request was sent after haproxy took the replica out: lengthen --duration");
    }
    Ok(())
}

/// One request's fate.
struct Outcome {
    sent: Instant,
    /// When its answer (or failure) came.
    done: Instant,
    ok: bool,
}

/// One closed-loop client, until `end`.
async fn client(addr: SocketAddr, end: Instant) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut connection = None;
    loop {
        let sent = Instant::now();
        if sent >= end {
            return outcomes;
        }
        let ok = async {
            if connection.is_none() {
                connection = Some(Connection::open(addr).await?);
            }
            let open = connection.as_mut().expect("opened above");
            tokio::time::timeout(REQUEST_TIMEOUT, open.request(false)).await.context("no answer in time")??;
            anyhow::Ok(())
        }
        .await
        .is_ok();
        let done = Instant::now();
        if !ok {
            // The connection may be in any state: the next request opens another.
            connection = None;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        outcomes.push(Outcome { sent, done, ok });
    }
}

/// A `scale serve` process, killed when dropped.
struct Replica {
    index: usize,
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
}

impl Replica {
    /// Starts the built-in hello function on free loopback ports, with the
    /// admin listener, and waits for both addresses.
    fn start(index: usize, binary: &Path) -> Result<Replica> {
        let mut command = Command::new(binary);
        command.args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]).env("RUST_LOG", "warn");
        let (child, received) = crate::loadtest::spawn_server(&mut command, binary)?;
        let unset = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut replica = Replica { index, child, public: unset, admin: unset };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut printed = Vec::new();
        while replica.public == unset || replica.admin == unset {
            let line = match received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("replica {index} printed no addresses within {START_TIMEOUT:?}:\n{}", printed.join("\n"))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = replica.child.wait()?;
                    bail!("replica {index} exited ({status}) before serving:\n{}", printed.join("\n"))
                }
            };
            if let Some((before, rest)) = line.split_once("http://") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let addr = addr.parse().with_context(|| format!("replica {index} printed a bad address: {line}"))?;
                if before.starts_with("admin") { replica.admin = addr } else { replica.public = addr }
            }
            printed.push(line);
        }
        Ok(replica)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy in the foreground, killed when dropped.
struct Balancer {
    child: Child,
    addr: SocketAddr,
    socket: PathBuf,
}

impl Balancer {
    fn start(dir: &Path, replicas: &[Replica], retries: bool) -> Result<Balancer> {
        let socket = dir.join("haproxy.sock");
        let _ = std::fs::remove_file(&socket);
        // A free port: bound, read, released. Another process could take it
        // in between; HAProxy then fails to start, with a message.
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let retry = if retries {
            "    retries 3\n    option redispatch 1\n    retry-on conn-failure empty-response\n"
        } else {
            "    retries 0\n"
        };
        let mut servers = String::new();
        for replica in replicas {
            servers.push_str(&format!(
                "    server r{} {} check port {}\n",
                replica.index + 1,
                replica.public,
                replica.admin.port()
            ));
        }
        let config = format!(
            "global
    stats socket {socket} mode 600 level admin
    maxconn 2000

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
{retry}
frontend web
    bind {addr}
    default_backend scale

backend scale
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
{servers}",
            socket = socket.display()
        );
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config)?;
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting haproxy")?;
        let mut balancer = Balancer { child, addr, socket };
        // Ready when every replica is UP.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = balancer.child.try_wait()? {
                bail!("haproxy exited ({status}) at start; its configuration is {}", file.display());
            }
            if let Ok(stats) = show_stat(&balancer.socket) {
                let up = stats
                    .iter()
                    .filter(|row| row.get("svname").is_some_and(|name| name.starts_with('r')))
                    .filter(|row| row.get("status").is_some_and(|status| status == "UP"))
                    .count();
                if up == replicas.len() {
                    return Ok(balancer);
                }
            }
            if Instant::now() > deadline {
                bail!("haproxy did not see the {} replicas UP within {START_TIMEOUT:?}", replicas.len());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One row of `show stat`: column name to value.
type Stats = std::collections::HashMap<String, String>;

/// HAProxy's `show stat`, one map per proxy or server.
fn show_stat(socket: &Path) -> Result<Vec<Stats>> {
    let mut stream = UnixStream::connect(socket).with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"show stat\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let mut lines = text.lines();
    let header = lines.next().and_then(|line| line.strip_prefix("# ")).context("show stat printed no header")?;
    let names: Vec<&str> = header.split(',').collect();
    Ok(lines
        .filter(|line| !line.is_empty())
        .map(|line| names.iter().map(|name| name.to_string()).zip(line.split(',').map(str::to_string)).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let options =
            parse_args(["--duration", "10s", "--kill-after", "4s", "--no-retries"].map(String::from).into_iter())
                .unwrap();
        assert_eq!(
            (options.duration, options.kill_after, options.retries),
            (Duration::from_secs(10), Duration::from_secs(4), false)
        );
        assert!(parse_args(["--duration", "4s", "--kill-after", "4s"].map(String::from).into_iter()).is_err());
        assert!(parse_args(["--connections", "0"].map(String::from).into_iter()).is_err());
    }
}
