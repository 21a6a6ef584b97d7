//! `scale serve [FILE.scale...]` and `scale serve --config scale.toml`

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use scale_func::ScaleFunc;
use scale_http::{Dispatch, MinRate, ScaleService, ServeOptions};

use crate::commands::read_scale;
use crate::commands::runtime_args::{Budget, Deadline, Defaults, RuntimeArgs, limited};

pub mod config;
mod logs;
mod metrics;
mod server;

use config::{Config, RouteConfig};

/// The CPU budget of `serve` when none is given: generous for request
/// handlers, and a bound on how long one run can hold a server thread.
pub const DEFAULT_SERVE_BUDGET: u64 = 1_000_000_000;

/// The deadline of each run of `serve` when none is given: a run still
/// going after it (sleeping, waiting on host calls) is stopped and answered
/// with 504.
pub const DEFAULT_SERVE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// The function served when no files are given (source in `hello/`).
const DEFAULT_FUNCTION: &[u8] = include_bytes!("../../assets/hello.scale");

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .scale files, run as a chain for each request on every path
    /// [default: a built-in hello function].
    #[arg(value_name = "FILE.scale", conflicts_with = "config")]
    files: Vec<PathBuf>,
    /// Serve the routes of this configuration file (docs/serving.md) instead
    /// of one chain on every path.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// The address to listen on (port 0 picks a free port) [default: the
    /// configuration's `listen`, else 127.0.0.1:8080].
    #[arg(long, short = 'l')]
    listen: Option<SocketAddr>,
    /// The admin address, serving /metrics, /healthz and /readyz, or `none`
    /// [default: with --config, the file's `admin_listen`, else
    /// 127.0.0.1:9090; without, none].
    #[arg(long, value_name = "ADDRESS|none")]
    admin_listen: Option<String>,
    /// How long requests in flight may take to finish after SIGTERM or
    /// Ctrl-C (`30s`, `2m`) [default: the configuration's `shutdown_grace`,
    /// else 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_grace)]
    shutdown_grace: Option<Duration>,
    /// The log format: `text` for people, `json` for collectors. One access
    /// line per request; `RUST_LOG` sets the levels (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The largest request body accepted, in bytes; larger ones get 413
    /// [default: 10485760]. With --config, set `body_limit` in the file.
    #[arg(long, value_name = "BYTES")]
    body_limit: Option<usize>,
    /// The longest a request body may take to arrive, in seconds, or `none`
    /// for no bound; a body still incomplete then gets 408 and the connection
    /// is closed.
    #[arg(long, value_name = "SECONDS|none", value_parser = parse_seconds, default_value = "60")]
    body_timeout: Seconds,
    /// The slowest a request body may arrive: a body that brings fewer than
    /// BYTES in one of its consecutive `--body-rate-window`-second windows
    /// gets 408 and the connection is closed; `none` accepts any rate.
    #[arg(long, value_name = "BYTES|none", value_parser = parse_bytes, default_value = "1024")]
    body_min_rate: MinBytes,
    /// The window `--body-min-rate` is measured over, in seconds.
    #[arg(long, value_name = "SECONDS", value_parser = parse_window, default_value = "5")]
    body_rate_window: Duration,
    /// How long a client may take to send a request's head, and how long a
    /// keep-alive connection may stay idle, in seconds, before it is closed.
    #[arg(long, value_name = "SECONDS", value_parser = parse_window, default_value = "10")]
    header_timeout: Duration,
    /// How many connections are served at once; a connection beyond that gets
    /// 503 (`connection: close`) at once and is closed. Keep it below the
    /// process's open-file limit (`ulimit -n`).
    #[arg(long, value_name = "N", default_value_t = NonZeroUsize::new(scale_http::DEFAULT_MAX_CONNECTIONS).expect("not zero"))]
    max_connections: NonZeroUsize,
    /// How many requests run their functions at once; the ones beyond wait
    /// for a place. Each run holds an instance of every function of the
    /// chain, each up to the memory limit: this bounds the guest memory in use.
    #[arg(long, value_name = "N", default_value_t = NonZeroUsize::new(scale_http::DEFAULT_MAX_RUNS).expect("not zero"))]
    max_runs: NonZeroUsize,
    /// Where functions run: `inline` on the server's worker threads (fast;
    /// needs a CPU budget or a deadline to bound runs), `blocking` on a
    /// separate thread pool (for long runs), or `auto` (inline when there is
    /// a budget or a deadline, as long as one worker stays free of runs; the
    /// runs beyond go to the thread pool).
    #[arg(long, value_enum, default_value_t = DispatchArg::Auto)]
    dispatch: DispatchArg,
    /// Give every request a function instance as it was right after start-up:
    /// nothing one request leaves in a function's globals or memory reaches
    /// the next (per-run isolation; instances are reset after each run
    /// instead of keeping their state). With --config, set `isolate` in the file.
    #[arg(long)]
    isolate: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

// The two aliases below keep clap from reading the flags as optional: a
// flag always has a value, and `none` is one of them.

/// A duration in seconds, or no bound.
type Seconds = Option<Duration>;

/// A number of bytes, or no bound.
type MinBytes = Option<u64>;

fn parse_seconds(text: &str) -> Result<Seconds, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    parse_window(text).map(Some)
}

/// The longest timeout the flags take: a year.
const LONGEST_TIMEOUT_SECONDS: u64 = 365 * 24 * 60 * 60;

fn parse_window(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("0 seconds would cut off every client".into()),
        Ok(seconds) if seconds > LONGEST_TIMEOUT_SECONDS => {
            Err(format!("{seconds} seconds is longer than the {LONGEST_TIMEOUT_SECONDS} (a year) this takes"))
        }
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => Err(format!("expected a whole number of seconds, got {text:?}")),
    }
}

fn parse_bytes(text: &str) -> Result<MinBytes, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    text.parse::<u64>().map(Some).map_err(|_| format!("expected a number of bytes or `none`, got {text:?}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_grace(text: &str) -> Result<Duration, String> {
    match crate::commands::runtime_args::parse_deadline(text)? {
        Deadline::After(grace) => Ok(grace),
        Deadline::Never => Err("a shutdown grace period has an end: give a duration such as 30s".into()),
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DispatchArg {
    Auto,
    Inline,
    Blocking,
}

impl From<DispatchArg> for Dispatch {
    fn from(arg: DispatchArg) -> Self {
        match arg {
            DispatchArg::Auto => Dispatch::Auto,
            DispatchArg::Inline => Dispatch::Inline,
            DispatchArg::Blocking => Dispatch::Blocking,
        }
    }
}

/// The built-in hello function.
pub fn default_function() -> anyhow::Result<ScaleFunc> {
    ScaleFunc::decode(DEFAULT_FUNCTION)
        .context("the built-in function does not decode (rebuild it with `cargo xtask default-function`)")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let _logs = init_logs(args.log_format)?;
    let config = match &args.config {
        Some(file) => {
            let mut flags = args.runtime.limit_flags();
            if args.body_limit.is_some() {
                flags.push("--body-limit");
            }
            if args.isolate {
                flags.push("--isolate");
            }
            if !flags.is_empty() {
                bail!("{}: with --config, set limits in the file ([defaults] or the route)", flags.join(", "));
            }
            config::load(file)?
        }
        None => flags_config(&args)?,
    };
    let listen = server::Listen {
        public: args.listen.unwrap_or(config.listen),
        admin: match &args.admin_listen {
            Some(text) if text.eq_ignore_ascii_case("none") => None,
            Some(text) => Some(text.parse().map_err(|_| anyhow::anyhow!("--admin-listen {text:?} is not an address"))?),
            None => config.admin_listen,
        },
        options: ServeOptions::new().header_read_timeout(args.header_timeout).max_connections(args.max_connections),
        grace: args.shutdown_grace.unwrap_or(config.shutdown_grace),
        watch: config.routes.iter().any(|route| !route.functions.is_empty()),
    };
    let min_rate = args.body_min_rate.map(|bytes| MinRate { bytes, window: args.body_rate_window });
    let (body_timeout, max_runs, dispatch) = (args.body_timeout, args.max_runs.get(), Dispatch::from(args.dispatch));
    let runtime_args = args.runtime;
    let make = move |route: &RouteConfig| -> anyhow::Result<ScaleService> {
        let functions = if route.functions.is_empty() {
            vec![default_function()?]
        } else {
            route.functions.iter().map(|path| read_scale(path)).collect::<anyhow::Result<Vec<_>>>()?
        };
        let runtime = runtime_args.cache(limited(functions, &route.limits)).build()?;
        Ok(ScaleService::new(runtime)
            .body_limit(route.limits.body_limit)
            .body_timeout(body_timeout)
            .body_min_rate(min_rate)
            .max_runs(max_runs)
            .dispatch(dispatch))
    };
    let server = server::Server::new(&config, Box::new(make)).context("loading the functions")?;
    for route in &server.routes {
        let version = route.current.load();
        let runtime = &version.runtime;
        let budget = match runtime.cpu_budget() {
            Some(operations) => format!("CPU budget {operations} operations per run"),
            None => "no CPU budget".to_string(),
        };
        let deadline = match runtime.deadline() {
            Some(limit) => format!("deadline {limit:?}"),
            None => "no deadline".to_string(),
        };
        let threads = if version.service.runs_inline() { "runs inline" } else { "runs on the blocking pool" };
        let isolation =
            if runtime.isolation() == scale_runtime::Isolation::PerRun { "isolated runs" } else { "pooled state" };
        let limits = &route.config.limits;
        let table = match limits.table_limit {
            Some(elements) => format!("table limit {elements} elements"),
            None => "default table limit".to_string(),
        };
        eprintln!(
            "route {}: {}; {budget}, {deadline}, memory limit {} MiB, {table}, body limit {} bytes, {threads}, \
             {isolation}",
            route.config.path,
            runtime.function_names().join(" → "),
            runtime.memory_limit() >> 20,
            limits.body_limit,
        );
    }
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    let served = tokio.block_on(server::serve(Arc::new(server), listen));
    // Runs still going when the grace period ended do not hold the process:
    // dropping the runtime would wait for those on its blocking pool.
    tokio.shutdown_background();
    served
}

/// The configuration `scale serve FILE...` stands for: one route on every
/// path, its chain the files (or the built-in function), its limits the flags.
fn flags_config(args: &Args) -> anyhow::Result<Config> {
    if args.files.is_empty() {
        eprintln!("no files given: serving the built-in hello function");
    }
    let mut functions = Vec::with_capacity(args.files.len());
    for file in &args.files {
        // Read now, so that a bad file is named before anything starts.
        read_scale(file)?;
        functions.push(std::path::absolute(file).with_context(|| format!("cannot resolve {}", file.display()))?);
    }
    let defaults = Defaults {
        budget: Budget::Operations(DEFAULT_SERVE_BUDGET),
        deadline: Deadline::After(DEFAULT_SERVE_DEADLINE),
    };
    let mut limits = args.runtime.limits(defaults, args.body_limit.unwrap_or(scale_http::DEFAULT_BODY_LIMIT));
    limits.isolate = args.isolate;
    Ok(Config {
        file: PathBuf::from("(command line)"),
        listen: config::DEFAULT_LISTEN.parse().expect("the default address parses"),
        admin_listen: None,
        shutdown_grace: config::DEFAULT_SHUTDOWN_GRACE,
        routes: vec![RouteConfig { path: "/*".into(), methods: Vec::new(), functions, limits, line: 0 }],
    })
}

/// Sends logs to standard output, as text or JSON lines, at the levels
/// `RUST_LOG` sets (`info` by default: one access line per request).
///
/// Lines are written in batches by a thread of their own (`serve/logs.rs`):
/// a request pays for formatting its line, not for a write to standard
/// output or a wake-up. Under an overload that standard output cannot keep
/// up with, lines are dropped and counted rather than requests slowed. The
/// returned flusher writes what is left when it drops.
fn init_logs(format: LogFormat) -> anyhow::Result<logs::Flusher> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, flusher) = logs::batched(std::io::stdout()).context("starting the log writer thread")?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer);
    let _ = match format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().flatten_event(true).try_init(),
    };
    Ok(flusher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates_parse() {
        assert_eq!(parse_seconds("30"), Ok(Some(Duration::from_secs(30))));
        assert_eq!(parse_seconds("none"), Ok(None));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("1.5").is_err());
        assert_eq!(parse_window("5"), Ok(Duration::from_secs(5)));
        assert!(parse_window(&u64::MAX.to_string()).is_err());
        assert!(parse_window("none").is_err());
        assert_eq!(parse_bytes("1024"), Ok(Some(1024)));
        assert_eq!(parse_bytes("NONE"), Ok(None));
        assert!(parse_bytes("-1").is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn flag_defaults_are_the_library_defaults() {
        use clap::Parser as _;
        let args = Cli::try_parse_from(["serve"]).unwrap().args;
        assert_eq!(args.body_timeout, Some(scale_http::DEFAULT_BODY_TIMEOUT));
        assert_eq!(args.body_min_rate, Some(scale_http::DEFAULT_BODY_MIN_BYTES));
        assert_eq!(args.body_rate_window, scale_http::DEFAULT_BODY_RATE_WINDOW);
        assert_eq!(args.header_timeout, scale_http::HEADER_READ_TIMEOUT);
        assert_eq!(args.max_connections.get(), scale_http::DEFAULT_MAX_CONNECTIONS);
        assert_eq!(args.max_runs.get(), scale_http::DEFAULT_MAX_RUNS);
        assert_eq!(config::Limits::default().body_limit, scale_http::DEFAULT_BODY_LIMIT);
        assert!(Cli::try_parse_from(["serve", "a.scale", "--config", "scale.toml"]).is_err());
    }
}
