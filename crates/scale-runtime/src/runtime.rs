//! `Runtime`, its builder, `Instance`, and the per-function pools.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use scale_func::ScaleFunc;
use wasmer::{Engine, Module};

use crate::awaiting::{self, Caller, Exchange};
use crate::deadline;
use crate::engine::{EngineSettings, build_engine};
use crate::error::{Error, HandlerError};
use crate::guest::{Downstream, Guest, Handler, Link};
use crate::isolation::{Isolation, Templates};
use crate::module;
use crate::module::CacheSetting;
use crate::signature::{self, Signature};

/// The default memory limit of one guest instance: 64 MiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 << 20;
/// The default number of idle instances kept per function.
pub const DEFAULT_MAX_IDLE: usize = 64;
/// The most functions one chain may have. A guest's `next` runs the rest of
/// the chain nested inside its own call, so the host's stack grows with every
/// link: a debug build uses about 12 KiB per link, so 64 links fit well in the
/// 2 MiB of a spawned thread (tokio's blocking threads included).
pub const MAX_CHAIN_LENGTH: usize = 64;
/// The default number of runs after which an instance is recycled.
pub const DEFAULT_MAX_USES: u64 = 100_000;
/// The default number of table elements one guest instance may have, over
/// all its tables: 65,536 (512 KiB on the host), or fewer under a memory
/// limit below 4 MiB: tables take at most an eighth of it by default.
pub const DEFAULT_TABLE_LIMIT: u32 = 1 << 16;

const PAGE: u64 = 64 * 1024;

/// Limits that apply to every guest instance of a runtime.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub memory_limit: u64,
    /// `None`: [`DEFAULT_TABLE_LIMIT`], at most an eighth of the memory limit.
    pub table_limit: Option<u32>,
    pub cpu_budget: Option<u64>,
    pub deadline: Option<Duration>,
    pub max_idle: usize,
    pub max_uses: u64,
    pub memory_high_water: u64,
    pub isolation: Isolation,
}

impl Limits {
    /// The table limit in elements: as set, or the default.
    pub fn table_limit(&self) -> u32 {
        self.table_limit.unwrap_or_else(|| {
            let eighth = self.memory_limit / 8 / crate::engine::TABLE_ELEMENT_BYTES;
            DEFAULT_TABLE_LIMIT.min(u32::try_from(eighth).unwrap_or(u32::MAX))
        })
    }

    /// Whether guests are compiled to count their work: for a CPU budget,
    /// and for a deadline, which stops them through the same checks.
    pub fn metered(&self) -> bool {
        self.cpu_budget.is_some() || self.deadline.is_some()
    }
}

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
        self.limits.memory_limit = bytes.clamp(PAGE, 1 << 32) / PAGE * PAGE;
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
    /// default: metering costs some speed (about a tenth of the
    /// instructions of a request to `scale serve`'s built-in function).
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
    /// it executes; in our fixtures about 1.15× that count for Go guests and
    /// 1.5× for Rust ones. The points left are checked when a function starts
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
        self.cache = match crate::default_cache_dir() {
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
            memory_limit_pages: (self.limits.memory_limit / PAGE) as u32,
            table_limit: self.limits.table_limit(),
            isolation: self.limits.isolation,
        };
        // One engine for all functions, except with metering, whose
        // middleware keeps per-module state: then one engine per function.
        let shared_engine = (!settings.metered).then(|| build_engine(settings));
        // One anchor per thread slot; as many shards, but never more than
        // the idle instances allowed.
        let anchors_per_function = slot_count();
        let shards = anchors_per_function.min(self.limits.max_idle);
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
            let shared = Arc::new(FunctionShared {
                name: Arc::from(name),
                engine,
                module,
                limits: self.limits,
                shards: (0..shards).map(|_| Shard { slot: Mutex::new(None), reused: AtomicU64::new(0) }).collect(),
                pool: object_pool::Pool::from_vec(Vec::new()),
                idle: AtomicUsize::new(0),
                pool_capacity: self.limits.max_idle - shards,
                generation: AtomicU64::new(0),
                stats: Counters::default(),
                templates: Templates::default(),
            });
            // Instantiating once now reports instantiation problems at load
            // time, and leaves a warm instance in the pool.
            let guest = Box::new(Guest::instantiate(&shared, 0)?);
            shared.stats.created.fetch_add(1, Ordering::Relaxed);
            // Shared, not in this thread's shard: the first run may come
            // from any thread.
            shared.park_shared(guest);
            let anchors =
                (0..anchors_per_function).map(|_| Arc::new(Anchor { function: Arc::clone(&shared) })).collect();
            functions.push(Function { shared, anchors });
        }
        Ok(Runtime { inner: Arc::new(RuntimeInner { functions, limits: self.limits }) })
    }
}

/// Counters of one function's pool.
#[derive(Debug, Default)]
struct Counters {
    created: AtomicU64,
    reused: AtomicU64,
    discarded: AtomicU64,
}

/// What a function's pool has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Instances made (each one a full instantiation of the module).
    pub created: u64,
    /// Times an idle instance was handed out again.
    pub reused: u64,
    /// Instances dropped instead of kept: after a trap or malformed output,
    /// after `max_uses`, past the memory high-water mark, after `clear()`,
    /// or because the pool was full.
    pub discarded: u64,
    /// Instances idle in the pool now.
    pub idle: u64,
}

impl std::ops::Add for PoolStats {
    type Output = PoolStats;

    fn add(self, other: PoolStats) -> PoolStats {
        PoolStats {
            created: self.created + other.created,
            reused: self.reused + other.reused,
            discarded: self.discarded + other.discarded,
            idle: self.idle + other.idle,
        }
    }
}

/// One function of a runtime: its compiled module and its pool.
pub(crate) struct FunctionShared<S: Signature> {
    pub name: Arc<str>,
    pub engine: Engine,
    pub module: Module,
    pub limits: Limits,
    /// Idle guests kept per thread, tried before `pool`: at most one each.
    shards: Box<[Shard<S>]>,
    /// The shared idle guests, beyond the shards'.
    pool: object_pool::Pool<Box<Guest<S>>>,
    /// How many guests `pool` holds, kept beside it so that taking a guest
    /// back is one lock, not two.
    idle: AtomicUsize,
    /// How many guests `pool` may hold: `max_idle` less the shards.
    pool_capacity: usize,
    /// Bumped by `clear()`: instances of an older generation are not kept.
    generation: AtomicU64,
    stats: Counters,
    /// What new instances start from under per-run isolation.
    pub templates: Templates,
}

/// One idle guest kept for the threads that map to this shard (usually a
/// single thread), alone on its cache lines. A thread that runs a function
/// again and again takes its guest from its shard and puts it back there,
/// touching nothing that other threads touch: no shared lock, counter or
/// cache line moves between cores on the hot path.
#[repr(align(128))]
struct Shard<S: Signature> {
    slot: Mutex<Option<Box<Guest<S>>>>,
    /// Guests handed out again from this shard.
    reused: AtomicU64,
}

impl<S: Signature> Shard<S> {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Box<Guest<S>>>> {
        // A panic cannot leave the `Option` half-written: use it as it is.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A share in one function's reference count, for the instances of the
/// threads that map to it (usually a single thread), alone on its cache
/// lines. An instance holds each function through its thread's anchor, not
/// through the function's own `Arc`: taking and dropping instances then
/// counts on memory that no other thread writes, while the function itself
/// is only read on the hot path. The runtime holds every anchor; the
/// function is freed when the runtime and the last instance have dropped.
#[repr(align(128))]
pub(crate) struct Anchor<S: Signature> {
    function: Arc<FunctionShared<S>>,
}

impl<S: Signature> std::ops::Deref for Anchor<S> {
    type Target = FunctionShared<S>;

    fn deref(&self) -> &FunctionShared<S> {
        &self.function
    }
}

/// How many thread slots a function has (anchors, and shards at most):
/// one per CPU, at most 16.
fn slot_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(16)
}

/// This thread's number, for picking a shard: threads are numbered in the
/// order they first ask.
fn thread_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|number| *number)
}

impl<S: Signature> FunctionShared<S> {
    /// The shard of the calling thread, if the function has shards.
    fn shard(&self) -> Option<&Shard<S>> {
        match self.shards.len() {
            0 => None,
            n => Some(&self.shards[thread_number() % n]),
        }
    }

    /// An idle instance, or a new one.
    fn checkout(&self) -> Result<Box<Guest<S>>, Error> {
        let generation = self.generation.load(Ordering::Acquire);
        let current = |guest: Box<Guest<S>>| {
            if guest.generation == generation {
                return Some(guest);
            }
            self.stats.discarded.fetch_add(1, Ordering::Relaxed);
            None
        };
        // This thread's shard first: the hot path.
        if let Some(shard) = self.shard() {
            let taken = shard.slot().take();
            if let Some(guest) = taken.and_then(current) {
                shard.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(guest);
            }
        }
        while let Some(guest) = self.pull() {
            if let Some(guest) = current(guest) {
                self.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(guest);
            }
        }
        // Before making a new instance, one idle in another thread's shard
        // (a thread that has stopped running this function, say).
        for shard in self.shards.iter() {
            let taken = match shard.slot.try_lock() {
                Ok(mut slot) => slot.take(),
                Err(_) => None,
            };
            if let Some(guest) = taken.and_then(current) {
                self.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(guest);
            }
        }
        let guest = Box::new(Guest::instantiate(self, generation)?);
        self.stats.created.fetch_add(1, Ordering::Relaxed);
        Ok(guest)
    }

    fn pull(&self) -> Option<Box<Guest<S>>> {
        let (_, guest) = self.pool.try_pull()?.detach();
        self.idle.fetch_sub(1, Ordering::Relaxed);
        Some(guest)
    }

    /// Takes an instance back: kept idle if it is healthy, else dropped.
    fn checkin(&self, mut guest: Box<Guest<S>>, poisoned: bool) {
        let healthy = !poisoned
            && guest.generation == self.generation.load(Ordering::Acquire)
            && guest.uses < self.limits.max_uses
            && guest.memory_bytes() <= self.limits.memory_high_water;
        if !healthy {
            self.stats.discarded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        guest.next = None;
        guest.spare.reset();
        if let Some(context) = &mut guest.lent {
            context.reset();
        }
        if let Some(shard) = self.shard() {
            let mut slot = shard.slot();
            if slot.is_none() {
                *slot = Some(guest);
                return;
            }
        }
        self.park_shared(guest);
    }

    /// Keeps a healthy, reset guest in the shared pool or, when that is
    /// full, in any empty shard; drops it when there is no room left.
    fn park_shared(&self, guest: Box<Guest<S>>) {
        // Reserve a place first, so that racing check-ins cannot overfill the pool.
        if self.idle.fetch_add(1, Ordering::Relaxed) < self.pool_capacity {
            self.pool.attach(guest);
            return;
        }
        self.idle.fetch_sub(1, Ordering::Relaxed);
        for shard in self.shards.iter() {
            if let Ok(mut slot) = shard.slot.try_lock()
                && slot.is_none()
            {
                *slot = Some(guest);
                return;
            }
        }
        self.stats.discarded.fetch_add(1, Ordering::Relaxed);
    }

    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            let taken = shard.slot().take();
            if let Some(guest) = taken {
                drop(guest);
                self.stats.discarded.fetch_add(1, Ordering::Relaxed);
            }
        }
        while let Some(guest) = self.pull() {
            drop(guest);
            self.stats.discarded.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn stats(&self) -> PoolStats {
        let in_shards = self.shards.iter().filter(|shard| shard.slot().is_some()).count();
        let reused_from_shards: u64 = self.shards.iter().map(|shard| shard.reused.load(Ordering::Relaxed)).sum();
        PoolStats {
            created: self.stats.created.load(Ordering::Relaxed),
            reused: self.stats.reused.load(Ordering::Relaxed) + reused_from_shards,
            discarded: self.stats.discarded.load(Ordering::Relaxed),
            idle: (self.pool.len() + in_shards) as u64,
        }
    }
}

/// One function of a runtime, with the anchors its instances hold it by.
struct Function<S: Signature> {
    shared: Arc<FunctionShared<S>>,
    anchors: Box<[Arc<Anchor<S>>]>,
}

impl<S: Signature> std::ops::Deref for Function<S> {
    type Target = FunctionShared<S>;

    fn deref(&self) -> &FunctionShared<S> {
        &self.shared
    }
}

impl<S: Signature> Function<S> {
    /// The calling thread's anchor.
    fn anchor(&self) -> &Arc<Anchor<S>> {
        &self.anchors[thread_number() % self.anchors.len()]
    }
}

struct RuntimeInner<S: Signature> {
    functions: Vec<Function<S>>,
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
        let mut chain = Downstream::Handlers(Vec::new());
        for function in self.inner.functions.iter().rev() {
            let mut guest = match function.checkout() {
                Ok(guest) => guest,
                Err(err) => {
                    release(chain);
                    return Err(err);
                }
            };
            guest.next = Some(chain);
            chain = Downstream::Guest(Link { function: Arc::clone(function.anchor()), guest, poisoned: false });
        }
        let lent = match &mut chain {
            Downstream::Guest(head) => head.guest.lent.take(),
            Downstream::Handlers(_) => None,
        };
        Ok(Instance { chain: Some(chain), context: Some(lent.unwrap_or_default()), holds_result: false })
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

/// Returns every guest of a chain to its pool.
fn release<S: Signature>(chain: Downstream<S>) {
    let mut next = Some(chain);
    while let Some(Downstream::Guest(Link { function, mut guest, poisoned })) = next {
        next = guest.next.take();
        function.checkin(guest, poisoned);
    }
}

/// One use of a runtime's chain: a context, the guest instances to run it
/// through, and the native handlers that follow the last function.
///
/// Reusable for many runs. `Send`, but used through `&mut self`, so one
/// thread at a time uses it. Its guest instances go back to the runtime's
/// pools when it drops.
pub struct Instance<S: Signature = scale_signature_http::Context> {
    chain: Option<Downstream<S>>,
    /// Always present; an `Option` so that `drop` can hand it back to the
    /// chain's first guest for the next instance. Boxed, so that handing
    /// it out, moving the instance and handing it back move a pointer, not
    /// the whole context (several hundred bytes for HTTP).
    context: Option<Box<S>>,
    /// Whether the context holds a run's result, which the next run must
    /// not see: the next change or run starts from a default context.
    holds_result: bool,
}

impl<S: Signature> fmt::Debug for Instance<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

impl<S: Signature> Instance<S> {
    /// Adds a native handler, run after the last function (and after the
    /// handlers added before it) when that function calls `next`. A handler's
    /// error comes back to the calling guest as the error of its `next`.
    pub fn with_handler<F>(mut self, handler: F) -> Self
    where
        F: FnMut(&mut S) -> Result<(), HandlerError> + Send + 'static,
    {
        self.add_handler(Handler::Sync(Box::new(handler)));
        self
    }

    /// Adds an async native handler: like [`with_handler`](Self::with_handler),
    /// but the handler takes the context and returns a future that gives it
    /// back (or fails). While the future is pending, the chain waits inside
    /// the last function's `next`.
    ///
    /// Under [`run_async`](Self::run_async) the future is polled by the task
    /// awaiting the run, in that task's async runtime (its timers and I/O
    /// work), and no thread of that runtime is blocked meanwhile. Under
    /// [`run`](Self::run) it is polled on the thread calling `run`, which
    /// sleeps while it is pending: there, a future that needs an async
    /// runtime's reactor (a tokio timer or socket) does not work.
    ///
    /// A run with a deadline ([`RuntimeBuilder::deadline`]) does not wait
    /// for the future past it: the run fails with [`Error::Deadline`] and the
    /// future is dropped.
    ///
    /// ```no_run
    /// # async fn example(runtime: scale_runtime::Runtime) -> Result<(), scale_runtime::Error> {
    /// let mut instance = runtime.instance()?.with_async_handler(|mut ctx: scale_runtime::Context| async move {
    ///     // Await a database, another service, a timer...
    ///     ctx.response.set_body_string("from an async handler");
    ///     Ok(ctx)
    /// });
    /// instance.run_async().await?;
    /// # Ok(()) }
    /// ```
    pub fn with_async_handler<F, Fut>(mut self, mut handler: F) -> Self
    where
        F: FnMut(S) -> Fut + Send + 'static,
        Fut: Future<Output = Result<S, HandlerError>> + Send + 'static,
    {
        self.add_handler(Handler::Async(Box::new(move |ctx| Box::pin(handler(ctx)))));
        self
    }

    /// Appends a handler to the end of the chain (dropped on an instance
    /// whose chain was abandoned: it never runs again).
    fn add_handler(&mut self, handler: Handler<S>) {
        let mut at = self.chain.as_mut();
        while let Some(Downstream::Guest(link)) = at {
            at = link.guest.next.as_mut();
        }
        if let Some(Downstream::Handlers(handlers)) = at {
            handlers.push(handler);
        }
    }

    /// The context: before a run, what the chain will get; after it, what
    /// the chain made (for HTTP, the response, and the request as the chain
    /// left it).
    pub fn context(&self) -> &S {
        self.context.as_deref().expect("an instance has a context until it drops")
    }

    /// The context, for setting what the next run gets.
    ///
    /// Each run starts from a default context: after a run, the first call
    /// of `context_mut` (or the next [`Instance::run`], whichever comes first)
    /// sets the context back to its default, so nothing a run left, such as a
    /// response header, reaches the next one. Read a run's result with
    /// [`Instance::context`] before setting up the next run.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = scale_runtime::Runtime::new([])?;
    /// let mut instance = runtime.instance()?;
    /// for name in ["Ada", "Grace"] {
    ///     // A default request and response, whatever the last run made.
    ///     instance.context_mut().request.set_body_string(name);
    ///     instance.run()?;
    ///     println!("{}", instance.context().response.body_str().unwrap_or(""));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn context_mut(&mut self) -> &mut S {
        let context = self.context.as_deref_mut().expect("an instance has a context until it drops");
        if std::mem::take(&mut self.holds_result) {
            context.reset();
        }
        context
    }

    /// Replaces the context, returning the old one (after a run, the
    /// result).
    pub fn set_context(&mut self, context: S) -> S {
        self.holds_result = false;
        let slot = self.context.as_deref_mut().expect("an instance has a context until it drops");
        std::mem::replace(slot, context)
    }

    /// Runs the chain on the context.
    ///
    /// The chain gets what was set since the last run on a default context
    /// (see [`Instance::context_mut`]): running an instance again without
    /// setting anything runs it on a default context, not on the last result.
    ///
    /// On success the context holds the chain's result. On error it holds
    /// what was set before the run, except for changes made by native
    /// handlers that ran before the failure. A guest instance that trapped
    /// or broke the ABI is replaced by a fresh one before the next run (under
    /// [`Isolation::PerRun`], reset like after any run).
    ///
    /// # Errors
    ///
    /// [`Error::Guest`], [`Error::Panic`], [`Error::Trap`],
    /// [`Error::MalformedOutput`], [`Error::MemoryLimit`], [`Error::CpuBudget`],
    /// [`Error::Deadline`], [`Error::Handler`] (when a guest passed a
    /// handler's error on), and [`Error::Instantiation`] when a replacement
    /// instance cannot be made.
    /// [`Error::Abandoned`] once a [`run_async`](Self::run_async) of this
    /// instance was given up.
    pub fn run(&mut self) -> Result<(), Error> {
        let (Some(chain), Some(context)) = (self.chain.as_mut(), self.context.as_deref_mut()) else {
            return Err(Error::Abandoned);
        };
        if std::mem::take(&mut self.holds_result) {
            context.reset();
        }
        let outcome = run_chain(chain, context);
        self.holds_result = true;
        outcome
    }

    /// Runs the chain on the context, as [`run`](Self::run) does, on a
    /// thread the runtime keeps for such runs, and resolves when the run
    /// ends. Async native handlers ([`with_async_handler`](Self::with_async_handler))
    /// are awaited here, in the async runtime polling this future (tokio's
    /// multi-thread or current-thread runtime, or any other).
    ///
    /// The guests' code never runs on the thread polling the future: a long
    /// run, or a handler that awaits, holds no thread of the async runtime.
    /// Each run in progress holds one of the runtime's runner threads,
    /// sleeping while a handler awaits (a guest's `next` keeps the host
    /// stack of the whole chain alive until it returns, so its run stays on
    /// its thread; the crate's `awaiting` module says why). Runner threads
    /// are started when none is idle and end after 30 s idle.
    ///
    /// The CPU budget, the deadline and the memory limits apply as in `run`;
    /// a deadline also ends a wait for an async handler.
    ///
    /// # Cancellation
    ///
    /// Dropping the future before it resolves gives the run up: a handler
    /// it awaits is dropped, the guest waiting for that handler and every
    /// guest above it stop at once (no guest code runs after that), and
    /// their instances are discarded, never pooled. The instance keeps no
    /// chain (its context is reset to the default), and later runs on it
    /// fail with [`Error::Abandoned`]; take a new instance from the
    /// [`Runtime`]. A run that had already ended keeps the instance whole.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run), and [`Error::Runner`] when no thread could be
    /// started for the run. A native handler's panic is resumed here.
    ///
    /// ```no_run
    /// # async fn example(runtime: scale_runtime::Runtime) -> Result<(), scale_runtime::Error> {
    /// let mut instance = runtime.instance()?.with_async_handler(|mut ctx: scale_runtime::Context| async move {
    ///     ctx.response.headers_mut().set("x-served-by", ["async"]);
    ///     Ok(ctx)
    /// });
    /// instance.context_mut().request.set_body_string("Hello");
    /// instance.run_async().await?;
    /// assert_eq!(instance.context().response.status_code, 200);
    /// # Ok(()) }
    /// ```
    pub fn run_async(&mut self) -> RunAsync<'_, S> {
        RunAsync { instance: self, caller: None, done: false }
    }
}

/// Runs `chain` on `context`: what [`Instance::run`] does.
fn run_chain<S: Signature>(chain: &mut Downstream<S>, context: &mut S) -> Result<(), Error> {
    let _span = tracing::debug_span!("run").entered();
    let limits = match chain {
        Downstream::Guest(head) => Some(head.function.limits),
        Downstream::Handlers(_) => None,
    };
    // The deadline covers making replacement instances too.
    let _run = limits.and_then(|limits| limits.deadline).map(deadline::begin);
    heal(chain)?;
    let mut points = crate::metering::initial_points(limits.and_then(|limits| limits.cpu_budget).unwrap_or(u64::MAX));
    chain.run(context, &mut points)
}

/// Replaces the guest instances of `chain` that may not run again.
fn heal<S: Signature>(chain: &mut Downstream<S>) -> Result<(), Error> {
    let mut at = Some(chain);
    while let Some(Downstream::Guest(link)) = at {
        if link.poisoned {
            let fresh = link.function.checkout()?;
            let mut old = std::mem::replace(&mut link.guest, fresh);
            link.guest.next = old.next.take();
            link.function.checkin(old, true);
            link.poisoned = false;
        }
        at = link.guest.next.as_mut();
    }
    Ok(())
}

/// What a run on a runner thread hands back: the chain, the context, and
/// how the run ended (a panic's payload if a native handler panicked).
type Outcome<S> = (Downstream<S>, Box<S>, std::thread::Result<Result<(), Error>>);

/// The future of [`Instance::run_async`]: resolves when the run ends.
///
/// `Send`; dropping it before it resolves gives the run up (see
/// [`Instance::run_async`]).
#[must_use = "a run_async future does nothing unless awaited"]
pub struct RunAsync<'a, S: Signature = scale_signature_http::Context> {
    instance: &'a mut Instance<S>,
    /// Present while the run is on its runner.
    caller: Option<Caller>,
    done: bool,
}

impl<S: Signature> fmt::Debug for RunAsync<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunAsync").field("running", &self.caller.is_some()).field("done", &self.done).finish()
    }
}

impl<S: Signature> RunAsync<'_, S> {
    /// Puts what a run handed back into the instance, and says how it ended.
    fn restore(&mut self, outcome: Box<dyn std::any::Any + Send>) -> std::thread::Result<Result<(), Error>> {
        match outcome.downcast::<Outcome<S>>() {
            Ok(outcome) => {
                let (chain, context, result) = *outcome;
                self.instance.chain = Some(chain);
                self.instance.context = Some(context);
                self.instance.holds_result = true;
                result
            }
            // Runs hand back exactly this type (see `start`).
            Err(_) => unreachable!("a run hands back its chain, context and result"),
        }
    }

    /// Moves the chain and the context to a runner thread and starts the run.
    fn start(&mut self) -> Result<Caller, Error> {
        let runner = awaiting::runner().map_err(|source| Error::Runner { source })?;
        if self.instance.chain.is_none() || self.instance.context.is_none() {
            return Err(Error::Abandoned);
        }
        let (Some(chain), Some(mut context)) = (self.instance.chain.take(), self.instance.context.take()) else {
            unreachable!("both checked above");
        };
        if std::mem::take(&mut self.instance.holds_result) {
            context.reset();
        }
        let exchange = Arc::new(Exchange::default());
        let run = move || -> Box<dyn std::any::Any + Send> {
            let (mut chain, mut context) = (chain, context);
            // A native handler's panic is resumed on the task awaiting the run,
            // as `run` lets it reach its caller.
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_chain(&mut chain, &mut *context)));
            Box::new((chain, context, result))
        };
        // Nobody waits for the run any more: its guests go back to their
        // pools, or are discarded if the run was stopped halfway (a guest
        // that stopped is poisoned).
        let dispose = |outcome: Box<dyn std::any::Any + Send>| {
            if let Ok(outcome) = outcome.downcast::<Outcome<S>>() {
                let (chain, _, _) = *outcome;
                release(chain);
            }
        };
        runner.run(Arc::clone(&exchange), run, dispose);
        Ok(Caller::new(exchange))
    }
}

impl<S: Signature> Future for RunAsync<'_, S> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(Error::Abandoned));
        }
        if this.caller.is_none() {
            match this.start() {
                Ok(caller) => this.caller = Some(caller),
                Err(err) => {
                    this.done = true;
                    return Poll::Ready(Err(err));
                }
            }
        }
        let caller = this.caller.as_mut().expect("started above");
        let Poll::Ready(outcome) = caller.poll(cx) else { return Poll::Pending };
        this.caller = None;
        this.done = true;
        match this.restore(outcome) {
            Ok(result) => Poll::Ready(result),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl<S: Signature> Drop for RunAsync<'_, S> {
    fn drop(&mut self) {
        let Some(caller) = self.caller.take() else { return };
        match caller.abandon() {
            // The run had ended: the instance is whole again. A panic of
            // that run has nobody to reach.
            Some(outcome) => drop(self.restore(outcome)),
            None => self.instance.context = Some(Box::default()),
        }
    }
}

impl<S: Signature> Drop for Instance<S> {
    fn drop(&mut self) {
        if let Some(mut chain) = self.chain.take() {
            if let Downstream::Guest(head) = &mut chain {
                head.guest.lent = self.context.take();
            }
            release(chain);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Instances hold their functions through anchors, and nothing points
    /// back from a function to them: a function (its module and its idle
    /// guests) lives exactly as long as its runtime or an instance does.
    #[test]
    fn a_function_is_freed_with_its_runtime_and_last_instance() {
        let runtime = runtime();
        let function = Arc::downgrade(&runtime.inner.functions[0].shared);
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
