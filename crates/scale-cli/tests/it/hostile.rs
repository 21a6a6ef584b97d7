//! `scale serve` under attack. While hostile requests of every class run
//! on connections of their own (guests that spin, sleep, call `next`
//! forever, blow up their table or their memory, frame their own
//! responses; clients that trickle their bodies), good requests on other
//! connections keep being answered, and quickly.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use scale_signature_http::{Context, Response, RunResult};

use crate::{arg, serve::start, temp_dir};

/// A complete HTTP response, the body of the framing attack.
const SMUGGLED: &[u8] = b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 8\r\n\r\nsmuggled";

/// The `RunResult` answering with `response`, as a WAT data string.
fn encoded(response: Response) -> (String, usize) {
    let mut context = Context::new();
    context.response = response;
    let bytes = RunResult::Context(context).encode_to_vec();
    (bytes.iter().map(|byte| format!("\\{byte:02x}")).collect(), bytes.len())
}

/// One guest, many behaviours: what it does depends on the length of the
/// context it gets, which a client sets with the size of its body.
fn hostile_guest() -> Vec<u8> {
    let mut good = Response { status_code: 200, ..Response::default() };
    good.set_body(b"good".to_vec());
    let (good, good_len) = encoded(good);
    let mut framing = Response { status_code: 200, ..Response::default() };
    framing.set_body(SMUGGLED.to_vec());
    for (name, value) in [("Content-Length", "0"), ("Transfer-Encoding", "chunked"), ("Connection", "upgrade")] {
        framing.headers.append(name, value);
    }
    let (framing, framing_len) = encoded(framing);
    let good_packed = (16u64 << 32) | good_len as u64;
    let framing_packed = (1024u64 << 32) | framing_len as u64;
    let wat = format!(
        r#"(module
            (import "env" "next" (func $next (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 4)
            (table $t 1 funcref)
            (data (i32.const 16) "{good}")
            (data (i32.const 1024) "{framing}")
            (func (export "scale_abi_version") (result i32) i32.const 1)
            (func (export "resize") (param i32) (result i32) i32.const 65536)
            (func (export "run") (param $len i32) (result i64)
                ;; a memory bomb
                (if (i32.gt_u (local.get $len) (i32.const 6000)) (then
                    (drop (memory.grow (i32.const 60000))) unreachable))
                ;; a table bomb
                (if (i32.gt_u (local.get $len) (i32.const 5000)) (then
                    (drop (table.grow $t (ref.null func) (i32.const 0x10000000))) unreachable))
                ;; next, forever
                (if (i32.gt_u (local.get $len) (i32.const 4000)) (then
                    (loop $again
                        (drop (call $next (i32.const 65536) (local.get $len) (i32.const 131072) (i32.const 65536)))
                        (br $again))))
                ;; sleep, forever
                (if (i32.gt_u (local.get $len) (i32.const 3000)) (then
                    (i32.store (i32.const 8208) (i32.const 1))
                    (i64.store (i32.const 8216) (i64.const 3600000000000))
                    (loop $again
                        (drop (call $poll (i32.const 8192) (i32.const 8300) (i32.const 1) (i32.const 8400)))
                        (br $again))))
                ;; spin, forever
                (if (i32.gt_u (local.get $len) (i32.const 2000)) (then (loop $again (br $again))))
                ;; frame its own response
                (if (i32.gt_u (local.get $len) (i32.const 1000)) (then (return (i64.const {framing_packed}))))
                i64.const {good_packed})
        )"#
    );
    wat::parse_str(&wat).expect("the hostile guest is valid WAT")
}

/// The attacks, each with the body size that selects it and the statuses
/// it may get.
const ATTACKS: &[(&str, usize, &[u16])] = &[
    ("framing", 1200, &[200]),
    ("spin", 2200, &[503, 504]),
    ("sleep", 3200, &[503, 504]),
    ("next forever", 4200, &[503, 504]),
    ("table bomb", 5200, &[503]),
    ("memory bomb", 6200, &[503]),
];

/// Sends one request on a fresh connection; the status and body.
fn exchange(addr: SocketAddr, body: usize) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = if body == 0 {
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string()
    } else {
        format!("POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {body}\r\n\r\n")
    };
    stream.write_all(head.as_bytes())?;
    stream.write_all(&vec![b'x'; body])?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = response.parse(&reply) else {
        return Err(std::io::Error::other(format!("not one HTTP response: {:?}", String::from_utf8_lossy(&reply))));
    };
    let status = response.code.unwrap_or(0);
    let length = response
        .headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case("content-length"))
        .and_then(|header| std::str::from_utf8(header.value).ok()?.parse::<usize>().ok());
    let body = reply[head_len..].to_vec();
    // Exactly one response: its declared length is what follows its head.
    if length != Some(body.len()) {
        return Err(std::io::Error::other(format!("length {length:?} for {} body bytes", body.len())));
    }
    Ok((status, body))
}

/// A client that sends a head promising a body, then a byte a second.
fn trickle(addr: SocketAddr, stop: &AtomicBool) {
    let Ok(mut stream) = TcpStream::connect(addr) else { return };
    let _ = stream.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    while !stop.load(Ordering::Relaxed) {
        if stream.write_all(b"x").is_err() {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn good_requests_are_answered_while_hostile_ones_run() {
    let dir = temp_dir("hostile_serve");
    let file = dir.join("hostile.scale");
    let signature = scale_func::SignatureId::new("http", "v0.1.0").unwrap();
    let function =
        scale_func::ScaleFunc::new("hostile", "test", signature, scale_func::Language::Rust, hostile_guest()).unwrap();
    std::fs::write(&file, function.encode()).unwrap();
    let server = start(&[arg(&file), "--memory-limit", "16", "--deadline", "2s"]);
    let addr = server.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    for _ in 0..10 {
        let stop = Arc::clone(&stop);
        attackers.push(std::thread::spawn(move || trickle(addr, &stop)));
    }
    let mut hostile = Vec::new();
    for &(name, body, expected) in ATTACKS {
        for _ in 0..2 {
            let stop = Arc::clone(&stop);
            hostile.push(std::thread::spawn(move || {
                let mut answered = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (status, reply) = exchange(addr, body).unwrap_or_else(|err| panic!("{name}: {err}"));
                    assert!(expected.contains(&status), "{name}: status {status}");
                    if name == "framing" {
                        assert_eq!(reply, SMUGGLED, "the smuggled response is the body of this one");
                    }
                    answered += 1;
                }
                answered
            }));
        }
    }

    // Good requests, one after the other, each on a connection of its own.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        let sent = Instant::now();
        let (status, body) = exchange(addr, 0).expect("a good request is answered");
        latencies.push(sent.elapsed());
        assert_eq!((status, body.as_slice()), (200, &b"good"[..]));
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let answered: Vec<u32> = hostile.into_iter().map(|thread| thread.join().expect("no attacker failed")).collect();
    for thread in attackers {
        thread.join().unwrap();
    }

    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let worst = *latencies.last().unwrap();
    eprintln!(
        "{} good requests during the attacks: median {median:?}, worst {worst:?}; hostile requests answered per thread: {answered:?}",
        latencies.len()
    );
    assert!(worst < Duration::from_secs(1), "a good request waited {worst:?}");
    assert!(answered.iter().all(|&n| n > 0), "every attack got answers: {answered:?}");
}
