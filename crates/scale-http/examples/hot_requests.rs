//! A fixed number of warm requests through `ScaleService`'s `call` (as
//! `scale_http::serve` makes them) with the built-in hello function of
//! `scale serve`, on one thread and with no sockets: the adapter's own cost
//! per request, for instruction-count profiling.
//!
//! ```sh
//! cargo build --release -p scale-http --example hot_requests
//! valgrind --tool=callgrind target/release/examples/hot_requests 20000
//! valgrind --tool=callgrind target/release/examples/hot_requests 0     # subtract: start-up alone
//! ```
//!
//! Arguments: the number of requests (default 200,000), the CPU budget
//! (`none`, or a number of operations; default 1,000,000,000 as in
//! `scale serve`) and the deadline in seconds (`none`, the default, or a
//! number; `scale serve` has 10). With a deadline, the service dispatches
//! as `scale serve` does (`Dispatch::Auto`); without, inline. Prints the
//! time per request it saw.

use std::path::PathBuf;
use std::time::Instant;

use scale_http::{Dispatch, ScaleService};
use scale_runtime::{Runtime, ScaleFunc};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let requests: u64 = args.next().map_or(Ok(200_000), |n| n.parse())?;
    let budget = match args.next().as_deref() {
        None => Some(1_000_000_000),
        Some("none") => None,
        Some(n) => Some(n.parse()?),
    };
    let deadline = match args.next().as_deref() {
        None | Some("none") => None,
        Some(seconds) => Some(std::time::Duration::from_secs(seconds.parse()?)),
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scale-cli/assets/hello.scale");
    let mut builder = Runtime::builder().function(ScaleFunc::decode(&std::fs::read(path)?)?);
    if let Some(budget) = budget {
        builder = builder.cpu_budget(budget);
    }
    if let Some(deadline) = deadline {
        builder = builder.deadline(deadline);
    }
    let dispatch = if deadline.is_some() { Dispatch::Auto } else { Dispatch::Inline };
    let mut service = ScaleService::new(builder.build()?).dispatch(dispatch);
    let tokio = tokio::runtime::Builder::new_current_thread().build()?;
    tokio.block_on(async {
        let start = Instant::now();
        for _ in 0..requests {
            // What the load test's client sends.
            let request = http::Request::builder()
                .uri("/")
                .header("host", "127.0.0.1")
                .header("user-agent", "scale-loadtest")
                .body(http_body_util::Full::new(bytes::Bytes::new()))?;
            let Ok(response) = tower::Service::call(&mut service, request).await;
            assert_eq!(response.status(), 200);
        }
        let elapsed = start.elapsed();
        println!(
            "{requests} requests in {elapsed:.2?}: {:.0} ns each",
            elapsed.as_nanos() as f64 / requests.max(1) as f64
        );
        Ok(())
    })
}
