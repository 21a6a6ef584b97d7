//! The public API of a chain of functions: [`Runtime`] and its builder.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use scale_func::ScaleFunc;

use crate::abi::ImportPlan;
use crate::chain::{Chain, Link};
use crate::engine::{EngineSettings, build_engine};
use crate::error::Error;
use crate::guest::Compiled;
use crate::instance::Instance;
use crate::isolation::Templates;
use crate::limits::{
    DEFAULT_MAX_IDLE, DEFAULT_MAX_USES, DEFAULT_MEMORY_LIMIT, Isolation, Limits, MAX_CHAIN_LENGTH, PAGE_BYTES,
};
use crate::module::{self, CacheSetting};
use crate::pool::{PoolStats, PooledFunction};
use crate::signature::{self, Signature};

/// Builds a [`Runtime`] with non-default settings.
///
/// ```no_run
/// # fn main() -> Result<(), scale_runtime::Error> {
/// # let function: scale_func::ScaleFunc = todo!();
/// let runtime = scale_runtime::Runtime::builder()
///     .function(function)
///     .memory_limit(32 << 20)
///     .cpu_budget(50_000_000)
///     .cache_dir("/var/cache/scale")
///     .build()?;
/// # Ok(()) }
/// ```
pub struct RuntimeBuilder<S: Signature = scale_signature_http::Context> {
    functions: Vec<ScaleFunc>,
    limits: Limits,
    cache: Option<CacheSetting>,
    _signature: std::marker::PhantomData<fn() -> S>,
}

impl<S: Signature> fmt::Debug for RuntimeBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("functions", &self.functions.iter().map(ScaleFunc::name).collect::<Vec<_>>())
            .field("limits", &self.limits)
            .field("cache", &self.cache)
            .finish()
    }
}

impl<S: Signature> Default for RuntimeBuilder<S> {
    fn default() -> Self {
        Self {
            functions: Vec::new(),
            limits: Limits {
                memory_limit: DEFAULT_MEMORY_LIMIT,
                table_limit: None,
                cpu_budget: None,
                deadline: None,
                max_idle: DEFAULT_MAX_IDLE,
                max_uses: DEFAULT_MAX_USES,
                memory_high_water: DEFAULT_MEMORY_LIMIT / 2,
                isolation: Isolation::Pooled,
            },
            cache: None,
            _signature: std::marker::PhantomData,
        }
    }
}

impl<S: Signature> RuntimeBuilder<S> {
    /// A builder with the defaults: 64 MiB of memory per instance (tables
    /// included), at most 65,536 table elements per instance, no CPU budget,
    /// no deadline, up to 64 idle instances per function, recycled after
    /// 100,000 runs or once their memory passed 32 MiB, no module cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a function to the chain.
    pub fn function(mut self, function: ScaleFunc) -> Self {
        self.functions.push(function);
        self
    }

    /// Appends functions to the chain, in order.
    pub fn functions(mut self, functions: impl IntoIterator<Item = ScaleFunc>) -> Self {
        self.functions.extend(functions);
        self
    }

    /// The most memory one guest instance may have, in bytes (rounded down
    /// to whole 64 KiB pages): its linear memory and what its tables may
    /// grow to (8 bytes an element, see [`RuntimeBuilder::table_limit`])
    /// together. A guest that needs more fails its run with
    /// [`Error::MemoryLimit`]; a module whose declared minimums alone need
    /// more is refused at load. Also lowers the recycling high-water mark to
    /// at most half of this.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.limits.memory_limit = bytes.clamp(PAGE_BYTES, 1 << 32) / PAGE_BYTES * PAGE_BYTES;
        self.limits.memory_high_water = self.limits.memory_high_water.min(self.limits.memory_limit / 2);
        self
    }

    /// The most table elements one guest instance may have, over all its
    /// tables (default [`DEFAULT_TABLE_LIMIT`], or an eighth of the memory
    /// limit at 8 bytes an element when that is less). A module whose tables
    /// declare more at least is refused at load; growth past the limit
    /// (`table.grow`) fails inside the guest, which gets -1, and a guest
    /// that then traps fails its run with [`Error::MemoryLimit`]. Several
    /// growable tables share what their minimums leave of the limit. What
    /// the tables may grow to is counted in the memory limit.
    pub fn table_limit(mut self, elements: u32) -> Self {
        self.limits.table_limit = Some(elements);
        self
    }

    /// Counts the work of the guests and stops a run that uses more than
    /// `operations` points with [`Error::CpuBudget`]. The budget is the
    /// whole run's: every guest of the chain (through `next`) and every call
    /// into them (`resize` and `run`) draws on it. Instantiation (a start
    /// function, `_initialize`) has a budget of the same size. Off by
    /// default: metering costs some speed (docs/benchmarks.md gives the
    /// figures).
    ///
    /// Host calls are paid for too: each call of an import costs 1,000
    /// points, and host functions charge a point for each byte they read or
    /// write (`next`, `fd_write`, `random_get`) and for each nanosecond a
    /// guest sleeps in `poll_oneoff`.
    ///
    /// A point is one wasm operator, paid for in advance: on entering a
    /// stretch of code that control can only enter at its start, the guest
    /// pays for all of that stretch, so a branch that leaves it early leaves
    /// the rest paid for. A run is thus charged for at least every operator
    /// it executes, and somewhat more (docs/benchmarks.md measures it for
    /// Go and Rust guests). The points left are checked when a function starts
    /// and when a loop starts an iteration, so a run that never ends is always
    /// stopped, at most one loop-free stretch of a function past its budget.
    /// Budgets above `i64::MAX` count as `i64::MAX`.
    pub fn cpu_budget(mut self, operations: u64) -> Self {
        self.limits.cpu_budget = Some(operations);
        self
    }

    /// Stops a run still going `limit` after it started with
    /// [`Error::Deadline`]: the guest running then traps at its next
    /// function start or loop iteration, the thread is free again and the
    /// instance is discarded. Host waits (`poll_oneoff`) and waits for an
    /// async native handler end at the deadline; a sync native handler is
    /// not interrupted, but the chain stops when it returns. A fresh instance's start-up has the same limit.
    /// Off by default.
    ///
    /// A deadline compiles guests with the CPU budget's checks (with an
    /// unlimited budget when none is set). A watchdog thread looks at the
    /// runs under a deadline every millisecond, so a run is stopped at most
    /// about a millisecond late, plus the time to its guest's next check.
    pub fn deadline(mut self, limit: Duration) -> Self {
        self.limits.deadline = Some(limit);
        self
    }

    /// What each run may see of the runs before it on the same instance
    /// (default [`Isolation::Pooled`]: everything). With
    /// [`Isolation::PerRun`], every run starts from the state the module had
    /// right after it started, at the cost of a reset after each run (see
    /// [`Isolation`]). The memory limit, table limit, CPU budget and deadline
    /// apply the same either way.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), scale_runtime::Error> {
    /// # let function: scale_func::ScaleFunc = todo!();
    /// use scale_runtime::{Isolation, Runtime};
    ///
    /// let runtime = Runtime::builder().function(function).isolation(Isolation::PerRun).build()?;
    /// assert_eq!(runtime.isolation(), Isolation::PerRun);
    /// # Ok(()) }
    /// ```
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.limits.isolation = isolation;
        self
    }

    /// How many idle instances to keep per function (default 64).
    pub fn max_idle(mut self, instances: usize) -> Self {
        self.limits.max_idle = instances;
        self
    }

    /// Recycles an instance after this many runs (default 100,000).
    pub fn max_uses(mut self, runs: u64) -> Self {
        self.limits.max_uses = runs.max(1);
        self
    }

    /// Recycles an instance whose memory grew past this many bytes, instead of
    /// keeping it idle (wasm memory never shrinks). Default: half the memory limit.
    pub fn memory_high_water(mut self, bytes: u64) -> Self {
        self.limits.memory_high_water = bytes;
        self
    }

    /// Keeps compiled modules in `dir` and loads them from there next time.
    /// Entries are keyed by the module's hash, the wasmer version and the
    /// engine settings, and carry a checksum: a corrupt or foreign entry is
    /// recompiled, never loaded.
    ///
    /// A directory that cannot be made fails [`RuntimeBuilder::build`] with
    /// [`Error::Cache`].
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = Some(CacheSetting { dir: dir.into(), required: true });
        self
    }

    /// Keeps compiled modules in this user's cache directory
    /// ([`default_cache_dir`](crate::default_cache_dir): `$SCALE_CACHE_DIR`,
    /// else `~/.cache/scale/modules` on Linux), as the `scale` command does.
    /// The second load of a function then takes milliseconds instead of a
    /// compile. Where there is no such directory, or it cannot be made,
    /// modules are compiled every time, with a warning in the log.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let function = scale_runtime::ScaleFunc::decode(&std::fs::read("hello.scale")?)?;
    /// let runtime = scale_runtime::Runtime::builder().function(function).default_cache().build()?;
    /// # Ok(()) }
    /// ```
    pub fn default_cache(mut self) -> Self {
        self.cache = match module::default_cache_dir() {
            Some(dir) => Some(CacheSetting { dir, required: false }),
            None => {
                tracing::warn!("no cache directory for this user; compiled modules are not kept");
                None
            }
        };
        self
    }

    /// Compiles and checks every function, and makes one instance of each.
    ///
    /// # Errors
    ///
    /// [`Error::NoFunctions`], [`Error::ChainTooLong`], [`Error::SignatureMismatch`],
    /// [`Error::InvalidModule`] (naming the export or import),
    /// [`Error::Instantiation`], [`Error::Cache`].
    pub fn build(self) -> Result<Runtime<S>, Error> {
        if self.functions.is_empty() {
            return Err(Error::NoFunctions);
        }
        if self.functions.len() > MAX_CHAIN_LENGTH {
            return Err(Error::ChainTooLong { functions: self.functions.len(), max: MAX_CHAIN_LENGTH });
        }
        let settings = EngineSettings {
            cpu_budget: self.limits.cpu_budget,
            metered: self.limits.metered(),
            memory_limit_pages: (self.limits.memory_limit / PAGE_BYTES) as u32,
            table_limit: self.limits.table_limit(),
            isolation: self.limits.isolation,
        };
        // One engine for all functions, except with metering, whose
        // middleware keeps per-module state: then one engine per function.
        let shared_engine = (!settings.metered).then(|| build_engine(settings));
        let mut functions = Vec::with_capacity(self.functions.len());
        for function in &self.functions {
            let name = function.name();
            let found = function.signature().to_string();
            if found != signature::id::<S>() {
                return Err(Error::SignatureMismatch {
                    function: name.to_string(),
                    expected: signature::id::<S>(),
                    found,
                });
            }
            let engine = shared_engine.clone().unwrap_or_else(|| build_engine(settings));
            let module =
                module::load(name, function.function(), &function.checksum(), &engine, settings, self.cache.as_ref())?;
            module::validate(name, &module, settings)?;
            let imports = ImportPlan::resolve(&module, &engine)
                .map_err(|reason| Error::InvalidModule { function: name.to_string(), reason })?;
            let compiled = Compiled {
                name: Arc::from(name),
                engine,
                module,
                limits: self.limits,
                imports,
                templates: Templates::default(),
            };
            functions.push(PooledFunction::new(compiled, self.limits.max_idle)?);
        }
        Ok(Runtime { inner: Arc::new(RuntimeInner { functions, limits: self.limits }) })
    }
}

struct RuntimeInner<S: Signature> {
    functions: Vec<PooledFunction<S>>,
    limits: Limits,
}

/// A chain of compiled functions, ready to hand out instances.
///
/// `Runtime` is `Send + Sync` and cheap to clone (an `Arc` inside): share it
/// between threads and call [`Runtime::instance`] wherever a request is
/// handled.
///
/// Instances hold their functions' compiled modules and pools alive: an
/// [`Instance`] keeps working after every `Runtime` handle has dropped, and
/// its guests are freed when it drops.
///
/// ```no_run
/// use scale_runtime::Runtime;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let function = scale_func::ScaleFunc::decode(&std::fs::read("hello.scale")?)?;
/// let runtime = Runtime::new([function])?;
///
/// let mut instance = runtime.instance()?;
/// instance.context_mut().request.set_body_string("Hello");
/// instance.run()?;
/// println!("{:?}", instance.context().response.body_str());
/// # Ok(()) }
/// ```
pub struct Runtime<S: Signature = scale_signature_http::Context> {
    inner: Arc<RuntimeInner<S>>,
}

impl<S: Signature> Clone for Runtime<S> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<S: Signature> fmt::Debug for Runtime<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("signature", &signature::id::<S>())
            .field("functions", &self.function_names())
            .finish()
    }
}

impl Runtime {
    /// A runtime for the HTTP signature running `functions` as a chain, in
    /// order, with the default settings. See [`RuntimeBuilder::build`] for the errors.
    pub fn new(functions: impl IntoIterator<Item = ScaleFunc>) -> Result<Self, Error> {
        RuntimeBuilder::new().functions(functions).build()
    }

    /// A builder for an HTTP-signature runtime with non-default settings.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::new()
    }
}

impl<S: Signature> Runtime<S> {
    /// A builder for a runtime of another signature (the `NewWithSignature` of Scale).
    pub fn with_signature() -> RuntimeBuilder<S> {
        RuntimeBuilder::new()
    }

    /// The names of the chain's functions, in order.
    pub fn function_names(&self) -> Vec<&str> {
        self.inner.functions.iter().map(|f| &*f.name).collect()
    }

    /// The CPU budget of each run, in wasm operations, if one was set
    /// ([`RuntimeBuilder::cpu_budget`]). A server can rely on it to bound how
    /// long one run holds a thread.
    pub fn cpu_budget(&self) -> Option<u64> {
        self.inner.limits.cpu_budget
    }

    /// The deadline of each run, if one was set ([`RuntimeBuilder::deadline`]).
    pub fn deadline(&self) -> Option<Duration> {
        self.inner.limits.deadline
    }

    /// What each run sees of the runs before it ([`RuntimeBuilder::isolation`]).
    pub fn isolation(&self) -> Isolation {
        self.inner.limits.isolation
    }

    /// The memory limit of each guest instance, in bytes.
    pub fn memory_limit(&self) -> u64 {
        self.inner.limits.memory_limit
    }

    /// An instance with no native handlers: after the last function, `next`
    /// hands the context back unchanged. Add handlers with
    /// [`Instance::with_handler`].
    ///
    /// Takes one pooled guest instance per function (making new ones when the
    /// pools are empty); they go back to the pools when the `Instance` drops.
    ///
    /// # Errors
    ///
    /// [`Error::Instantiation`] when a fresh guest instance cannot be made.
    pub fn instance(&self) -> Result<Instance<S>, Error> {
        let mut chain = Chain::Handlers(Vec::new());
        for function in self.inner.functions.iter().rev() {
            let mut guest = match function.checkout() {
                Ok(guest) => guest,
                Err(err) => {
                    chain.release();
                    return Err(err);
                }
            };
            guest.next = Some(chain);
            chain = Chain::Guest(Link { function: Arc::clone(function.for_this_thread()), guest, poisoned: false });
        }
        let context = match &mut chain {
            Chain::Guest(head) => head.guest.parked_context.take(),
            Chain::Handlers(_) => None,
        };
        Ok(Instance::new(chain, context.unwrap_or_default()))
    }

    /// Drops every idle instance. Instances in use finish their runs normally
    /// and are dropped, not kept, when they come back.
    pub fn clear(&self) {
        for function in &self.inner.functions {
            function.clear();
        }
    }

    /// What the pools have done, summed over all functions.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.functions.iter().map(|f| f.stats()).fold(PoolStats::default(), |a, b| a + b)
    }

    /// What the pool of each function has done, in chain order.
    pub fn function_pool_stats(&self) -> Vec<(&str, PoolStats)> {
        self.inner.functions.iter().map(|f| (&*f.name, f.stats())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::RunAsync;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    /// The thread story the crate documents: runtimes are shared, instances
    /// and their runs move between threads.
    #[test]
    fn thread_story_holds() {
        assert_send_sync::<Runtime>();
        assert_send::<Instance>();
        assert_send::<RunAsync<'static>>();
    }

    /// The smallest module the runtime accepts: `run` answers with the
    /// default context, stored at address 8.
    const MODULE: &str = r#"(module
        (memory (export "memory") 1)
        (data (i32.const 8) "\0a\04\0a\00\12\00")
        (func (export "scale_abi_version") (result i32) i32.const 2)
        (func (export "resize") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32) (result i64) i64.const 0x0000000800000006))"#;

    fn runtime() -> Runtime {
        let wasm = wasmer::wat2wasm(MODULE.as_bytes()).expect("the test module is valid WAT");
        let signature = scale_func::SignatureId::new("http", "v0.1.0").expect("a valid signature");
        let function = ScaleFunc::new("tiny", "test", signature, scale_func::Language::Rust, wasm.into_owned())
            .expect("a valid function");
        Runtime::new([function]).expect("the module loads")
    }

    /// Instances hold their functions through per-thread references, and nothing points
    /// back from a function to them: a function (its module and its idle
    /// guests) lives exactly as long as its runtime or an instance does.
    #[test]
    fn a_function_is_freed_with_its_runtime_and_last_instance() {
        let runtime = runtime();
        let function = runtime.inner.functions[0].downgrade();
        let mut here = runtime.instance().expect("an instance");
        here.run().expect("a run");
        let there = std::thread::scope(|scope| {
            scope.spawn(|| runtime.instance().expect("an instance on another thread")).join().expect("no panic")
        });
        drop(runtime);
        assert!(function.upgrade().is_some(), "instances keep the function");
        here.run().expect("a run after the runtime dropped");
        drop(here);
        assert!(function.upgrade().is_some(), "the other instance keeps the function");
        drop(there);
        assert!(function.upgrade().is_none(), "nothing keeps the function any more");
    }
}
