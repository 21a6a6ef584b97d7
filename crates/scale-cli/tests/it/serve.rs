//! `scale serve`: a real server process on a loopback port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::{arg, fixture};

/// A running `scale serve`, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `scale serve ARGS --listen 127.0.0.1:0` and waits for its "serving … on http://ADDR" line.
pub(crate) fn start(args: &[&str]) -> Server {
    let mut child = crate::scale_command()
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("scale serve exited before listening").unwrap();
        if let Some(at) = line.find("http://") {
            let rest = &line[at + "http://".len()..];
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Keep draining standard error so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

/// One request, returning the status and the body.
fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply.split(' ').nth(1).unwrap().parse().unwrap();
    let body = reply.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn serve_without_files_answers_with_the_built_in_function() {
    let server = start(&[]);
    let (status, body) = request(server.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(body, "Hello, World!\n");
}

#[test]
fn serve_runs_the_given_chain_and_refuses_oversized_bodies() {
    let file = fixture("go", "http-handler");
    let server = start(&[arg(&file), "--body-limit", "16"]);
    let (status, body) = request(server.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, "-modified"));
    let (status, _) = request(
        server.addr,
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 32\r\n\r\n01234567890123456789012345678901",
    );
    assert_eq!(status, 413);
}

fn post(addr: SocketAddr, body: &str) -> (u16, String) {
    let raw =
        format!("POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    request(addr, &raw)
}

/// With `--isolate`, no request sees what the one before it left in the
/// function's globals or heap. The `remember` fixture answers
/// `"<runs>:<held>:<previous body>"`: without the flag, one request after
/// another on the one pooled instance finds the previous one's body.
#[test]
fn serve_isolate_gives_every_request_a_fresh_instance() {
    for language in ["go", "rust"] {
        let file = fixture(language, "remember");
        let server = start(&[arg(&file)]);
        assert_eq!(post(server.addr, "first secret"), (200, "1:0:".to_string()), "{language}");
        assert_eq!(post(server.addr, "second"), (200, "2:0:first secret".to_string()), "{language}");
        let server = start(&[arg(&file), "--isolate"]);
        for body in ["first secret", "second secret", "third"] {
            assert_eq!(post(server.addr, body), (200, "1:0:".to_string()), "{language}");
        }
    }
}

#[test]
fn serve_refuses_a_file_that_is_not_a_scale_file() {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    crate::scale(["serve", arg(&manifest), "--listen", "127.0.0.1:0"]).expect_failure("not a .scale file");
}

#[test]
fn serve_limits_connections_and_slow_bodies() {
    let server = start(&["--max-connections", "1", "--body-min-rate", "64", "--body-rate-window", "1"]);
    let get = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // A client that sends a head announcing a body and then nothing holds
    // the one slot until the rate check cuts it off.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(request(server.addr, get).0, 503, "the slot is taken");
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    // The slot frees once the slow connection is closed.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while request(server.addr, get).0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}
