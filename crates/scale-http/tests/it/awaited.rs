//! Async downstreams (a tower service, an async closure): awaited through
//! `Instance::run_async` on tokio's current-thread and multi-thread runtimes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use scale_http::ScaleService;
use scale_runtime::{Context, HandlerError, Runtime};

use super::{fixture, get, runtime, send, start};

fn request(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder().uri(path).body(Full::new(Bytes::new())).unwrap()
}

/// 32 requests at once to an axum app behind a function, and to an async
/// closure, each awaiting a 1 ms tokio timer, on `tokio`.
fn serve_awaited_downstreams(tokio: tokio::runtime::Runtime) {
    use axum::routing::get as route_get;
    tokio.block_on(async {
        let app = axum::Router::new().route(
            "/hello",
            route_get(|| async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                "from axum"
            }),
        );
        let closure = |mut ctx: Context| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            ctx.response.set_body_string("from the closure");
            Ok(ctx)
        };
        for (service, expected) in [
            (ScaleService::new(runtime("rust", &["http-next"])).with_downstream(app), "from axum"),
            (ScaleService::new(runtime("go", &["next"])).with_async_handler(closure), "from the closure"),
        ] {
            assert!(!service.runs_inline());
            let (addr, _stop) = start(service).await;
            let requests: Vec<_> =
                (0..32).map(|_| tokio::spawn(async move { send(addr, &get("/hello", "")).await })).collect();
            for request in requests {
                let reply = request.await.unwrap();
                assert_eq!((reply.status, reply.text()), (200, expected));
            }
        }
    });
}

#[test]
fn awaited_downstreams_serve_on_a_current_thread_runtime() {
    serve_awaited_downstreams(tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap());
}

#[test]
fn awaited_downstreams_serve_on_a_multi_thread_runtime() {
    serve_awaited_downstreams(
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
    );
}

/// A request whose future is dropped while its downstream awaits (the client
/// left): the downstream's future is dropped, the guest is discarded, the
/// run's place is given back, and the service goes on.
#[tokio::test(flavor = "current_thread")]
async fn a_client_that_leaves_abandons_its_run() {
    let runtime = runtime("rust", &["next"]);
    let dropped = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&dropped);
    let service = ScaleService::new(runtime.clone()).max_runs(1).with_async_handler(move |mut ctx: Context| {
        let hang = ctx.request.uri == "/hang";
        let guard = DropFlag(Arc::clone(&seen));
        async move {
            let _guard = guard;
            if hang {
                std::future::pending::<()>().await;
            }
            ctx.response.set_body_string("answered");
            Ok::<_, HandlerError>(ctx)
        }
    });
    let discarded = runtime.pool_stats().discarded;
    let left = tokio::time::timeout(Duration::from_millis(100), service.handle(request("/hang"))).await;
    assert!(left.is_err(), "the hanging request is still waiting when the client leaves");
    assert!(dropped.load(Ordering::SeqCst), "the downstream's future is dropped");
    let started = Instant::now();
    while runtime.pool_stats().discarded == discarded && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(runtime.pool_stats().discarded, discarded + 1, "the guest stopped halfway is discarded");
    // The only place among `max_runs` came back with the guest.
    let response = tokio::time::timeout(Duration::from_secs(10), service.handle(request("/ok"))).await.unwrap();
    assert_eq!(response.status(), 200);
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The runtime's deadline ends a run whose downstream never answers: 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_ends_a_run_awaiting_its_downstream() {
    let runtime =
        Runtime::builder().deadline(Duration::from_millis(100)).function(fixture("rust", "next")).build().unwrap();
    let service = ScaleService::new(runtime.clone())
        .with_async_handler(|_ctx: Context| std::future::pending::<Result<Context, HandlerError>>());
    let response = tokio::time::timeout(Duration::from_secs(10), service.handle(request("/"))).await.unwrap();
    assert_eq!(response.status(), 504);
}
