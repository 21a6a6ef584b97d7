//! The server behind `scale serve`: routes, their hot-swapped versions, the
//! admin listener, reloads and shutdown.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use scale_http::{RunReport, ScaleService, ServeOptions, plain_response};
use scale_runtime::Runtime;

use super::config::{Config, RouteConfig};
use super::metrics::{self, Metrics, RouteMetrics};

/// How a route's runtime and service are made, besides the route's own limits.
pub type Make = dyn Fn(&RouteConfig) -> anyhow::Result<ScaleService> + Send + Sync;

/// One version of a route's chain: what serves its requests until a newer
/// one is swapped in. Requests in flight keep theirs (an `Arc`), so a run
/// never mixes versions, and the old instances are freed with the last of
/// them.
pub struct Version {
    pub service: ScaleService,
    pub runtime: Runtime,
}

/// A route and the version serving it.
pub struct Route {
    pub config: RouteConfig,
    pub current: ArcSwap<Version>,
    metrics: RouteMetrics,
}

impl Route {
    /// Whether the route answers `method` (`HEAD` wherever `GET` is).
    fn allows(&self, method: &http::Method) -> bool {
        let methods = &self.config.methods;
        methods.is_empty()
            || methods.iter().any(|allowed| allowed == method.as_str())
            || (method == http::Method::HEAD && methods.iter().any(|allowed| allowed == "GET"))
    }
}

/// Everything the listeners share.
pub struct Server {
    pub file: PathBuf,
    pub routes: Vec<Route>,
    router: matchit::Router<usize>,
    pub metrics: Metrics,
    make: Box<Make>,
    /// Set once SIGTERM or Ctrl-C came: `/readyz` answers 503.
    draining: AtomicBool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("file", &self.file).field("routes", &self.routes.len()).finish_non_exhaustive()
    }
}

/// The matchit patterns of a route path: `/prefix/*` answers under the
/// prefix and at the prefix itself.
fn patterns(path: &str) -> Vec<String> {
    match path.strip_suffix("/*") {
        Some(prefix) => {
            let mut patterns = vec![format!("{prefix}/{{*rest}}"), format!("{prefix}/")];
            if !prefix.is_empty() {
                patterns.push(prefix.to_string());
            }
            patterns
        }
        None => vec![path.to_string()],
    }
}

impl Server {
    /// Compiles every route's chain (all of them, or none: the first that
    /// fails is the error) and builds the router.
    pub fn new(config: &Config, make: Box<Make>) -> anyhow::Result<Self> {
        let mut router = matchit::Router::new();
        for (index, route) in config.routes.iter().enumerate() {
            for pattern in patterns(&route.path) {
                router.insert(pattern, index).map_err(|err| {
                    let place = format!("{}:{}: route {:?}", config.file.display(), route.line, route.path);
                    let other = match &err {
                        matchit::InsertError::Conflict { with } => {
                            config.routes.iter().find(|other| patterns(&other.path).contains(with))
                        }
                        _ => None,
                    };
                    match other {
                        Some(other) => anyhow::anyhow!(
                            "{place}: it conflicts with route {:?} on line {}: a {{param}} route and a /prefix/* \
                             route cannot share a prefix (an exact path can share one with either)",
                            other.path,
                            other.line
                        ),
                        None => anyhow::anyhow!("{place}: it overlaps another route ({err})"),
                    }
                })?;
            }
        }
        let metrics = Metrics::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let service = make(route).with_context(|| {
                format!("{}:{}: route {:?}: loading its functions", config.file.display(), route.line, route.path)
            })?;
            let version = Version { runtime: service.runtime().clone(), service };
            routes.push(Route {
                config: route.clone(),
                current: ArcSwap::from_pointee(version),
                metrics: metrics.add_route(&route.path),
            });
        }
        Ok(Self { file: config.file.clone(), routes, router, metrics, make, draining: AtomicBool::new(false) })
    }

    /// Compiles a new version of route `index` beside the serving one and
    /// swaps it in, or keeps the serving one if the new one does not load.
    pub fn reload(&self, index: usize) -> bool {
        let route = &self.routes[index];
        let name = route.config.path.as_str();
        match (self.make)(&route.config) {
            Ok(service) => {
                let version = Version { runtime: service.runtime().clone(), service };
                route.current.store(Arc::new(version));
                self.metrics.reloaded(name, true);
                tracing::info!(route = name, "reloaded: new requests run the new version");
                true
            }
            Err(err) => {
                self.metrics.reloaded(name, false);
                tracing::error!(
                    route = name,
                    error = format!("{err:#}"),
                    "reload refused; the last good version keeps serving"
                );
                false
            }
        }
    }

    /// The routes whose chain includes `file`.
    fn routes_of(&self, file: &Path) -> Vec<usize> {
        (0..self.routes.len()).filter(|&index| self.routes[index].config.functions.iter().any(|f| f == file)).collect()
    }

    /// Answers one public request.
    async fn answer(self: Arc<Self>, request: http::Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>> {
        let started = Instant::now();
        let method = request.method().clone();
        let uri = request.uri().clone();
        let path = uri.path();
        let route = self.router.at(path).ok().map(|found| &self.routes[*found.value]);
        let (response, route_name) = match route {
            None => (plain_response(http::StatusCode::NOT_FOUND), "-"),
            Some(route) if !route.allows(&method) => {
                let mut response = plain_response(http::StatusCode::METHOD_NOT_ALLOWED);
                let mut allowed = route.config.methods.join(", ");
                if route.config.methods.iter().any(|m| m == "GET") && !route.config.methods.iter().any(|m| m == "HEAD")
                {
                    allowed.push_str(", HEAD");
                }
                if let Ok(value) = http::HeaderValue::from_str(&allowed) {
                    response.headers_mut().insert(http::header::ALLOW, value);
                }
                (response, route.config.path.as_str())
            }
            Some(route) => {
                let name = route.config.path.as_str();
                let _in_flight = route.metrics.enter();
                let version = route.current.load_full();
                let Ok(mut response) = version.service.answer(request).await;
                if let Some(report) = response.extensions_mut().remove::<RunReport>() {
                    route.metrics.record(&report);
                    if let Some(failure) = &report.failure {
                        tracing::warn!(
                            route = name,
                            function = failure.function.as_deref().unwrap_or("-"),
                            kind = failure.kind.as_str(),
                            "run failed"
                        );
                    }
                }
                (response, name)
            }
        };
        tracing::info!(
            target: "scale::access",
            method = %method,
            path,
            route = route_name,
            status = response.status().as_u16(),
            duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        );
        response
    }

    /// Answers one admin request: `/metrics`, `/healthz`, `/readyz`.
    fn admin(&self, request: &http::Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>> {
        if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
            let mut response = plain_response(http::StatusCode::METHOD_NOT_ALLOWED);
            response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match request.uri().path() {
            "/metrics" => {
                let text = self.metrics.encode(
                    self.routes.iter().map(|route| (route.config.path.as_str(), route.current.load().runtime.clone())),
                );
                let mut response = http::Response::new(Full::new(Bytes::from(text)));
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(metrics::CONTENT_TYPE));
                response
            }
            "/healthz" => text(http::StatusCode::OK, "ok\n"),
            // Every route compiled before the listeners opened, so only
            // draining makes the server not ready.
            "/readyz" if self.draining.load(Ordering::Acquire) => {
                text(http::StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            }
            "/readyz" => text(http::StatusCode::OK, "ready\n"),
            _ => plain_response(http::StatusCode::NOT_FOUND),
        }
    }
}

/// A `text/plain` response of `status` with `body`.
fn text(status: http::StatusCode, body: &'static str) -> http::Response<Full<Bytes>> {
    let mut response = plain_response(status);
    *response.body_mut() = Full::new(Bytes::from_static(body.as_bytes()));
    response
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The public listener's service: the router.
#[derive(Clone)]
struct Public(Arc<Server>);

impl tower::Service<http::Request<hyper::body::Incoming>> for Public {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let server = Arc::clone(&self.0);
        Box::pin(async move { Ok(server.answer(request).await) })
    }
}

/// The admin listener's service.
#[derive(Clone)]
struct Admin(Arc<Server>);

impl tower::Service<http::Request<hyper::body::Incoming>> for Admin {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        std::future::ready(Ok(self.0.admin(&request)))
    }
}

/// How the listeners run.
#[derive(Debug, Clone)]
pub struct Listen {
    pub public: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub options: ServeOptions,
    pub grace: Duration,
    /// Whether changed function files are reloaded (SIGHUP reloads always).
    pub watch: bool,
}

/// Serves until SIGTERM or Ctrl-C, then drains: `/readyz` answers 503, no
/// new connections are accepted, and requests in flight get `grace` to
/// finish.
pub async fn serve(server: Arc<Server>, listen: Listen) -> anyhow::Result<()> {
    let public = tokio::net::TcpListener::bind(listen.public)
        .await
        .with_context(|| format!("listening on {}", listen.public))?;
    let public_addr = public.local_addr()?;
    let admin = match listen.admin {
        Some(addr) => {
            let admin =
                tokio::net::TcpListener::bind(addr).await.with_context(|| format!("admin: listening on {addr}"))?;
            Some(admin)
        }
        None => None,
    };
    let names: Vec<&str> = server.routes.iter().map(|route| route.config.path.as_str()).collect();
    eprintln!(
        "serving {} route{} ({}) on http://{public_addr} (SIGTERM or Ctrl-C drains and stops)",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    );
    let _watcher = if listen.watch { Some(watch(Arc::clone(&server))?) } else { None };
    spawn_sighup(Arc::clone(&server))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The admin listener outlives the drain, so `/readyz` can say so.
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::watch::channel(false);
    let mut admin_task = None;
    if let Some(admin) = admin {
        let addr = admin.local_addr()?;
        eprintln!("admin (metrics, health) on http://{addr}");
        let mut stop = admin_stop_rx.clone();
        let service = Admin(Arc::clone(&server));
        admin_task = Some(tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(err) = scale_http::serve_with(admin, service, ServeOptions::new(), stopped).await {
                tracing::error!(error = %err, "the admin listener failed");
            }
        }));
    }
    let mut stop = stop_rx.clone();
    let mut serving =
        tokio::spawn(scale_http::serve_with(public, Public(Arc::clone(&server)), listen.options, async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }));
    tokio::select! {
        () = shutdown_signal() => {}
        ended = &mut serving => {
            return match ended {
                Ok(result) => result.context("serving"),
                Err(join) => Err(anyhow::anyhow!("the server task failed: {join}")),
            };
        }
    }
    server.draining.store(true, Ordering::Release);
    eprintln!("draining: no new connections; requests in flight get {:?} to finish", listen.grace);
    tracing::info!(grace = ?listen.grace, "draining");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(listen.grace, &mut serving).await {
        Ok(Ok(result)) => result.context("serving")?,
        Ok(Err(join)) => return Err(anyhow::anyhow!("the server task failed: {join}")),
        Err(_) => {
            tracing::warn!("the grace period ended with requests still in flight; stopping anyway");
            eprintln!("grace period over: stopping with requests still in flight");
        }
    }
    let _ = admin_stop_tx.send(true);
    if let Some(admin) = admin_task {
        let _ = tokio::time::timeout(Duration::from_secs(1), admin).await;
    }
    eprintln!("stopped");
    Ok(())
}

/// Resolves at SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Reloads every route at each SIGHUP.
fn spawn_sighup(server: Arc<Server>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("listening for SIGHUP")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading every route");
                let server = Arc::clone(&server);
                let _ = tokio::task::spawn_blocking(move || {
                    for index in 0..server.routes.len() {
                        server.reload(index);
                    }
                })
                .await;
            }
        });
    }
    #[cfg(not(unix))]
    drop(server);
    Ok(())
}

/// How long the files must stay quiet after a change before it is reloaded,
/// so that a file written in several steps is read once, whole.
const SETTLE: Duration = Duration::from_millis(200);

/// Watches the folders of every route's function files and reloads the
/// routes whose files changed, once the changes settle.
fn watch(server: Arc<Server>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let files: HashSet<PathBuf> =
        server.routes.iter().flat_map(|route| route.config.functions.iter().cloned()).collect();
    let folders: HashSet<PathBuf> = files.iter().filter_map(|file| file.parent().map(Path::to_path_buf)).collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) if !event.kind.is_access() => {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "watching the function files failed"),
    })
    .context("watching the function files")?;
    for folder in &folders {
        watcher
            .watch(folder, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", folder.display()))?;
    }
    tokio::spawn(async move {
        loop {
            let Some(first) = rx.recv().await else { return };
            let mut changed = HashSet::from([first]);
            // Gather the changes until the files settle.
            loop {
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some(path)) => {
                        changed.insert(path);
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let mut routes: Vec<usize> =
                changed.iter().filter(|path| files.contains(*path)).flat_map(|path| server.routes_of(path)).collect();
            routes.sort_unstable();
            routes.dedup();
            if routes.is_empty() {
                continue;
            }
            let server = Arc::clone(&server);
            let _ = tokio::task::spawn_blocking(move || {
                for index in routes {
                    server.reload(index);
                }
            })
            .await;
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_routes_cover_the_prefix_itself() {
        assert_eq!(patterns("/api/*"), ["/api/{*rest}", "/api/", "/api"]);
        assert_eq!(patterns("/*"), ["/{*rest}", "/"]);
        assert_eq!(patterns("/exact"), ["/exact"]);
        let mut router = matchit::Router::new();
        for pattern in patterns("/api/*") {
            router.insert(pattern, 1).unwrap();
        }
        router.insert("/apiary", 2).unwrap();
        for (path, want) in [("/api", Some(1)), ("/api/", Some(1)), ("/api/v1/items", Some(1)), ("/apiary", Some(2))] {
            assert_eq!(router.at(path).ok().map(|m| *m.value), want, "{path}");
        }
        assert!(router.at("/ap").is_err());
    }
}
