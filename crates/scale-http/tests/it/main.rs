//! End-to-end tests: a real server on a loopback port, real HTTP/1.1 bytes.

mod awaited;
mod framing;
mod reliability;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use scale_http::{Dispatch, ScaleService, ServeOptions, serve, serve_with};
use scale_runtime::{Runtime, ScaleFunc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn fixture(lang: &str, name: &str) -> ScaleFunc {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/fixtures/{lang}/{name}.scale"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|err| panic!("{}: {err}: run `cargo xtask fixtures` first", path.display()));
    ScaleFunc::decode(&bytes).unwrap()
}

fn runtime(lang: &str, names: &[&str]) -> Runtime {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-module-cache");
    Runtime::builder().cache_dir(target).functions(names.iter().map(|name| fixture(lang, name))).build().unwrap()
}

/// A server for `service` on an ephemeral loopback port, stopped when the
/// returned sender is dropped.
async fn start(service: ScaleService) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    start_with(service, ServeOptions::default()).await
}

/// [`start`], with `options`.
async fn start_with(
    service: ScaleService,
    options: ServeOptions,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        serve_with(listener, service, options, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop)
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Sends raw request bytes on a fresh connection and reads the whole reply.
async fn send(addr: std::net::SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    Reply { status, headers, body: raw[split + 4..].to_vec() }
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n").into_bytes()
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len())
            .into_bytes();
    request.extend_from_slice(body);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_answer_real_requests_in_both_languages() {
    for lang in ["go", "rust"] {
        let (addr, _stop) = start(ScaleService::new(runtime(lang, &["http-handler"]))).await;
        let reply = send(addr, &get("/", "")).await;
        assert_eq!(reply.status, 200, "{lang}");
        assert_eq!(reply.text(), "-modified", "{lang}");

        let (addr, _stop) = start(ScaleService::new(runtime(lang, &["headers"]))).await;
        let reply = send(addr, &get("/", "X-Test-Header: hello\r\n")).await;
        assert_eq!(reply.header("x-response"), ["hello"], "{lang}");
        assert_eq!(reply.header("x-multi"), ["a", "b"], "{lang}: multi-valued headers keep every value");

        let (addr, _stop) = start(ScaleService::new(runtime(lang, &["status"]))).await;
        assert_eq!(send(addr, &get("/", "")).await.status, 201, "{lang}");

        let body: Vec<u8> = (0..200_000).map(|i| (i % 251) as u8).collect();
        let (addr, _stop) = start(ScaleService::new(runtime(lang, &["large-body"]))).await;
        let reply = send(addr, &post("/echo", &body)).await;
        assert_eq!(reply.status, 200, "{lang}");
        assert!(reply.body == body, "{lang}: the body round-trips");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_413_and_the_server_keeps_serving() {
    let service = ScaleService::new(runtime("rust", &["large-body"])).body_limit(1024);
    let (addr, _stop) = start(service).await;
    assert_eq!(send(addr, &post("/", &[b'x'; 2048])).await.status, 413);
    // Announced length within the limit, but more bytes follow in chunks.
    let chunked = b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
        400\r\n"
        .to_vec();
    let mut request = chunked;
    request.extend_from_slice(&[b'y'; 1024]);
    request.extend_from_slice(b"\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n");
    assert_eq!(send(addr, &request).await.status, 413);
    assert_eq!(send(addr, &post("/", &[b'z'; 512])).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_error_is_a_generic_500() {
    for lang in ["go", "rust"] {
        let (addr, _stop) = start(ScaleService::new(runtime(lang, &["error"]))).await;
        let reply = send(addr, &get("/", "")).await;
        assert_eq!(reply.status, 500, "{lang}");
        assert!(!reply.text().contains("guest error"), "{lang}: details never reach the client");
        let (addr, _stop) = start(ScaleService::new(runtime(lang, &["panic"]))).await;
        assert_eq!(send(addr, &get("/", "")).await.status, 500, "{lang}");
        assert_eq!(send(addr, &get("/", "")).await.status, 500, "{lang}: still serving after a panic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_gets_400() {
    let (addr, _stop) = start(ScaleService::new(runtime("rust", &["passthrough"]))).await;
    let reply = send(addr, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Bin: \xff\xfe\r\n\r\n").await;
    assert_eq!(reply.status, 400);
    let reply = send(addr, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert_eq!(reply.status, 400);
    assert_eq!(send(addr, &get("/", "")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_sees_the_client_address_and_its_errors_are_502() {
    let service = ScaleService::new(runtime("rust", &["next"])).with_handler(|ctx| {
        if ctx.request.uri == "/fail" {
            return Err("downstream broke".into());
        }
        let ip = ctx.request.ip.clone();
        ctx.response.set_body_string(format!("hello {ip}"));
        Ok(())
    });
    let (addr, _stop) = start(service).await;
    assert_eq!(send(addr, &get("/", "")).await.text(), "hello 127.0.0.1");
    let reply = send(addr, &get("/fail", "")).await;
    assert_eq!(reply.status, 502);
    assert!(!reply.text().contains("downstream broke"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_acts_as_middleware_in_front_of_an_axum_app() {
    use axum::routing::get as route_get;
    let app = axum::Router::new().route("/hello", route_get(|| async { "from axum" }));
    for lang in ["go", "rust"] {
        let service = ScaleService::new(runtime(lang, &["http-next"])).with_downstream(app.clone());
        let (addr, _stop) = start(service).await;
        let reply = send(addr, &get("/hello", "")).await;
        assert_eq!(reply.status, 200, "{lang}");
        assert_eq!(reply.text(), "from axum", "{lang}");
        assert_eq!(send(addr, &get("/missing", "")).await.status, 404, "{lang}: the app's own status comes back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_exceeded_are_503() {
    let runtime = Runtime::builder().cpu_budget(20_000_000).function(fixture("rust", "loop")).build().unwrap();
    let (addr, _stop) = start(ScaleService::new(runtime)).await;
    assert_eq!(send(addr, &get("/", "")).await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let service = ScaleService::new(runtime("rust", &["next"])).with_handler(|ctx| {
        std::thread::sleep(Duration::from_millis(300));
        ctx.response.set_body_string("finished");
        Ok(())
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, service, async {
        let _ = stopped.await;
    }));
    let request = get("/", "");
    let in_flight = tokio::spawn(async move { send(addr, &request).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    assert_eq!(in_flight.await.unwrap().text(), "finished");
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

/// Where a run happens: inline on the thread polling the request, or on the
/// blocking pool; `Auto` is inline exactly when the runtime has a CPU budget.
#[tokio::test(flavor = "current_thread")]
async fn dispatch_decides_which_thread_runs_the_chain() {
    use std::sync::Mutex;

    let here = std::thread::current().id();
    let budgeted = || Runtime::builder().cpu_budget(50_000_000).function(fixture("rust", "next")).build().unwrap();
    let unbudgeted = || runtime("rust", &["next"]);
    let cases = [
        (Dispatch::Auto, budgeted(), true),
        (Dispatch::Auto, unbudgeted(), false),
        (Dispatch::Inline, unbudgeted(), true),
        (Dispatch::Blocking, budgeted(), false),
    ];
    for (dispatch, runtime, inline) in cases {
        let seen = Arc::new(Mutex::new(None));
        let record = Arc::clone(&seen);
        let service = ScaleService::new(runtime).dispatch(dispatch).with_handler(move |ctx| {
            *record.lock().unwrap() = Some(std::thread::current().id());
            ctx.response.set_body_string("handled");
            Ok(())
        });
        assert_eq!(service.runs_inline(), inline, "{dispatch:?}");
        let request = http::Request::new(http_body_util::Full::new(bytes::Bytes::new()));
        let response = service.handle(request).await;
        assert_eq!(response.status(), 200, "{dispatch:?}");
        let ran_here = seen.lock().unwrap().expect("the handler ran") == here;
        assert_eq!(ran_here, inline, "{dispatch:?}: ran on the request's thread");
    }
}

/// A tower downstream is awaited through `Instance::run_async`, whose chain
/// runs on a runner thread of the runtime: such a service never runs inline.
#[test]
fn a_tower_downstream_never_runs_inline() {
    let app = axum::Router::new();
    let service =
        ScaleService::new(runtime("rust", &["http-next"])).dispatch(scale_http::Dispatch::Inline).with_downstream(app);
    assert!(!service.runs_inline());
}

/// A tower service that is not ready the first time it is asked: `serve`
/// then waits for it the usual way (its first look uses a waker that is
/// never woken), and later requests on the same connection find it ready.
#[derive(Clone, Default)]
struct ReadyOnSecondPoll {
    polled: bool,
}

impl tower::Service<http::Request<hyper::body::Incoming>> for ReadyOnSecondPoll {
    type Response = http::Response<http_body_util::Full<bytes::Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        if self.polled {
            return std::task::Poll::Ready(Ok(()));
        }
        self.polled = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let peer = request.extensions().get::<scale_http::RemoteAddr>().map(|addr| addr.0.ip().to_string());
        let body = format!("ready for {}\n", peer.as_deref().unwrap_or("nobody"));
        std::future::ready(Ok(http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_a_service_that_is_not_ready_yet() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, ReadyOnSecondPoll::default(), async {
        let _ = stopped.await;
    }));
    // Two requests on one connection: the first finds the service not
    // ready, the second finds it ready.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\nGET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8(raw).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert_eq!(text.matches("ready for 127.0.0.1\n").count(), 2, "{text}");
    drop(stop);
    server.await.unwrap().unwrap();
}

/// Eight requests at once never have more chains running than `max_runs`
/// (2 on the blocking pool, 1 inline on two workers), and every one of
/// them is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_chains_run_at_once_than_max_runs() {
    for (dispatch, max_runs) in [(Dispatch::Blocking, 2), (Dispatch::Inline, 1)] {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (now, seen) = (Arc::clone(&running), Arc::clone(&most));
        let service = ScaleService::new(runtime("rust", &["next"])).dispatch(dispatch).max_runs(max_runs).with_handler(
            move |ctx| {
                let at_once = now.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                seen.fetch_max(at_once, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
                now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                ctx.response.set_body_string("ran");
                Ok(())
            },
        );
        let (addr, _stop) = start(service).await;
        let requests: Vec<_> = (0..8).map(|_| tokio::spawn(async move { send(addr, &get("/", "")).await })).collect();
        for request in requests {
            let reply = request.await.unwrap();
            assert_eq!((reply.status, reply.text()), (200, "ran"), "{dispatch:?}");
        }
        let most = most.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=max_runs).contains(&most), "{dispatch:?}: {most} chains ran at once");
    }
}

/// Every answer whose request reached the chain carries a `RunReport` saying
/// how the run went; answers to requests that never reached it carry none.
#[tokio::test]
async fn responses_report_their_runs() {
    use scale_http::{FailureKind, RunReport};
    let handle = |service: &ScaleService, body: &'static str| {
        let service = service.clone();
        async move {
            let request = http::Request::builder()
                .method("POST")
                .uri("/")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes())));
            service.handle(request.unwrap()).await
        }
    };
    let ok = ScaleService::new(runtime("rust", &["modify"]));
    let response = handle(&ok, "").await;
    let report = response.extensions().get::<RunReport>().expect("a report");
    assert_eq!(report.failure, None);
    let failing = ScaleService::new(runtime("go", &["error"]));
    let response = handle(&failing, "").await;
    assert_eq!(response.status(), 500);
    let failure = response.extensions().get::<RunReport>().and_then(|r| r.failure.clone()).expect("a failure");
    assert_eq!((failure.kind, failure.function.as_deref()), (FailureKind::Guest, Some("error")));
    let small = ScaleService::new(runtime("rust", &["modify"])).body_limit(4);
    let response = handle(&small, "too long").await;
    assert_eq!(response.status(), 413);
    assert!(response.extensions().get::<RunReport>().is_none(), "a request that never ran has no report");
}
