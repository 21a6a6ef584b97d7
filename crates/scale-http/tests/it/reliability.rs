//! The server under abuse: oversized and malformed headers, slow clients,
//! clients that leave in the middle of a run. After each, a good request
//! must still be answered. Loopback only, every wait bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scale_http::{HEADER_READ_TIMEOUT, ScaleService};
use scale_runtime::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{fixture, get, post, runtime, send, start};

/// A good request, which must succeed whatever happened before it.
async fn still_serving(addr: std::net::SocketAddr, what: &str) {
    let reply = send(addr, &post("/echo", b"still here")).await;
    assert_eq!((reply.status, reply.text()), (200, "still here"), "after {what}");
}

/// Sends `request` and reads until the server closes, returning the status
/// of its answer (`None` when it closed without one). Bounded by 30 s.
async fn status_of(addr: std::net::SocketAddr, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything we send.
    let _ = stream.write_all(request).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw)).await.expect("closed in time");
    let line = raw.split(|&b| b == b'\r').next()?;
    std::str::from_utf8(line).ok()?.split(' ').nth(1)?.parse().ok()
}

/// Waits (up to 10 s) until `runtime`'s pools satisfy `done`, returning the last stats.
async fn pool_settles(runtime: &Runtime, done: impl Fn(scale_runtime::PoolStats) -> bool) -> scale_runtime::PoolStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = runtime.pool_stats();
        if done(stats) || Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_headers_are_refused_and_the_server_keeps_serving() {
    let (addr, _stop) = start(ScaleService::new(runtime("rust", &["faults"]))).await;
    still_serving(addr, "start").await;

    let huge_value = format!("X-Huge: {}\r\n", "v".repeat(1 << 20));
    assert_eq!(status_of(addr, &get("/echo", &huge_value)).await, Some(431), "a 1 MiB header");
    still_serving(addr, "a 1 MiB header").await;

    let many: String = (0..500).map(|i| format!("X-Many-{i}: {i}\r\n")).collect();
    assert_eq!(status_of(addr, &get("/echo", &many)).await, Some(431), "500 headers");
    still_serving(addr, "500 headers").await;

    let long_uri = format!("/{}", "u".repeat(1 << 20));
    assert!(matches!(status_of(addr, &get(&long_uri, "")).await, Some(414 | 431)), "a 1 MiB URI");
    still_serving(addr, "a 1 MiB URI").await;

    for (what, line) in [
        ("a header without a colon", "No colon here\r\n"),
        ("a space in a header name", "X Bad: 1\r\n"),
        ("a control byte in a header value", "X-Nul: a\0b\r\n"),
        ("two content lengths that disagree", "Content-Length: 1\r\nContent-Length: 2\r\n"),
    ] {
        assert_eq!(status_of(addr, &get("/echo", line)).await, Some(400), "{what}");
        still_serving(addr, what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_disconnected_after_the_header_timeout() {
    let (addr, _stop) = start(ScaleService::new(runtime("rust", &["faults"]))).await;
    let started = Instant::now();
    // One client sends a header byte every 500 ms, never finishing; another sends nothing at all.
    let trickle = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = b"GET /echo HTTP/1.1\r\nHost: test\r\nX-Slow: ";
        for byte in request.iter().chain(std::iter::repeat(&b'z')) {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => {} // an answer (408) before closing is fine
                Err(_) => {}
            }
            assert!(started.elapsed() < HEADER_READ_TIMEOUT * 2, "the trickling client was never disconnected");
        }
        started.elapsed()
    });
    let silent = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut raw = Vec::new();
        let closed = tokio::time::timeout(HEADER_READ_TIMEOUT * 2, stream.read_to_end(&mut raw)).await;
        assert!(closed.is_ok(), "the silent client was never disconnected");
        started.elapsed()
    });
    // Meanwhile the server answers everyone else.
    for _ in 0..3 {
        still_serving(addr, "slow clients connecting").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (trickled, silent) = (trickle.await.unwrap(), silent.await.unwrap());
    for (what, after) in [("trickling", trickled), ("silent", silent)] {
        eprintln!("the {what} client was disconnected after {after:.1?}");
        assert!(
            after >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
            "the {what} client was cut off early: {after:?}"
        );
        assert!(after <= HEADER_READ_TIMEOUT + Duration::from_secs(5), "the {what} client lingered: {after:?}");
    }
    still_serving(addr, "slow clients").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_during_a_run_leaves_the_pool_consistent() {
    // The handler at the end of the chain takes its time, long enough for
    // the client to hang up in the middle of the run.
    let finished = Arc::new(AtomicU64::new(0));
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let runtime = runtime("rust", &["next"]);
    let done = Arc::clone(&finished);
    let service = ScaleService::new(runtime.clone()).with_handler(move |ctx| {
        let _ = started_tx.send(());
        std::thread::sleep(Duration::from_millis(400));
        done.fetch_add(1, Ordering::SeqCst);
        ctx.response.set_body_string("finished");
        Ok(())
    });
    let (addr, _stop) = start(service).await;
    let warm = runtime.pool_stats();

    for round in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&get("/", "")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), started_rx.recv()).await.unwrap().unwrap();
        drop(stream);
        let stats = pool_settles(&runtime, |s| s.idle == warm.idle && finished.load(Ordering::SeqCst) > round).await;
        assert_eq!(finished.load(Ordering::SeqCst), round + 1, "round {round}: the run completed");
        assert_eq!(stats.idle, warm.idle, "round {round}: the instance came back: {stats:?}");
        assert_eq!(stats.discarded, 0, "round {round}: a healthy instance is not discarded: {stats:?}");
        assert_eq!(stats.created, warm.created, "round {round}: {stats:?}");
    }
    let reply = send(addr, &get("/", "")).await;
    assert_eq!((reply.status, reply.text()), (200, "finished"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_during_a_runaway_run_leaves_the_pool_consistent() {
    let runtime = Runtime::builder().cpu_budget(20_000_000).function(fixture("rust", "faults")).build().unwrap();
    let (addr, _stop) = start(ScaleService::new(runtime.clone())).await;
    still_serving(addr, "start").await;
    let warm = runtime.pool_stats();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&get("/loop", "")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    drop(stream);
    // The run ends at its CPU budget; its instance is discarded, never pooled.
    let stats =
        pool_settles(&runtime, |s| s.discarded == warm.discarded + 1 && s.created == s.discarded + s.idle).await;
    assert_eq!(stats.discarded, warm.discarded + 1, "{stats:?}");
    assert_eq!(stats.created, stats.discarded + stats.idle, "every instance is idle or discarded: {stats:?}");
    still_serving(addr, "a runaway run whose client left").await;
}
