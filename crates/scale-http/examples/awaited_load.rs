//! The load test of docs/benchmarks.md (*Awaited downstreams*): a function in
//! front of an axum app whose handler awaits a 1 ms tokio timer, served two
//! ways in one process, one after the other, each driven by `wrk`:
//!
//! - `block_on`: a downstream service without `run_async`: runs on the
//!   blocking pool (`Dispatch::Blocking`), the native handler waiting for
//!   the app with `Handle::block_on`;
//! - `run_async`: `ScaleService::with_downstream(app)`, the app awaited
//!   through `Instance::run_async`.
//!
//! ```text
//! cargo xtask fixtures
//! cargo run --release -p scale-http --example awaited_load -- \
//!     [--connections 256] [--duration 10] [--max-runs 64] [--rounds 2] [--function target/fixtures/rust/next.scale]
//! ```
//!
//! `wrk` (the Debian package) must be on the path. The server runs on a
//! tokio multi-thread runtime with a worker per core.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use scale_http::{Dispatch, ScaleService, serve};
use scale_runtime::{HandlerError, Runtime, ScaleFunc};
use scale_signature_http::Response;
use tower::ServiceExt;

struct Options {
    connections: usize,
    duration: u64,
    max_runs: usize,
    rounds: usize,
    function: String,
}

fn options() -> Options {
    let mut options = Options {
        connections: 256,
        duration: 10,
        max_runs: scale_http::DEFAULT_MAX_RUNS,
        rounds: 2,
        function: "target/fixtures/rust/next.scale".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        let number = || value.parse::<usize>().unwrap_or_else(|_| panic!("{arg} takes a number"));
        match arg.as_str() {
            "--connections" => options.connections = number(),
            "--duration" => options.duration = number() as u64,
            "--max-runs" => options.max_runs = number(),
            "--rounds" => options.rounds = number(),
            "--function" => options.function = value,
            other => panic!("unknown option {other}"),
        }
    }
    options
}

/// The downstream app: 1 ms of awaiting, then a short answer.
fn app() -> axum::Router {
    axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        "ok"
    })
}

/// The app as a native handler that waits for it with `block_on`, on a
/// blocking-pool thread.
fn blocking_service(runtime: Runtime, max_runs: usize, tokio: tokio::runtime::Handle) -> ScaleService {
    let app = app();
    ScaleService::new(runtime).dispatch(Dispatch::Blocking).max_runs(max_runs).with_handler(move |ctx| {
        let request = http::Request::<Bytes>::try_from(ctx.request.clone()).map_err(HandlerError::new)?;
        let app = app.clone();
        let response = tokio
            .block_on(async move {
                let Ok(response) = app.oneshot(request.map(Full::new)).await;
                let (parts, body) = response.into_parts();
                let body = body.collect().await?.to_bytes();
                Ok::<_, axum::Error>(http::Response::from_parts(parts, body))
            })
            .map_err(HandlerError::new)?;
        ctx.response = Response::try_from(response).map_err(HandlerError::new)?;
        Ok(())
    })
}

/// One `wrk` run against `addr`: its report.
fn wrk(addr: std::net::SocketAddr, connections: usize, seconds: u64) -> String {
    let output = Command::new("wrk")
        .args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency", &format!("http://{addr}/")])
        .output()
        .expect("wrk runs (apt-get install wrk)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn line<'a>(report: &'a str, starts: &str) -> &'a str {
    report.lines().map(str::trim).find(|line| line.starts_with(starts)).unwrap_or("-")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options();
    let function = ScaleFunc::decode(&std::fs::read(&options.function)?)?;
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!(
        "function {}, {} connections, {} s per run, max_runs {}, {} tokio workers",
        options.function,
        options.connections,
        options.duration,
        options.max_runs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for round in 1..=options.rounds {
        for way in ["block_on", "run_async"] {
            let runtime = Runtime::new([function.clone()])?;
            let service = match way {
                "block_on" => blocking_service(runtime, options.max_runs, tokio.handle().clone()),
                _ => ScaleService::new(runtime).max_runs(options.max_runs).with_downstream(app()),
            };
            let listener = tokio.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
            let addr = listener.local_addr()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio.spawn(serve(listener, service, async {
                let _ = stopped.await;
            }));
            // Warm-up: pools, runner threads, connections.
            wrk(addr, options.connections, 2);
            let report = wrk(addr, options.connections, options.duration);
            // `-` for the last: no responses other than 2xx or 3xx.
            println!(
                "round {round} {way:>9}: {} | {} | {} | {}",
                line(&report, "Requests/sec"),
                line(&report, "Latency"),
                line(&report, "99%"),
                line(&report, "Non-2xx"),
            );
            let _ = stop.send(());
            tokio.block_on(server)??;
        }
    }
    Ok(())
}
