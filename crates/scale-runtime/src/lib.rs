//! Run Scale Functions from Rust.
//!
//! A Scale function is a WebAssembly module, written in Go or Rust against
//! the HTTP signature and packed in a `.scale` file ([`scale_func`]). A
//! [`Runtime`] compiles one or more of them into a chain; an [`Instance`]
//! runs that chain on a [`Context`].
//!
//! ```no_run
//! use scale_runtime::{Runtime, ScaleFunc};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let function = ScaleFunc::decode(&std::fs::read("hello.scale")?)?;
//! let runtime = Runtime::new([function])?;
//!
//! // Cheap, and safe to call from any thread:
//! let mut instance = runtime
//!     .instance()?
//!     .with_handler(|ctx| {
//!         // Runs when the last function calls `next`.
//!         ctx.response.headers_mut().set("x-served-by", ["rust"]);
//!         Ok(())
//!     });
//! instance.context_mut().request.set_body_string("Hello");
//! instance.run()?;
//! assert_eq!(instance.context().response.status_code, 200);
//! # Ok(()) }
//! ```
//!
//! # Concepts
//!
//! - **Chain.** A function's `next` runs the next function; after the last
//!   one, the native handlers of the instance, in order. Results flow back up.
//!   A guest's error ends the run with [`Error::Guest`]; a handler's error
//!   comes back to the calling guest as the error of its `next` (and, if the
//!   guest passes it on, ends the run as [`Error::Handler`]).
//! - **Pool.** Each function keeps idle instantiated modules. An [`Instance`]
//!   takes one per function and gives them back on drop. Instances that
//!   trapped or returned malformed output are discarded, never reused; old or
//!   grown ones are recycled. [`Runtime::clear`] drops the idle ones.
//! - **Isolation.** By default an instance keeps its globals and memory from
//!   one run to the next; with [`Isolation::PerRun`] every run starts from
//!   the state right after start-up, and an instance that trapped is reset
//!   rather than discarded.
//! - **Sandbox.** Guests get no files, network, arguments or environment;
//!   WASI guests (Go) get a deny-by-default `wasi_snapshot_preview1` with real
//!   clocks and randomness. See the project's `docs/abi.md`.
//! - **Limits.** A memory limit per instance (64 MiB by default) and an
//!   optional CPU budget per call ([`RuntimeBuilder::cpu_budget`]).
//! - **Signatures.** The runtime is generic over [`Signature`]; the HTTP
//!   signature is the default.
//!
//! # Threads
//!
//! [`Runtime`] is `Send + Sync` and cheap to clone. [`Instance`] is `Send`
//! and used through `&mut self`. Guest code runs on the thread that calls
//! [`Instance::run`]; it is CPU work, so async servers should run it off the
//! reactor (see `scale-http`).
//!
//! # Async
//!
//! Native handlers may await ([`Instance::with_async_handler`]): a database,
//! another service. [`Instance::run_async`] is the run as a future (`Send`,
//! for tokio's multi-thread and current-thread runtimes alike): the chain
//! runs on a runner thread of the runtime, and the handlers' futures are
//! polled by the task awaiting it, so no thread of the async runtime is
//! blocked. Dropping the future gives the run up; its guests are discarded.
//!
//! ```no_run
//! # async fn example(runtime: scale_runtime::Runtime) -> Result<(), scale_runtime::Error> {
//! let mut instance = runtime.instance()?.with_async_handler(|mut ctx: scale_runtime::Context| async move {
//!     ctx.response.set_body_string("awaited");
//!     Ok(ctx)
//! });
//! instance.run_async().await?;
//! # Ok(()) }
//! ```
//!
//! # Profiling guests
//!
//! With the environment variable `SCALE_PERF_MAP=1`, each module compiled or
//! loaded from the cache is listed in `/tmp/perf-<pid>.map`, so `perf
//! report` names guest functions (from the module's name section; a
//! stripped module shows function indices) instead of bare addresses.
#![warn(missing_docs)]

mod abi;
mod awaiting;
mod chain;
mod deadline;
mod engine;
mod error;
mod guest;
#[cfg(target_os = "linux")]
mod image;
mod instance;
mod isolation;
mod limits;
mod meter;
mod metering;
mod module;
mod pool;
mod runtime;
mod signature;
mod trap;
mod wasi;

pub use error::{Error, HandlerError};
pub use instance::{Instance, RunAsync};
pub use limits::{
    DEFAULT_MAX_IDLE, DEFAULT_MAX_USES, DEFAULT_MEMORY_LIMIT, DEFAULT_TABLE_LIMIT, Isolation, MAX_CHAIN_LENGTH,
};
pub use module::{CACHE_DIR_VAR, default_cache_dir};
pub use pool::PoolStats;
pub use runtime::{Runtime, RuntimeBuilder};
/// The `.scale` file format: [`ScaleFunc`], and what a host needs to check
/// or build one ([`scale_func::SignatureId`], [`scale_func::Language`]).
pub use scale_func;
pub use scale_func::ScaleFunc;
/// The HTTP signature: [`Context`], its request and response, and
/// `SIGNATURE_NAME`/`SIGNATURE_VERSION`.
pub use scale_signature_http;
pub use scale_signature_http::Context;
pub use signature::Signature;

pub use abi::versions::VERSION as ABI_VERSION;

/// The Rust snippets of the embedding guide and of this crate's README
/// compile (`cargo test --doc`), so the docs keep up with the API.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/embedding.md")]
#[doc = include_str!("../README.md")]
mod guides {}
