//! `scale serve [FILE.scale...]`

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use scale_func::ScaleFunc;
use scale_http::{Dispatch, ScaleService};

use crate::commands::read_scale;
use crate::commands::runtime_args::{Budget, Deadline, Defaults, RuntimeArgs};

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
    /// The .scale files, run as a chain for each request [default: a built-in hello function].
    #[arg(value_name = "FILE.scale")]
    files: Vec<PathBuf>,
    /// The address to listen on (port 0 picks a free port).
    #[arg(long, short = 'l', default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value_t = scale_http::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
    /// Where functions run: `inline` on the server's worker threads (fast;
    /// needs a CPU budget to bound runs), `blocking` on a separate thread pool
    /// (for long runs), or `auto` (inline when there is a CPU budget).
    #[arg(long, value_enum, default_value_t = DispatchArg::Auto)]
    dispatch: DispatchArg,
    #[command(flatten)]
    runtime: RuntimeArgs,
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
    let functions = if args.files.is_empty() {
        eprintln!("no files given: serving the built-in hello function");
        vec![default_function()?]
    } else {
        args.files.iter().map(|path| read_scale(path)).collect::<anyhow::Result<Vec<_>>>()?
    };
    let runtime = args
        .runtime
        .builder(
            functions,
            Defaults {
                budget: Budget::Operations(DEFAULT_SERVE_BUDGET),
                deadline: Deadline::After(DEFAULT_SERVE_DEADLINE),
            },
        )
        .build()
        .context("loading the functions")?;
    let names = runtime.function_names().join(" → ");
    let budget = match runtime.cpu_budget() {
        Some(operations) => format!("CPU budget {operations} operations per run"),
        None => "no CPU budget".to_string(),
    };
    let budget = match runtime.deadline() {
        Some(limit) => format!("{budget}, deadline {limit:?}"),
        None => format!("{budget}, no deadline"),
    };
    let service = ScaleService::new(runtime).body_limit(args.body_limit).dispatch(args.dispatch.into());
    let threads = if service.runs_inline() { "runs inline" } else { "runs on the blocking pool" };
    eprintln!("{budget}, {threads}");

    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        eprintln!("serving {names} on http://{addr} (Ctrl-C stops after the requests in flight)");
        scale_http::serve(listener, service, async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("shutting down…");
        })
        .await
        .context("serving")
    })
}
