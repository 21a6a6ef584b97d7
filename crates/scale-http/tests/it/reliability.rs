//! The server under abuse: oversized and malformed headers, slow clients,
//! slow bodies, more connections than allowed, clients that leave in the
//! middle of a run. After each, a good request must still be answered.
//! Loopback only, every wait bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scale_http::{HEADER_READ_TIMEOUT, MinRate, ScaleService, ServeOptions};
use scale_runtime::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::framing::{WireResponse, guest_answering, parse_response};
use super::{fixture, get, post, runtime, send, start, start_with};

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

/// A runtime whose one function, a hand-written guest, answers 200 "ok":
/// the tests of connection and body limits need no built fixture.
fn answering_ok() -> Runtime {
    let mut response = scale_signature_http::Response::default();
    response.set_body(b"ok".to_vec());
    Runtime::new([guest_answering(response)]).unwrap()
}

/// A good request to an [`answering_ok`] server, which must succeed whatever
/// happened before it.
async fn answers_ok(addr: std::net::SocketAddr, what: &str) {
    let reply = send(addr, &post("/", b"still here")).await;
    assert_eq!((reply.status, reply.text()), (200, "ok"), "after {what}");
}

/// Reads one response from `stream` (framed by its content-length), or
/// `None` when the connection ends first. Bounded by 30 s.
async fn read_response(stream: &mut TcpStream) -> Option<WireResponse> {
    let mut raw = Vec::new();
    loop {
        if let Some((response, _)) = parse_response(&raw, false) {
            return Some(response);
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await.expect("an answer in time") {
            Ok(0) | Err(_) => return None,
            Ok(read) => raw.extend_from_slice(&chunk[..read]),
        }
    }
}

/// Sends a request head announcing a `length`-byte body, then body bytes:
/// `chunk` bytes every `every`, until the server answers or closes. Returns
/// the answer and when it came.
async fn trickle_body(
    addr: std::net::SocketAddr,
    length: usize,
    chunk: usize,
    every: Duration,
) -> (Option<WireResponse>, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut sent = 0;
    while sent < length {
        let part = chunk.min(length - sent);
        if stream.write_all(&vec![b'b'; part]).await.is_err() {
            break;
        }
        sent += part;
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(every, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(read)) => {
                raw.extend_from_slice(&buf[..read]);
                if parse_response(&raw, false).is_some() {
                    break;
                }
            }
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the trickling client was never cut off");
    }
    let answered = started.elapsed();
    // The server closes the connection after its answer.
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("closed after the answer");
    (parse_response(&raw, false).map(|(response, _)| response), answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408_within_their_bounds_while_others_are_served() {
    let rate = MinRate { bytes: 64, window: Duration::from_secs(1) };
    let total = Duration::from_secs(3);
    let service = ScaleService::new(answering_ok()).body_timeout(total).body_min_rate(rate);
    let (addr, _stop) = start(service).await;
    // One client sends a byte a second: below the rate, cut off after one window.
    let trickle = tokio::spawn(trickle_body(addr, 1000, 1, Duration::from_secs(1)));
    // Another keeps the rate (100 bytes every 100 ms) but its body is too
    // long to finish in the total time.
    let long = tokio::spawn(trickle_body(addr, 1 << 20, 100, Duration::from_millis(100)));
    for _ in 0..5 {
        answers_ok(addr, "slow bodies arriving").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (what, task, bound) in [("trickling", trickle, rate.window), ("long", long, total)] {
        let (answer, after) = task.await.unwrap();
        eprintln!("the {what} body was cut off after {after:.1?}");
        let answer = answer.unwrap_or_else(|| panic!("the {what} body got no answer"));
        assert_eq!(answer.status, 408, "{what}: {answer:?}");
        assert_eq!(answer.values("connection"), ["close"], "{what}");
        assert!(after >= bound - Duration::from_millis(100), "the {what} body was cut off early: {after:?}");
        assert!(after <= bound + Duration::from_secs(3), "the {what} body lingered: {after:?}");
    }
    answers_ok(addr, "slow bodies").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_get_503_until_a_slot_frees() {
    let options = ServeOptions::new().max_connections(std::num::NonZeroUsize::new(2).unwrap());
    let (addr, _stop) = start_with(ScaleService::new(answering_ok()), options).await;
    // Two keep-alive connections, each answered once, hold both slots.
    let keep_alive = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nheld";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(keep_alive).await.unwrap();
        let answer = read_response(&mut stream).await.expect("an answer");
        assert_eq!((answer.status, answer.body.as_slice()), (200, b"ok".as_slice()));
        held.push(stream);
    }
    for attempt in 0..3 {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The server may answer and close before reading the request.
        let _ = stream.write_all(&post("/", b"one too many")).await;
        let mut raw = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await.expect("closed in time");
        let (answer, used) =
            parse_response(&raw, false).unwrap_or_else(|| panic!("attempt {attempt}: no answer: {raw:?}"));
        assert_eq!(answer.status, 503, "attempt {attempt}: {answer:?}");
        assert_eq!(answer.values("connection"), ["close"], "attempt {attempt}");
        assert_eq!(used, raw.len(), "attempt {attempt}: nothing after the 503");
        assert!(started.elapsed() < Duration::from_secs(2), "attempt {attempt}: the 503 was not immediate");
    }
    // The held connections still work, and once one closes, a new one is served.
    let mut first = held.remove(0);
    first.write_all(keep_alive).await.unwrap();
    assert_eq!(read_response(&mut first).await.expect("still served").status, 200);
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = status_of(addr, &post("/", b"a slot freed")).await;
        if status == Some(200) {
            break;
        }
        assert_eq!(status, Some(503), "while the closed connection's slot frees");
        assert!(Instant::now() < deadline, "the closed connection's slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// hyper's header read timeout also runs while a keep-alive connection waits
/// for its next request, so idle connections give their slots back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let options = ServeOptions::new().header_read_timeout(timeout);
    let (addr, _stop) = start_with(ScaleService::new(answering_ok()), options).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nidle").await.unwrap();
    assert_eq!(read_response(&mut stream).await.expect("an answer").status, 200);
    let idle_since = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(timeout * 10, stream.read_to_end(&mut rest))
        .await
        .expect("the idle connection was never closed")
        .unwrap();
    let idle = idle_since.elapsed();
    eprintln!("the idle keep-alive connection was closed after {idle:.1?}");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(idle >= timeout - Duration::from_millis(100), "closed early: {idle:?}");
    assert!(idle <= timeout + Duration::from_secs(3), "lingered: {idle:?}");
}
