//! What `scale serve` counts, in Prometheus/OpenMetrics text on the admin
//! listener's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use scale_http::{FailureKind, RunReport};
use scale_runtime::Runtime;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub route: String,
    /// The function the error happened in, or `-` when in none.
    pub function: String,
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub route: String,
    /// `ok` or `refused`.
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub route: String,
    pub function: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

/// Every metric, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    runs: Family<RouteLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    in_flight: Family<RouteLabels, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
    pool_idle: Family<PoolLabels, Gauge>,
    pool_created: Family<PoolLabels, Gauge>,
    pool_reused: Family<PoolLabels, Gauge>,
    pool_discarded: Family<PoolLabels, Gauge>,
}

/// Run durations from 50 µs to about 27 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("scale");
        let runs = Family::<RouteLabels, Counter>::default();
        registry.register("runs", "Runs of a route's function chain, failed or not", runs.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "run_errors",
            "Failed runs, by route, function and kind (guest_error, panic, trap, memory, budget, deadline, handler, instantiation, invalid_response)",
            errors.clone(),
        );
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register("run_duration_seconds", "How long runs took", duration.clone());
        let in_flight = Family::<RouteLabels, Gauge>::default();
        registry.register("in_flight_requests", "Requests of a route being answered now", in_flight.clone());
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "New versions of a route's functions, swapped in (ok) or refused",
            reloads.clone(),
        );
        let pool = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<PoolLabels, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let pool_idle = pool(&mut registry, "pool_idle_instances", "Idle instances of a function, ready to run");
        let pool_created =
            pool(&mut registry, "pool_created_instances", "Instances made by the serving version of a route");
        let pool_reused = pool(&mut registry, "pool_reused_instances", "Instances taken from the pool again");
        let pool_discarded =
            pool(&mut registry, "pool_discarded_instances", "Instances thrown away (trapped, recycled or cleared)");
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register("build_info", "The scale command serving, by version", build.clone());
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_string() }).set(1);
        Self {
            registry,
            runs,
            errors,
            duration,
            in_flight,
            reloads,
            pool_idle,
            pool_created,
            pool_reused,
            pool_discarded,
        }
    }

    /// The series of `route`, made to exist at zero so that dashboards and
    /// alerts see the route before its first request. A request counts
    /// through them with no lookup and no allocation.
    pub fn add_route(&self, route: &str) -> RouteMetrics {
        let labels = RouteLabels { route: route.to_string() };
        for outcome in ["ok", "refused"] {
            drop(self.reloads.get_or_create(&ReloadLabels { route: route.to_string(), outcome: outcome.to_string() }));
        }
        RouteMetrics {
            route: route.to_string(),
            runs: self.runs.get_or_create(&labels).clone(),
            duration: self.duration.get_or_create(&labels).clone(),
            in_flight: self.in_flight.get_or_create(&labels).clone(),
            errors: self.errors.clone(),
        }
    }

    /// Counts a reload of `route`.
    pub fn reloaded(&self, route: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "refused" };
        self.reloads.get_or_create(&ReloadLabels { route: route.to_string(), outcome: outcome.to_string() }).inc();
    }

    /// The exposition, with the pool gauges read from each route's serving
    /// runtime now.
    pub fn encode<'a>(&self, routes: impl Iterator<Item = (&'a str, Runtime)>) -> String {
        for (route, runtime) in routes {
            for (function, stats) in runtime.function_pool_stats() {
                let labels = PoolLabels { route: route.to_string(), function: function.to_string() };
                let set = |family: &Family<PoolLabels, Gauge>, value: u64| {
                    family.get_or_create(&labels).set(i64::try_from(value).unwrap_or(i64::MAX));
                };
                set(&self.pool_idle, stats.idle);
                set(&self.pool_created, stats.created);
                set(&self.pool_reused, stats.reused);
                set(&self.pool_discarded, stats.discarded);
            }
        }
        let mut text = String::new();
        // Writing into a `String` cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// One route's series.
#[derive(Debug)]
pub struct RouteMetrics {
    route: String,
    runs: Counter,
    duration: Histogram,
    in_flight: Gauge,
    errors: Family<ErrorLabels, Counter>,
}

impl RouteMetrics {
    /// A request started; the guard counts it in flight until it drops.
    pub fn enter(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts the run a response reports.
    pub fn record(&self, report: &RunReport) {
        self.runs.inc();
        self.duration.observe(report.duration.as_secs_f64());
        if let Some(failure) = &report.failure {
            self.error(failure.function.as_deref(), failure.kind);
        }
    }

    fn error(&self, function: Option<&str>, kind: FailureKind) {
        let labels = ErrorLabels {
            route: self.route.clone(),
            function: function.unwrap_or("-").to_string(),
            kind: kind.as_str().to_string(),
        };
        self.errors.get_or_create(&labels).inc();
    }
}

/// A request in flight; counted until it drops, however the request ends.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_exposition_counts_runs_errors_and_reloads() {
        let metrics = Metrics::new();
        let hello = metrics.add_route("/hello");
        let ok = RunReport { duration: Duration::from_millis(2), failure: None };
        let failed = RunReport {
            duration: Duration::from_millis(3),
            failure: Some(scale_http::RunFailure { kind: FailureKind::Budget, function: Some("loop".into()) }),
        };
        for _ in 0..3 {
            hello.record(&ok);
        }
        hello.record(&failed);
        metrics.reloaded("/hello", true);
        metrics.reloaded("/hello", false);
        metrics.reloaded("/hello", false);
        {
            let _one = hello.enter();
            let text = metrics.encode(std::iter::empty());
            assert!(text.contains("scale_in_flight_requests{route=\"/hello\"} 1\n"), "{text}");
        }
        let text = metrics.encode(std::iter::empty());
        for line in [
            "scale_runs_total{route=\"/hello\"} 4\n",
            "scale_run_errors_total{route=\"/hello\",function=\"loop\",kind=\"budget\"} 1\n",
            "scale_run_duration_seconds_count{route=\"/hello\"} 4\n",
            "scale_in_flight_requests{route=\"/hello\"} 0\n",
            "scale_reloads_total{route=\"/hello\",outcome=\"ok\"} 1\n",
            "scale_reloads_total{route=\"/hello\",outcome=\"refused\"} 2\n",
            "scale_build_info{version=\"",
            "# EOF\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }
}
