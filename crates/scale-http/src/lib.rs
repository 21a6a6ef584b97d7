//! Serve Scale Functions over HTTP.
//!
//! [`ScaleService`] is a tower `Service<http::Request<B>>`: it turns each
//! request into a [`Context`](scale_runtime::Context), runs the function
//! chain on a pooled instance, and answers with the response the chain built.
//! [`serve`] runs it on a TCP listener with hyper 1 and graceful shutdown
//! ([`serve_with`] takes [`ServeOptions`]: the header read timeout and the
//! connection limit).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use scale_http::ScaleService;
//! use scale_runtime::{Runtime, ScaleFunc};
//!
//! let runtime = Runtime::new([ScaleFunc::decode(&std::fs::read("hello.scale")?)?])?;
//! let service = ScaleService::new(runtime);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! scale_http::serve(listener, service, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! # Middleware
//!
//! A downstream handler becomes the chain's native handler: when the last
//! function calls `next`, the request (as the functions left it) goes to the
//! downstream, and its response comes back up the chain. The downstream is a
//! closure ([`ScaleService::with_handler`]) or any tower service, such as an
//! axum `Router` ([`ScaleService::with_downstream`]). So a function can check,
//! rewrite or short-circuit requests in front of an existing app. An async
//! closure works too ([`ScaleService::with_async_handler`]): both it and a
//! tower service are awaited without blocking a thread of tokio's.
//!
//! # Status codes
//!
//! | what happened | status |
//! | --- | --- |
//! | the chain succeeded | the chain's status (200 unless a function set another) |
//! | body larger than the limit (default 10 MiB) | 413 |
//! | body slower than the minimum rate (default 1 KiB per 5 s) or not complete within the body timeout (default 60 s) | 408, and the connection is closed |
//! | unreadable body, or a header value that is not UTF-8 | 400 |
//! | a function failed, panicked, trapped or broke the ABI | 500 |
//! | a function hit its memory limit or CPU budget, or no instance could be made | 503 |
//! | the run passed its deadline | 504 |
//! | the downstream handler or service failed | 502 |
//! | the chain produced a response that is not valid HTTP (status outside 100–999, bad header) | 500 |
//! | the chain answered with a status that cannot end a response: informational (1xx, `101 Switching Protocols` included), or 600 and up | 500 |
//!
//! Error bodies are generic ("Internal Server Error"); the details go to
//! `tracing` at `error` level, never to the client.
//!
//! Each answer whose request reached the chain carries a [`RunReport`]
//! response extension (how long the run took, and if it failed, the
//! [`FailureKind`] and the function): servers read it for metrics and logs;
//! clients never see it.
//!
//! # Framing
//!
//! The adapter decides how a response is framed, never the function: the
//! headers `content-length`, `transfer-encoding`, `connection` (and every
//! header its value names), `keep-alive`, `proxy-connection`, `te`,
//! `trailer` and `upgrade` are dropped from the chain's response (logged at
//! `debug`), and hyper sets the length from the body. A function's wrong
//! `content-length` therefore cannot cut a body short, make the rest of it
//! pass for the next response on a keep-alive connection, or close or upgrade
//! the connection. For `204`, `304` and answers to `HEAD`, hyper sends no body.
//!
//! # Threads
//!
//! Running a function is CPU work, and the reactor must not be blocked by a
//! long run. Where each run happens is the service's [`Dispatch`]:
//!
//! - [`Dispatch::Inline`] runs the chain on the tokio worker that polls the
//!   request, with no hand-off. This is the fast path: a short run takes
//!   less time than moving it to another thread and back would
//!   (`docs/benchmarks.md`, *Dispatch modes*).
//!   It is only safe when something bounds a run, which is what the runtime's
//!   CPU budget ([`scale_runtime::RuntimeBuilder::cpu_budget`]) does.
//! - [`Dispatch::Blocking`] runs each chain on tokio's blocking pool
//!   (`spawn_blocking`): a slow function delays only its own response, at the
//!   price of two thread hand-offs per request.
//! - [`Dispatch::Auto`] (the default) runs inline when the runtime has a
//!   CPU budget or a deadline, as long as one tokio worker is left free of
//!   runs: the runs beyond that go to the blocking pool. Requests whose runs
//!   take long (hostile or not) then hold at most all workers but one, and
//!   the last keeps accepting connections, reading requests and writing
//!   responses. A worker with nothing to do sleeps, and only a sleeping
//!   worker polls sockets and timers; so when a run has gone on inline for
//!   a millisecond, a watch thread wakes an idle worker, which then polls
//!   them while the run lasts. Without a budget or a deadline, `Auto` is
//!   `Blocking`.
//!
//! Inline, a request without a body is answered inside the service's
//! `call`, which then returns a ready future: tower middleware around a
//! `ScaleService` that times the future (a `Timeout`, say) does not cover
//! such runs; the CPU budget and the deadline bound them.
//!
//! At most [`ScaleService::max_runs`] chains run at once (default
//! [`DEFAULT_MAX_RUNS`]); requests beyond wait for a place, which bounds
//! the guest memory that runs hold.
//!
//! With an async downstream (a tower service,
//! [`ScaleService::with_downstream`], or [`ScaleService::with_async_handler`])
//! the dispatch does not apply: each run goes through
//! [`Instance::run_async`](scale_runtime::Instance::run_async). The chain
//! runs on one of the runtime's runner threads, and the downstream's future
//! is polled by the task serving the request, on a tokio worker, so no
//! thread of tokio's waits for it; the runner sleeps meanwhile. The run
//! holds its place among the `max_runs` until its guests are released. A
//! client that leaves (the request's future dropped) abandons its run: the
//! downstream's future is dropped, the guests stop at once and are
//! discarded.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use scale_runtime::{Error, HandlerError, Runtime};
use scale_signature_http::{Context, Response};
use tower::ServiceExt;

use crate::inline::{InlineRun, InlineRuns};

mod framing;
mod inline;
mod pace;
mod report;

pub use pace::{DEFAULT_BODY_MIN_BYTES, DEFAULT_BODY_RATE_WINDOW, DEFAULT_BODY_TIMEOUT, MinRate};
pub use report::{FailureKind, RunFailure, RunReport};

/// The default largest request body: 10 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 10 << 20;

/// The default number of function chains a [`ScaleService`] runs at once.
/// Each run holds one guest instance per function of the chain, each up to
/// the runtime's memory limit: 64 runs of a one-function chain under the
/// default 64 MiB limit use at most 4 GiB of guest memory.
pub const DEFAULT_MAX_RUNS: usize = 64;

/// The boxed error of a tower service: what the errors of a downstream
/// service and of a request body are turned into.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The client's address, as [`serve`] puts it in each request's extensions.
/// Servers of your own can insert it too; the adapter copies it into the
/// context's `request.ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// A native handler shared by every run.
type SharedHandler = Arc<dyn Fn(&mut Context) -> Result<(), HandlerError> + Send + Sync>;

/// An async native handler shared by every run.
type SharedAsyncHandler = Arc<dyn Fn(Context) -> BoxFuture<Result<Context, HandlerError>> + Send + Sync>;

/// A downstream service, as a call from a collected request to a collected response.
type SharedService =
    Arc<dyn Fn(http::Request<Bytes>) -> BoxFuture<Result<http::Response<Bytes>, BoxError>> + Send + Sync>;

/// What runs when the last function calls `next`: the chain's native handler.
#[derive(Clone)]
enum ChainEnd {
    /// Nothing: `next` gives the context back unchanged.
    None,
    /// A closure on the context ([`ScaleService::with_handler`]).
    Handler(SharedHandler),
    /// An async closure on the context ([`ScaleService::with_async_handler`]).
    AsyncHandler(SharedAsyncHandler),
    /// A tower service ([`ScaleService::with_downstream`]).
    Service(SharedService),
}

impl ChainEnd {
    /// Whether it is awaited: then runs go through `Instance::run_async`.
    fn is_async(&self) -> bool {
        matches!(self, ChainEnd::AsyncHandler(_) | ChainEnd::Service(_))
    }
}

/// Where a [`ScaleService`] runs each function chain (see [the crate docs](crate#threads)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dispatch {
    /// Inline when the runtime has a CPU budget or a deadline, while a
    /// worker stays free of runs; otherwise on the blocking pool.
    #[default]
    Auto,
    /// On the tokio worker handling the request. Use it only when runs are
    /// bounded (a CPU budget) and short.
    Inline,
    /// On tokio's blocking pool.
    Blocking,
}

/// A tower service that runs a Scale function chain for each HTTP request.
///
/// Cheap to clone (everything inside is shared).
#[derive(Clone)]
pub struct ScaleService {
    runtime: Runtime,
    body_limit: usize,
    body_pace: pace::Pace,
    end: ChainEnd,
    dispatch: Dispatch,
    inline: Arc<InlineRuns>,
    /// A place for each run that may go on at once.
    runs: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for ScaleService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaleService")
            .field("runtime", &self.runtime)
            .field("body_limit", &self.body_limit)
            .field("body_timeout", &self.body_pace.total)
            .field("body_min_rate", &self.body_pace.min_rate)
            .field("dispatch", &self.dispatch)
            .field("runs_available", &self.runs.available_permits())
            .finish_non_exhaustive()
    }
}

impl ScaleService {
    /// A service running `runtime`'s chain, with no downstream: when the last
    /// function calls `next`, the context comes back unchanged.
    pub fn new(runtime: Runtime) -> Self {
        Self {
            runtime,
            body_limit: DEFAULT_BODY_LIMIT,
            body_pace: pace::Pace { total: Some(DEFAULT_BODY_TIMEOUT), min_rate: Some(MinRate::default()) },
            end: ChainEnd::None,
            dispatch: Dispatch::Auto,
            inline: Arc::default(),
            runs: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_RUNS)),
        }
    }

    /// The most function chains this service (and its clones) runs at once
    /// (default [`DEFAULT_MAX_RUNS`], at least 1). Requests beyond wait for
    /// a run to end, their connections open: this bounds the guest memory
    /// runs hold, at most this many times the memory limit per function of
    /// the chain.
    pub fn max_runs(mut self, runs: usize) -> Self {
        self.runs = Arc::new(tokio::sync::Semaphore::new(runs.clamp(1, tokio::sync::Semaphore::MAX_PERMITS)));
        self
    }

    /// Where runs happen: on the request's tokio worker, or on the blocking
    /// pool (see [the crate docs](crate#threads)). The default is [`Dispatch::Auto`].
    pub fn dispatch(mut self, dispatch: Dispatch) -> Self {
        self.dispatch = dispatch;
        self
    }

    /// The runtime whose chain this service runs.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Whether runs happen on the request's tokio worker, with this service's
    /// settings and runtime.
    pub fn runs_inline(&self) -> bool {
        if self.end.is_async() {
            return false;
        }
        match self.dispatch {
            Dispatch::Auto => self.runtime.cpu_budget().is_some() || self.runtime.deadline().is_some(),
            Dispatch::Inline => true,
            Dispatch::Blocking => false,
        }
    }

    /// The largest request body accepted, in bytes; larger ones get 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The longest a request body may take to arrive, from the first moment
    /// the service waits for it (default [`DEFAULT_BODY_TIMEOUT`]); `None`
    /// waits for as long as the body takes. A body still incomplete then gets
    /// 408 Request Timeout, and the connection is closed.
    pub fn body_timeout(mut self, total: impl Into<Option<Duration>>) -> Self {
        self.body_pace.total = total.into();
        self
    }

    /// The slowest a request body may arrive: at least `rate.bytes` in every
    /// `rate.window` while the service waits for it (default 1 KiB per 5 s,
    /// [`MinRate::default`]); `None` accepts any rate. A slower body gets 408
    /// Request Timeout, and the connection is closed. This cuts off a client
    /// that trickles its body long before [`body_timeout`](Self::body_timeout)
    /// would.
    pub fn body_min_rate(mut self, rate: impl Into<Option<MinRate>>) -> Self {
        self.body_pace.min_rate = rate.into();
        self
    }

    /// Runs `handler` as the chain's native handler.
    pub fn with_handler<F>(mut self, handler: F) -> Self
    where
        F: Fn(&mut Context) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.end = ChainEnd::Handler(Arc::new(handler));
        self
    }

    /// Runs `handler` as the chain's native handler, awaited: it takes the
    /// context (the request as the functions left it) and gives it back with
    /// the response set. Runs then go through
    /// [`Instance::run_async`](scale_runtime::Instance::run_async): the
    /// handler's future is polled on the task serving the request, and no
    /// tokio thread waits for it (see [the crate docs](crate#threads)).
    ///
    /// ```no_run
    /// # fn example(runtime: scale_runtime::Runtime) {
    /// let service = scale_http::ScaleService::new(runtime).with_async_handler(|mut ctx| async move {
    ///     tokio::time::sleep(std::time::Duration::from_millis(1)).await; // a database, say
    ///     ctx.response.set_body_string("from the handler");
    ///     Ok(ctx)
    /// });
    /// # }
    /// ```
    pub fn with_async_handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Context, HandlerError>> + Send + 'static,
    {
        self.end = ChainEnd::AsyncHandler(Arc::new(move |ctx| Box::pin(handler(ctx))));
        self
    }

    /// Sends the request on to `service` (an axum `Router`, for example) when
    /// the last function calls `next`, and hands its response back up the
    /// chain. The service is awaited as an async handler
    /// ([`with_async_handler`](Self::with_async_handler)).
    ///
    /// ```no_run
    /// # fn example(runtime: scale_runtime::Runtime) {
    /// use axum::routing::get;
    ///
    /// // The functions run first; a `next` from the last one reaches the router.
    /// let app = axum::Router::new().route("/hello", get(|| async { "Hello from axum\n" }));
    /// let service = scale_http::ScaleService::new(runtime).with_downstream(app);
    /// # }
    /// ```
    pub fn with_downstream<S, ResBody>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<ResBody>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let call = move |request: http::Request<Bytes>| -> BoxFuture<Result<http::Response<Bytes>, BoxError>> {
            let service = service.clone();
            Box::pin(async move {
                let response = service.oneshot(request.map(Full::new)).await.map_err(Into::into)?;
                let (parts, body) = response.into_parts();
                let body = body.collect().await.map_err(Into::into)?.to_bytes();
                Ok(http::Response::from_parts(parts, body))
            })
        };
        self.end = ChainEnd::Service(Arc::new(call));
        self
    }

    /// Handles one request (what `call` does).
    pub async fn handle<B>(&self, request: http::Request<B>) -> http::Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        if content_length(&parts.headers).is_some_and(|len| len > self.body_limit as u64) {
            return plain_response(http::StatusCode::PAYLOAD_TOO_LARGE);
        }
        let body = match Limited::new(pace::Paced::new(body, self.body_pace), self.body_limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
                return plain_response(http::StatusCode::PAYLOAD_TOO_LARGE);
            }
            Err(err) if err.downcast_ref::<pace::BodyTimeout>().is_some() => {
                tracing::debug!(error = %err, "the request body arrived too slowly");
                let mut response = plain_response(http::StatusCode::REQUEST_TIMEOUT);
                response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                return response;
            }
            Err(err) => {
                tracing::debug!(error = %err, "reading the request body failed");
                return plain_response(http::StatusCode::BAD_REQUEST);
            }
        };
        // The semaphore is never closed.
        let Ok(place) = Arc::clone(&self.runs).acquire_owned().await else {
            return plain_response(http::StatusCode::SERVICE_UNAVAILABLE);
        };
        if let Some(_run) = self.inline_run() {
            return self.respond_inline(&parts, body);
        }
        let remote = parts.extensions.get::<RemoteAddr>().copied();
        if self.end.is_async() {
            return run_chain_async(&self.runtime, &self.end, place, &parts, body, remote).await;
        }
        let runtime = self.runtime.clone();
        let end = self.end.clone();
        // The place goes with the run: a client that leaves does not end it.
        let run = move || {
            let response = run_chain(&runtime, &end, &parts, body, remote);
            drop(place);
            response
        };
        match tokio::task::spawn_blocking(run).await {
            Ok(response) => response,
            Err(join) => {
                tracing::error!(error = %join, "the run's thread failed");
                plain_response(http::StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// Leave to run a chain inline now, if this service runs inline and,
    /// under [`Dispatch::Auto`], a worker stays free of runs.
    fn inline_run(&self) -> Option<InlineRun<'_>> {
        if !self.runs_inline() {
            return None;
        }
        match self.dispatch {
            Dispatch::Auto => self.inline.enter(),
            Dispatch::Inline | Dispatch::Blocking => Some(InlineRun::uncounted()),
        }
    }

    /// Answers a request whose body has been read, running the chain on
    /// this thread.
    fn respond_inline(&self, parts: &http::request::Parts, body: Bytes) -> http::Response<Full<Bytes>> {
        let remote = parts.extensions.get::<RemoteAddr>().copied();
        run_chain(&self.runtime, &self.end, parts, body, remote)
    }
}

/// Runs the chain once on the request `parts` and `body` describe, on the
/// current thread, and answers. The downstream is not an async one.
///
/// The request is written into the instance's own context, whose strings
/// and header entries are kept from its earlier runs, and the response is
/// read from there: a warm instance allocates little for either.
fn run_chain(
    runtime: &Runtime,
    end: &ChainEnd,
    parts: &http::request::Parts,
    body: Bytes,
    remote: Option<RemoteAddr>,
) -> http::Response<Full<Bytes>> {
    let started = Instant::now();
    let mut instance = match prepare(runtime, end, None, parts, body, remote) {
        Ok(instance) => instance,
        Err(refused) => return refused.answer(started),
    };
    let result = instance.run();
    respond(&mut instance, result, started)
}

/// [`run_chain`] through `Instance::run_async`, for an async downstream:
/// the chain runs on a runner thread of the runtime, and the downstream's
/// future is polled here. `place` is held by the run's handlers, so it is
/// given back when the run's guests are, even when the client leaves and
/// the run is abandoned (this future dropped).
async fn run_chain_async(
    runtime: &Runtime,
    end: &ChainEnd,
    place: tokio::sync::OwnedSemaphorePermit,
    parts: &http::request::Parts,
    body: Bytes,
    remote: Option<RemoteAddr>,
) -> http::Response<Full<Bytes>> {
    let started = Instant::now();
    let mut instance = match prepare(runtime, end, Some(place), parts, body, remote) {
        Ok(instance) => instance,
        Err(refused) => return refused.answer(started),
    };
    let result = instance.run_async().await;
    respond(&mut instance, result, started)
}

/// Why [`prepare`] made no instance.
enum Refused {
    /// The request cannot be handed to a function (400); the chain never ran.
    Unhandable,
    /// No instance could be made: the run failed before it started.
    NoInstance(Error),
}

impl Refused {
    fn answer(self, started: Instant) -> http::Response<Full<Bytes>> {
        match self {
            Refused::Unhandable => plain_response(http::StatusCode::BAD_REQUEST),
            Refused::NoInstance(err) => reported(chain_failed(&err), started, Some(RunFailure::of(&err))),
        }
    }
}

/// `response`, with the [`RunReport`] of a run that started at `started`.
fn reported(
    mut response: http::Response<Full<Bytes>>,
    started: Instant,
    failure: Option<RunFailure>,
) -> http::Response<Full<Bytes>> {
    response.extensions_mut().insert(RunReport { duration: started.elapsed(), failure });
    response
}

/// An instance with `downstream` as its handler and the request in its
/// context, or the status answering a request a function cannot be handed. An
/// async downstream's handler holds `place` (see [`run_chain_async`]).
fn prepare(
    runtime: &Runtime,
    end: &ChainEnd,
    place: Option<tokio::sync::OwnedSemaphorePermit>,
    parts: &http::request::Parts,
    body: Bytes,
    remote: Option<RemoteAddr>,
) -> Result<scale_runtime::Instance, Refused> {
    let mut instance = runtime.instance().map_err(Refused::NoInstance)?;
    match end {
        ChainEnd::None => {}
        ChainEnd::Handler(handler) => {
            let handler = Arc::clone(handler);
            instance = instance.with_handler(move |ctx| handler(ctx));
        }
        ChainEnd::AsyncHandler(handler) => {
            let handler = Arc::clone(handler);
            instance = instance.with_async_handler(move |ctx| {
                let _place = &place;
                handler(ctx)
            });
        }
        ChainEnd::Service(call) => {
            let call = Arc::clone(call);
            instance = instance.with_async_handler(move |mut ctx: Context| {
                let _place = &place;
                let call = Arc::clone(&call);
                async move {
                    let request = http::Request::<Bytes>::try_from(ctx.request.clone()).map_err(HandlerError::new)?;
                    let response = call(request).await.map_err(HandlerError::new)?;
                    ctx.response = Response::try_from(response).map_err(HandlerError::new)?;
                    Ok(ctx)
                }
            });
        }
    }
    let request = &mut instance.context_mut().request;
    if let Err(err) = request.fill_from_http(parts, body) {
        tracing::debug!(error = %err, "request cannot be handed to a function");
        return Err(Refused::Unhandable);
    }
    if let Some(RemoteAddr(addr)) = remote {
        push_ip(&mut request.ip, addr.ip());
    }
    Ok(instance)
}

/// The answer to a run that ended with `result`.
///
/// Every function's answer, and a downstream's answer that came back up the
/// chain, becomes an HTTP response here and nowhere else; so this is where
/// the headers that would let it choose its own framing are dropped
/// ([`framing`]).
fn respond(
    instance: &mut scale_runtime::Instance,
    result: Result<(), Error>,
    started: Instant,
) -> http::Response<Full<Bytes>> {
    if let Err(err) = result {
        return reported(chain_failed(&err), started, Some(RunFailure::of(&err)));
    }
    let invalid = Some(RunFailure { kind: FailureKind::InvalidResponse, function: None });
    let response = &instance.context().response;
    let body = response.body.clone();
    match http::Response::<Bytes>::try_from(response) {
        Ok(mut response) if framing::is_final(response.status()) => {
            framing::drop_connection_headers(response.headers_mut());
            reported(response.map(|_| Full::new(body)), started, None)
        }
        Ok(response) => {
            tracing::error!(status = %response.status(), "the function chain answered with a status that cannot end a response (1xx, or 600 and up)");
            reported(plain_response(http::StatusCode::INTERNAL_SERVER_ERROR), started, invalid)
        }
        Err(err) => {
            tracing::error!(error = %err, "the function chain produced an invalid response");
            reported(plain_response(http::StatusCode::INTERNAL_SERVER_ERROR), started, invalid)
        }
    }
}

/// Appends `ip` as its `Display` writes it (IPv4 without the formatting
/// machinery: this runs for every request).
fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        // Writing into a `String` cannot fail.
        std::net::IpAddr::V6(v6) => drop(write!(out, "{v6}")),
    }
}

/// The answer to a failed run; the details go to `tracing` only.
fn chain_failed(err: &Error) -> http::Response<Full<Bytes>> {
    tracing::error!(error = %err, function = err.function().unwrap_or("-"), "function chain failed");
    plain_response(status_for(err))
}

/// The status answering a failed run.
pub fn status_for(err: &Error) -> http::StatusCode {
    match err {
        Error::MemoryLimit { .. } | Error::CpuBudget { .. } | Error::Instantiation { .. } | Error::Runner { .. } => {
            http::StatusCode::SERVICE_UNAVAILABLE
        }
        Error::Deadline { .. } => http::StatusCode::GATEWAY_TIMEOUT,
        Error::Handler { .. } => http::StatusCode::BAD_GATEWAY,
        _ => http::StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// A `text/plain` response whose body names the status and nothing else
/// (`Not Found` and a newline): how the adapter answers the requests it
/// refuses and the runs that fail, details going to `tracing` only. A server
/// built around a [`ScaleService`] can answer its own refusals the same way.
pub fn plain_response(status: http::StatusCode) -> http::Response<Full<Bytes>> {
    let text = format!("{}\n", status.canonical_reason().unwrap_or("Error"));
    let mut response = http::Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The future of [`ScaleService`]'s `call`: the response, ready at once for
/// a request with no body on a service that runs chains inline.
pub struct ResponseFuture(ResponseState);

/// Where a [`ResponseFuture`] stands.
enum ResponseState {
    /// Answered inline; `None` once the response has been taken.
    Ready(Option<http::Response<Full<Bytes>>>),
    /// Still to be answered by the async path.
    Waiting(BoxFuture<http::Response<Full<Bytes>>>),
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            ResponseState::Ready(response) => {
                Poll::Ready(Ok(response.take().expect("ResponseFuture polled after it completed")))
            }
            ResponseState::Waiting(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.0 {
            ResponseState::Ready(Some(_)) => "ready",
            ResponseState::Ready(None) => "done",
            ResponseState::Waiting(_) => "waiting",
        };
        f.debug_tuple("ResponseFuture").field(&state).finish()
    }
}

impl<B> tower::Service<http::Request<B>> for ScaleService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.answer(request)
    }
}

impl ScaleService {
    /// Answers one request, as the tower `call` does, through a shared
    /// reference: for a server that holds the service behind an `Arc` (a
    /// router, say). A request without a body is answered at once when runs
    /// are inline; [`handle`](Self::handle) always goes the async way.
    pub fn answer<B>(&self, request: http::Request<B>) -> ResponseFuture
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // A request without a body has nothing to wait for: when chains run
        // inline, it is answered here, with no future to box and no clone
        // of the service.
        if request.body().is_end_stream()
            && content_length(request.headers()).is_none_or(|len| len <= self.body_limit as u64)
            && let Ok(place) = self.runs.try_acquire()
            && let Some(run) = self.inline_run()
        {
            let (parts, _) = request.into_parts();
            let response = self.respond_inline(&parts, Bytes::new());
            drop((run, place));
            return ResponseFuture(ResponseState::Ready(Some(response)));
        }
        let this = self.clone();
        ResponseFuture(ResponseState::Waiting(Box::pin(async move { this.handle(request).await })))
    }
}

/// How long a client may take to send a request's headers before the
/// connection is closed. The same bound applies while a keep-alive connection
/// waits, idle, for its next request.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The default number of connections [`serve`] keeps open at once: below the
/// usual limit of 1,024 open files per process, leaving room for the
/// listener, the module cache and the files of the process itself.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// The whole answer to a connection beyond the limit.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    connection: close\r\n\
    content-type: text/plain; charset=utf-8\r\n\
    content-length: 20\r\n\
    \r\n\
    Service Unavailable\n";

/// How [`serve_with`] serves connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    header_read_timeout: Duration,
    max_connections: NonZeroUsize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: NonZeroUsize::new(DEFAULT_MAX_CONNECTIONS).expect("the default is not zero"),
        }
    }
}

impl ServeOptions {
    /// The defaults: [`HEADER_READ_TIMEOUT`] and [`DEFAULT_MAX_CONNECTIONS`].
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a client may take to send a request's head, and how long a
    /// keep-alive connection may wait idle for its next request, before the
    /// connection is closed. At most a year (hyper adds it to the clock).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout.min(Duration::from_secs(365 * 24 * 60 * 60));
        self
    }

    /// How many connections are served at once. A connection accepted beyond
    /// that is answered `503 Service Unavailable` with `connection: close`,
    /// in one write at accept time, and closed: it takes no slot, no task and
    /// no timer, so a flood of them cannot hold the server.
    pub fn max_connections(mut self, connections: NonZeroUsize) -> Self {
        self.max_connections = connections;
        self
    }
}

/// Serves `service` on `listener` with HTTP/1.1 until `shutdown` completes,
/// then stops accepting and waits for the requests in flight to finish; with
/// the default [`ServeOptions`].
///
/// # Errors
///
/// As [`serve_with`].
pub async fn serve<S, B>(
    listener: tokio::net::TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    serve_with(listener, service, ServeOptions::default(), shutdown).await
}

/// Serves `service` on `listener` with HTTP/1.1 until `shutdown` completes,
/// then stops accepting and waits for the requests in flight to finish.
///
/// Each request carries a [`RemoteAddr`] extension. Clients that do not send
/// a request's head within the options' header read timeout are
/// disconnected, and so are keep-alive connections idle for that long. At
/// most [`ServeOptions::max_connections`] connections are served at once;
/// the ones beyond get 503 and are closed at once.
///
/// # Errors
///
/// Accepting a connection failed in a way that is not about one client.
pub async fn serve_with<S, B>(
    listener: tokio::net::TcpListener,
    service: S,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(options.header_read_timeout);
    let slots =
        Arc::new(tokio::sync::Semaphore::new(options.max_connections.get().min(tokio::sync::Semaphore::MAX_PERMITS)));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) if is_per_connection(&err) => {
                    tracing::debug!(error = %err, "accept failed for one connection");
                    continue;
                }
                Err(err) if is_out_of_descriptors(&err) => {
                    // Wait for connections to close instead of spinning.
                    tracing::warn!(error = %err, "out of file descriptors; pausing accepts");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(err) => return Err(err),
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            turn_away(stream, peer);
            continue;
        };
        let connection = builder.serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            Connection { service: std::sync::Mutex::new(service.clone()), peer },
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers a connection beyond the limit with 503 and closes it, without
/// waiting for anything: the answer is small enough for the empty send
/// buffer of a new socket.
fn turn_away(stream: tokio::net::TcpStream, peer: SocketAddr) {
    use std::io::{Read as _, Write as _};
    tracing::debug!(%peer, "too many connections; answering 503");
    // The standard socket is non-blocking still: neither call below waits.
    let Ok(stream) = stream.into_std() else { return };
    if let Err(err) = (&stream).write_all(TOO_MANY_CONNECTIONS) {
        tracing::debug!(error = %err, %peer, "the 503 for a connection beyond the limit was not sent");
        return;
    }
    // Closing a socket with unread bytes resets the connection, which can
    // discard the 503 before the client reads it; so what the client has
    // sent already is read and dropped (a bounded amount).
    let mut unread = [0u8; 1024];
    for _ in 0..16 {
        match (&stream).read(&mut unread) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// The hyper service of one connection: `service`, with each request
/// carrying the peer's [`RemoteAddr`].
struct Connection<S> {
    /// Locked only inside `call`, which hyper makes one at a time for an
    /// HTTP/1 connection: the lock is never contended.
    service: std::sync::Mutex<S>,
    peer: SocketAddr,
}

impl<S, B> hyper::service::Service<http::Request<hyper::body::Incoming>> for Connection<S>
where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>, Error = Infallible> + Clone,
{
    type Response = http::Response<B>;
    type Error = Infallible;
    type Future = ConnectionFuture<S::Future, tower::util::Oneshot<S, http::Request<hyper::body::Incoming>>>;

    fn call(&self, mut request: http::Request<hyper::body::Incoming>) -> Self::Future {
        request.extensions_mut().insert(RemoteAddr(self.peer));
        let mut service = self.service.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A service that is ready now is called in place. One that is not is
        // waited for (with this task's waker) the usual way; the no-op waker
        // of this first look is then never needed.
        match service.poll_ready(&mut TaskContext::from_waker(std::task::Waker::noop())) {
            Poll::Ready(Ok(())) => ConnectionFuture::Called { future: service.call(request) },
            Poll::Ready(Err(never)) => match never {},
            // The service that was asked waits, keeping whatever place its
            // `poll_ready` took (in a semaphore's queue, say); a clone takes
            // its place for the next request.
            Poll::Pending => {
                let fresh = service.clone();
                let asked = std::mem::replace(&mut *service, fresh);
                ConnectionFuture::Waiting { future: asked.oneshot(request) }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Connection`]'s `call`.
    #[project = ConnectionFutureProjection]
    enum ConnectionFuture<C, W> {
        Called { #[pin] future: C },
        Waiting { #[pin] future: W },
    }
}

impl<C: Future, W: Future<Output = C::Output>> Future for ConnectionFuture<C, W> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project() {
            ConnectionFutureProjection::Called { future } => future.poll(cx),
            ConnectionFutureProjection::Waiting { future } => future.poll(cx),
        }
    }
}

/// Accept errors that concern one connection (the server goes on).
fn is_per_connection(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(err.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock)
}

/// EMFILE or ENFILE: the process or system is out of file descriptors.
fn is_out_of_descriptors(err: &std::io::Error) -> bool {
    err.raw_os_error().is_some_and(|code| code == 24 || code == 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_are_written_as_display_writes_them() {
        let addresses = ["0.0.0.0", "9.10.99.100", "127.0.0.1", "192.0.2.255", "::1", "2001:db8::8a2e:370:7334"];
        for address in addresses {
            let ip: std::net::IpAddr = address.parse().unwrap();
            let mut written = String::from("kept ");
            push_ip(&mut written, ip);
            assert_eq!(written, format!("kept {ip}"));
        }
    }
}
