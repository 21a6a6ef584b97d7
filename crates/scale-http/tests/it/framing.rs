//! Guests that try to frame their own responses. A function's headers must
//! never change where a response ends on the wire or what happens to the
//! connection: every exchange below runs over one raw keep-alive TCP
//! connection, and the bytes that come back must parse as exactly one
//! response per request.

use std::time::Duration;

use scale_http::{Dispatch, ScaleService};
use scale_runtime::{Runtime, ScaleFunc};
use scale_signature_http::{Context, Response, RunResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::start;

/// A complete HTTP response whose bytes a guest returns as its body: if
/// the guest's `content-length: 0` were sent, a client would read this as
/// the answer to its next request.
const SMUGGLED: &[u8] = b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 8\r\nX-Smuggled: yes\r\n\r\nsmuggled";

/// A hand-written guest whose `run` always answers with `response`: its
/// data segment holds the encoded `RunResult`, and `run` returns where it is.
pub(crate) fn guest_answering(response: Response) -> ScaleFunc {
    let mut context = Context::new();
    context.response = response;
    let output = RunResult::Context(context).encode_to_vec();
    let data: String = output.iter().map(|byte| format!("\\{byte:02x}")).collect();
    let packed = (16u64 << 32) | output.len() as u64;
    wat_guest(&format!(
        r#"(module
            (memory (export "memory") 4)
            (data (i32.const 16) "{data}")
            (func (export "scale_abi_version") (result i32) i32.const 1)
            (func (export "resize") (param i32) (result i32) i32.const 65536)
            (func (export "run") (param i32) (result i64) i64.const {packed})
        )"#
    ))
}

/// A hand-written guest that hands its context on with `next` and answers
/// with whatever comes back (up to 64 KiB).
fn guest_passing_on() -> ScaleFunc {
    wat_guest(
        r#"(module
            (import "env" "next" (func $next (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 4)
            (func (export "scale_abi_version") (result i32) i32.const 1)
            (func (export "resize") (param i32) (result i32) i32.const 65536)
            (func (export "run") (param $len i32) (result i64)
                (local $answer i32)
                (local.set $answer (call $next (i32.const 65536) (local.get $len) (i32.const 131072) (i32.const 65536)))
                (if (i32.le_s (local.get $answer) (i32.const 0)) (then unreachable))
                (i64.or (i64.const 0x2000000000000) (i64.extend_i32_u (local.get $answer))))
        )"#,
    )
}

fn wat_guest(wat: &str) -> ScaleFunc {
    let wasm = wat::parse_str(wat).unwrap_or_else(|err| panic!("bad test WAT: {err}\n{wat}"));
    let signature = scale_func::SignatureId::new("http", "v0.1.0").unwrap();
    ScaleFunc::new("wat", "test", signature, scale_func::Language::Rust, wasm).unwrap()
}

/// A response with `status`, `body` and the headers in `headers` (names as
/// a guest may spell them).
fn hostile(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut response = Response { status_code: status, ..Response::default() };
    response.set_body(body.to_vec());
    for (name, value) in headers {
        response.headers.append(name, *value);
    }
    response
}

/// Every header that frames a message or describes the connection, with
/// values that would break framing if they were sent.
const FRAMING_HEADERS: &[(&str, &str)] = &[
    ("Content-Length", "0"),
    ("Transfer-Encoding", "chunked"),
    ("Connection", "Upgrade, X-Hop"),
    ("Connection", "keep-alive"),
    ("Keep-Alive", "timeout=600"),
    ("Proxy-Connection", "keep-alive"),
    ("Upgrade", "h2c"),
    ("TE", "trailers"),
    ("Trailer", "x-checksum"),
    ("X-Hop", "named by connection"),
    ("X-Kept", "kept"),
];

/// One response as it came off the wire.
#[derive(Debug)]
pub(crate) struct WireResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl WireResponse {
    pub(crate) fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    pub(crate) fn values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

/// Parses the response at the start of `raw`, framed by its one
/// `Content-Length` as a client would frame it, and returns it with the
/// number of bytes it took; `None` while it is incomplete.
pub(crate) fn parse_response(raw: &[u8], head_request: bool) -> Option<(WireResponse, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(raw).expect("the server sends valid HTTP") {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return None,
    };
    let status = response.code.expect("a status");
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8(h.value.to_vec()).unwrap()))
        .collect();
    assert!(
        !headers.iter().any(|(name, _)| name == "transfer-encoding"),
        "the adapter's responses are length-framed: {headers:?}"
    );
    let lengths: Vec<usize> =
        headers.iter().filter(|(name, _)| name == "content-length").map(|(_, v)| v.parse().unwrap()).collect();
    let body_len = match (status, lengths.as_slice()) {
        (204 | 304, []) => 0,
        (_, [len]) => *len,
        (_, other) => panic!("expected exactly one content-length, got {other:?} in {headers:?}"),
    };
    let body_len = if head_request { 0 } else { body_len };
    let end = head_len + body_len;
    if raw.len() < end {
        return None;
    }
    Some((WireResponse { status, headers, body: raw[head_len..end].to_vec() }, end))
}

/// Sends `count` requests made by `request` one after another on one
/// connection, the last with `Connection: close`, reading each answer before
/// sending the next; then reads to the end. Returns the answers, and checks
/// that nothing follows the last one.
async fn one_connection(
    addr: std::net::SocketAddr,
    count: usize,
    request: impl Fn(bool) -> Vec<u8>,
) -> Vec<WireResponse> {
    let head_request = request(false).starts_with(b"HEAD ");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut raw = Vec::new();
    let mut answers = Vec::new();
    for index in 0..count {
        stream.write_all(&request(index + 1 == count)).await.unwrap();
        let answer = loop {
            if let Some((answer, used)) = parse_response(&raw, head_request) {
                raw.drain(..used);
                break answer;
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("request {index}: no complete answer in 10 s; got {raw:?}"))
                .unwrap();
            assert!(read > 0, "request {index}: the connection closed before a complete answer; got {raw:?}");
            raw.extend_from_slice(&chunk[..read]);
        };
        answers.push(answer);
    }
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    assert!(raw.is_empty(), "bytes after the last answer: {:?}", String::from_utf8_lossy(&raw));
    answers
}

fn get_request(last: bool) -> Vec<u8> {
    let connection = if last { "Connection: close\r\n" } else { "" };
    format!("GET / HTTP/1.1\r\nHost: test\r\n{connection}\r\n").into_bytes()
}

fn service_for(guest: ScaleFunc, dispatch: Dispatch) -> ScaleService {
    ScaleService::new(Runtime::new([guest]).unwrap()).dispatch(dispatch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_frame_its_response_or_smuggle_a_second_one() {
    for dispatch in [Dispatch::Inline, Dispatch::Blocking] {
        let guest = guest_answering(hostile(200, FRAMING_HEADERS, SMUGGLED));
        let (addr, _stop) = start(service_for(guest, dispatch)).await;
        let answers = one_connection(addr, 2, get_request).await;
        assert_eq!(answers.len(), 2);
        for (index, answer) in answers.iter().enumerate() {
            let what = format!("{dispatch:?}, request {index}");
            assert_eq!(answer.status, 200, "{what}");
            assert!(answer.body == SMUGGLED, "{what}: the guest's body, byte for byte: {answer:?}");
            assert_eq!(answer.values("content-length"), [SMUGGLED.len().to_string()], "{what}");
            for name in ["upgrade", "keep-alive", "proxy-connection", "te", "trailer", "x-hop", "x-smuggled"] {
                assert!(!answer.has(name), "{what}: {name} was sent: {answer:?}");
            }
            assert_eq!(answer.values("x-kept"), ["kept"], "{what}: other headers pass");
        }
        assert!(
            !answers[0].has("connection"),
            "{dispatch:?}: the guest's connection header was sent: {:?}",
            answers[0]
        );
    }
}

/// hyper asserts, in a debug build, that a `content-length` header matches
/// the body; a guest's wrong one must not reach that assertion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_content_length_cannot_panic_the_server_or_cut_the_body() {
    let body = b"the whole body, every byte of it".as_slice();
    for wrong in ["100000", "5", "-1", "not a number"] {
        let guest = guest_answering(hostile(200, &[("content-length", wrong)], body));
        let (addr, _stop) = start(service_for(guest, Dispatch::Auto)).await;
        let answers = one_connection(addr, 3, get_request).await;
        for answer in &answers {
            assert_eq!((answer.status, answer.body.as_slice()), (200, body), "content-length {wrong:?}");
            assert_eq!(answer.values("content-length"), [body.len().to_string()], "content-length {wrong:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informational_and_out_of_range_statuses_from_a_guest_become_500() {
    for status in [100, 101, 103, 600, 700, 999] {
        let headers = [("Connection", "upgrade"), ("Upgrade", "websocket")];
        let guest = guest_answering(hostile(status, &headers, SMUGGLED));
        let (addr, _stop) = start(service_for(guest, Dispatch::Auto)).await;
        let answers = one_connection(addr, 2, get_request).await;
        for answer in &answers {
            assert_eq!(answer.status, 500, "status {status}");
            assert!(!answer.has("upgrade"), "status {status}: {answer:?}");
            assert!(!answer.body.windows(8).any(|w| w == b"smuggled"), "status {status}: {answer:?}");
        }
    }
}

/// `204`, `304` and answers to `HEAD` carry no body on the wire, whatever
/// body the guest gave: the next answer on the connection starts right
/// after the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_where_none_is_allowed_is_not_sent() {
    for status in [204, 304] {
        let guest = guest_answering(hostile(status, &[("content-length", "0")], SMUGGLED));
        let (addr, _stop) = start(service_for(guest, Dispatch::Auto)).await;
        for answer in one_connection(addr, 2, get_request).await {
            assert_eq!((answer.status, answer.body.len()), (status, 0), "{answer:?}");
        }
    }
    let guest = guest_answering(hostile(200, &[("content-length", "0")], SMUGGLED));
    let (addr, _stop) = start(service_for(guest, Dispatch::Auto)).await;
    let head = |last: bool| {
        let connection = if last { "Connection: close\r\n" } else { "" };
        format!("HEAD / HTTP/1.1\r\nHost: test\r\n{connection}\r\n").into_bytes()
    };
    for answer in one_connection(addr, 2, head).await {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.values("content-length"),
            [SMUGGLED.len().to_string()],
            "HEAD tells the length it would send"
        );
    }
}

/// A downstream's answer travels back up through the guests before it is
/// sent: its framing headers are dropped at the same place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_cannot_frame_the_response_either() {
    let handler = ScaleService::new(Runtime::new([guest_passing_on()]).unwrap()).with_handler(|ctx| {
        ctx.response.set_body(SMUGGLED.to_vec());
        for (name, value) in FRAMING_HEADERS {
            ctx.response.headers.append(name, *value);
        }
        Ok(())
    });
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async {
            let mut response = http::Response::new(axum::body::Body::from(SMUGGLED));
            for (name, value) in FRAMING_HEADERS {
                let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
                response.headers_mut().append(name, http::HeaderValue::from_static(value));
            }
            response
        }),
    );
    let tower = ScaleService::new(Runtime::new([guest_passing_on()]).unwrap()).with_downstream(app);
    for (what, service) in [("handler", handler), ("tower service", tower)] {
        let (addr, _stop) = start(service).await;
        for answer in one_connection(addr, 2, get_request).await {
            assert_eq!(answer.status, 200, "{what}");
            assert!(answer.body == SMUGGLED, "{what}: {answer:?}");
            assert!(!answer.has("upgrade") && !answer.has("x-hop"), "{what}: {answer:?}");
        }
    }
}
