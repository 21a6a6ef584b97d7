//! One instantiated guest module and the host side of the ABI.
//!
//! A [`Guest`] owns a wasmer `Store` with one instance of a function's
//! module. The chain of an [`Instance`](crate::Instance) is a linked list of
//! [`Link`]s ending in the native [`Handlers`]; while a guest runs, the rest
//! of the chain is moved into its store's [`GuestEnv`], so that the guest's
//! `next` import can run it. Ownership moves in and out; nothing is shared.

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use scale_signature_http::raw::chunked_copy;

use wasmer::{
    AsStoreMut, Function, FunctionEnv, FunctionEnvMut, Global, Imports, Memory, MemoryView, RuntimeError, Store,
    TypedFunction, Value,
};

use crate::awaiting::{self, BoxedAsyncHandler, Interrupted};
use crate::deadline;
use crate::engine::{CappedTable, clear_grow_refused, grow_refused, set_grow_refused, take_capped_tables};
use crate::error::{Error, HandlerError};
use crate::isolation::{self, Isolation, ResetError, Snapshot, take_created_regions};
use crate::metering;
use crate::runtime::{Anchor, FunctionShared};
use crate::signature::Signature;
use crate::wasi::{self, Capture};

/// A native handler, run after the last function of the chain.
pub(crate) type BoxedHandler<S> = Box<dyn FnMut(&mut S) -> Result<(), HandlerError> + Send>;

/// A native handler: one that answers at once, or one that is awaited.
pub(crate) enum Handler<S> {
    Sync(BoxedHandler<S>),
    Async(BoxedAsyncHandler<S>),
}

/// Why a host function stopped the guest. Raised as a wasm trap and
/// recognised again when the trap reaches the host.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostTrap {
    /// The guest handed the host bad pointers or bytes.
    #[error("{0}")]
    Malformed(String),
    /// The guest called `proc_exit` (or `proc_raise`).
    #[error("the guest exited with code {0}")]
    Exit(u32),
    /// The run's budget or deadline ran out while the host worked for the
    /// guest (the rest of the chain, through `next`). The guest's meter
    /// notes it; this only stops the guest.
    #[error("the run's budget or deadline ran out")]
    OutOfTime,
    /// The run was abandoned while a native handler was awaited: the guest
    /// stops, and so does every guest of the chain above it.
    #[error("the run was abandoned")]
    Abandoned,
}

/// A guest's CPU budget: where its metering keeps the points left, and
/// the global it notes why it stopped in.
#[derive(Clone)]
pub(crate) struct Meter {
    points: Points,
    exhausted: Global,
}

/// The address of a guest's points (the metering global `remaining`).
#[derive(Clone, Copy)]
struct Points(NonNull<i64>);

// SAFETY: the address points into the instance of the guest whose store
// holds this value (in its `GuestEnv`) or that owns it (`Guest`); it is
// used only through `Meter`, by the thread running that guest, while the
// store is alive. Moving it to another thread with the guest changes
// nothing (see the `Send` impl of `Guest`).
unsafe impl Send for Points {}

impl Meter {
    /// The points, as an atomic: the deadline watchdog stores to them from
    /// another thread.
    fn cell(&self) -> &AtomicI64 {
        // SAFETY: `points` is the 8-byte aligned value of an i64 global of
        // a live instance (see `Points`); every access from Rust is atomic
        // (this one and the watchdog's), and the guest's own code, which
        // reads and writes it with plain aligned loads and stores, does not
        // run while the host is in here for it on this thread.
        unsafe { AtomicI64::from_ptr(self.points.0.as_ptr()) }
    }

    /// The points left.
    fn get(&self) -> i64 {
        self.cell().load(Ordering::Relaxed)
    }

    fn set(&self, points: i64) {
        self.cell().store(points, Ordering::Relaxed);
    }

    /// What the guest's metering noted this run: `OUT_OF_POINTS`,
    /// `TABLE_REFUSED` or 0.
    fn noted(&self, store: &mut impl AsStoreMut) -> i32 {
        self.exhausted.get(store).i32().unwrap_or(0)
    }

    /// Whether the guest has no points left or its run is past the
    /// deadline (the watchdog takes the points then); a host function
    /// seeing it stops the guest with [`HostTrap::OutOfTime`]. The trap is
    /// classified by the points and the clock.
    pub(crate) fn out_of_time(&self) -> bool {
        self.get() < 0 || deadline::passed()
    }

    /// Notes that the guest is out of points, for a trap raised by the host.
    fn note_out_of_points(&self, store: &mut impl AsStoreMut) {
        // The global is a mutable i32 the middleware added: setting it
        // cannot fail.
        let _ = self.exhausted.set(store, Value::I32(metering::OUT_OF_POINTS));
    }
}

/// Charges a guest's budget for host work done on its behalf: `points`
/// (bytes moved, nanoseconds slept). The guest's next check traps when too
/// few are left; past the run's deadline, none are.
pub(crate) fn charge(meter: Option<&Meter>, points: u64) {
    let Some(meter) = meter else { return };
    let left = if deadline::passed() {
        deadline::STOPPED
    } else {
        meter.get().saturating_sub(i64::try_from(points).unwrap_or(i64::MAX)).max(deadline::STOPPED)
    };
    meter.set(left);
}

/// The host state of one guest instance, reachable from its imports.
pub(crate) struct GuestEnv<S: Signature> {
    pub memory: Option<Memory>,
    /// The rest of the chain, present only while this guest runs.
    pub downstream: Option<Downstream<S>>,
    /// The first failure further down the chain during this run.
    pub downstream_failure: Option<Error>,
    /// An answer to `next` that did not fit the guest's buffer.
    pub kept: Option<Vec<u8>>,
    /// Scratch space for encoding answers to `next`.
    pub scratch: Vec<u8>,
    /// The context `next` decodes into, kept for the next call.
    pub next_context: Option<S>,
    /// What the guest reported through `env.panic` during this run.
    pub panic_message: Option<String>,
    /// The ABI version the guest speaks (1 until it has said).
    pub abi: u32,
    /// The context this run was given, as encoded by the host, while the
    /// guest runs (for `Signature::validate`).
    pub sent: Vec<u8>,
    pub stdout: Capture,
    pub stderr: Capture,
    /// The guest's CPU budget, when it is metered.
    pub meter: Option<Meter>,
}

impl<S: Signature> GuestEnv<S> {
    fn new() -> Self {
        Self {
            memory: None,
            downstream: None,
            downstream_failure: None,
            kept: None,
            scratch: Vec::new(),
            next_context: None,
            panic_message: None,
            abi: scale_abi::OLDEST,
            sent: Vec::new(),
            stdout: Capture::default(),
            stderr: Capture::default(),
            meter: None,
        }
    }

    /// Forgets everything from the previous run.
    fn reset(&mut self) {
        self.downstream_failure = None;
        self.kept = None;
        self.panic_message = None;
        self.stdout.clear();
        self.stderr.clear();
    }
}

/// One instantiated module, ready to run.
pub(crate) struct Guest<S: Signature> {
    store: Store,
    env: FunctionEnv<GuestEnv<S>>,
    memory: Memory,
    resize: TypedFunction<u32, u32>,
    run: TypedFunction<u32, u64>,
    /// The input buffer from the last `resize`: address and size.
    input: (u32, u32),
    /// The CPU budget, when metering is on.
    metering: Option<Meter>,
    /// Tables whose growth the table limit may refuse.
    capped_tables: Vec<CappedTable>,
    /// The state right after start-up, under per-run isolation: each run
    /// ends by going back to it.
    snapshot: Option<Snapshot>,
    /// Encoded input for the next call.
    encoded: Vec<u8>,
    /// What follows this guest in its instance's chain; `None` while pooled,
    /// and moved into the env while the guest runs.
    pub next: Option<Downstream<S>>,
    /// The guest's result is decoded into this context, which then trades
    /// places with the caller's: steady-state runs reuse the allocations of
    /// the contexts before them. Reset before the guest goes back to the pool.
    pub spare: S,
    /// A context kept for the next `Instance` that has this guest first in
    /// its chain, so that getting an instance allocates nothing. Reset before
    /// the guest goes back to the pool.
    pub lent: Option<Box<S>>,
    pub uses: u64,
    pub generation: u64,
    /// The size of the guest's memory in bytes when its last run ended (or
    /// when it was made): what the pool checks against its high-water mark,
    /// without making a memory view for it. A run that ends before that is
    /// read, by an error or by a panic unwinding through it, leaves the
    /// guest poisoned (see `Link::run`), and a poisoned guest is not kept.
    memory_size: u64,
}

// SAFETY: a `Guest` owns its `Store` and every handle into it; nothing else
// refers to that store, and it is only ever used through `&mut Guest`, by one
// thread at a time (the pool hands a guest to one `Instance`, and `Instance`
// is used through `&mut self`). Moving it to another thread between calls is
// therefore a plain move of owned heap data. wasmer 7 marks `Store` `!Send`
// for two reasons that do not apply here: the optional `on_called` handler
// (a boxed closure without a `Send` bound; we never install one) and raw
// pointers inside the store's objects, which point into allocations the
// store owns and which have no thread affinity in the `sys` backend (wasmer
// 6 declared the same store `Send`). Trap handling is set up per call on the
// calling thread, not per store. The `GuestEnv` inside (native handlers,
// captured output, other guests further down the chain) is `Send` on its own
// terms: handlers are required to be `Send`, and the guests are this type.
unsafe impl<S: Signature> Send for Guest<S> {}

impl<S: Signature> Guest<S> {
    /// Instantiates `function`'s module in a fresh store.
    pub fn instantiate(function: &FunctionShared<S>, generation: u64) -> Result<Self, Error> {
        let name = &function.name;
        let fail = |reason: String| Error::Instantiation { function: name.to_string(), reason };
        let mut store = Store::new(function.engine.clone());
        let env = FunctionEnv::new(&mut store, GuestEnv::<S>::new());
        let mut imports = Imports::new();
        for import in function.module.imports() {
            let f = match (import.module(), import.name()) {
                ("env", "next") => Function::new_typed_with_env(&mut store, &env, host_next::<S>),
                ("env", "next_result") => Function::new_typed_with_env(&mut store, &env, host_next_result::<S>),
                ("env", "panic") => Function::new_typed_with_env(&mut store, &env, host_panic::<S>),
                (wasi::MODULE, name) => wasi::function(name, &mut store, &env)
                    .ok_or_else(|| fail(format!("no host function for import {}.{name}", wasi::MODULE)))?,
                (module, name) => return Err(fail(format!("no host function for import {module}.{name}"))),
            };
            imports.define(import.module(), import.name(), f);
        }
        clear_grow_refused();
        take_capped_tables();
        take_created_regions();
        // Under per-run isolation, a module whose instantiation runs no code
        // of its own starts from its function's template, once there is one.
        let per_run = function.limits.isolation == Isolation::PerRun;
        let templatable = per_run && function.module.info().start_function.is_none();
        let template = if templatable { function.templates.get() } else { None };
        isolation::start_from(template.as_deref());
        let instance = wasmer::Instance::new(&mut store, &function.module, &imports);
        isolation::start_from(None);
        let regions = take_created_regions();
        isolation::end_instantiation(&regions);
        let instance = instance.map_err(|err| {
            if let wasmer::InstantiationError::Start(_) = &err
                && grow_refused()
            {
                return Error::MemoryLimit { function: name.to_string(), limit_bytes: function.limits.memory_limit };
            }
            fail(err.to_string())
        })?;
        let capped_tables = take_capped_tables();
        let exports = &instance.exports;
        let memory = exports.get_memory("memory").map_err(|err| fail(err.to_string()))?.clone();
        env.as_mut(&mut store).memory = Some(memory.clone());
        let export_err = |export: &str, err: wasmer::ExportError| fail(format!("export {export}: {err}"));
        let resize = exports.get_typed_function(&store, "resize").map_err(|e| export_err("resize", e))?;
        let run = exports.get_typed_function(&store, "run").map_err(|e| export_err("run", e))?;
        let version: TypedFunction<(), u32> =
            exports.get_typed_function(&store, "scale_abi_version").map_err(|e| export_err("scale_abi_version", e))?;
        let metering = if function.limits.metered() {
            let global = |export: &str| exports.get_global(export).cloned().map_err(|err| fail(err.to_string()));
            let (remaining, exhausted) = (global(metering::REMAINING)?, global(metering::EXHAUSTED)?);
            let address = points_address(&mut store, &remaining)
                .ok_or_else(|| fail("the CPU budget's global cannot be located".into()))?;
            let meter = Meter { points: Points(address), exhausted };
            meter.set(metering::initial_points(function.limits.cpu_budget.unwrap_or(u64::MAX)));
            env.as_mut(&mut store).meter = Some(meter.clone());
            Some(meter)
        } else {
            None
        };
        // The start function the metering middleware turned into an export.
        let start = match &metering {
            Some(_) => exports.get_typed_function::<(), ()>(&store, metering::START).ok(),
            None => None,
        };
        let mut guest = Guest {
            store,
            env,
            memory,
            resize,
            run,
            input: (0, 0),
            metering,
            capped_tables,
            snapshot: None,
            encoded: Vec::new(),
            next: None,
            spare: S::default(),
            lent: None,
            uses: 0,
            generation,
            memory_size: 0,
        };

        let points = guest.metering.as_ref().map(|meter| meter.points.0);
        if let Some(template) = template {
            // The template holds what start-up would do.
            guest.snapshot = Some(Snapshot::from_template(&mut guest.store, points, regions, &template).map_err(fail)?);
            guest.env.as_mut(&mut guest.store).abi = template.abi;
            guest.memory_size = guest.memory.view(&guest.store).data_size();
            return Ok(guest);
        }
        let at_instantiation = per_run.then(|| isolation::table_contents(&mut guest.store));

        // Start-up runs under the run's deadline, if there is one, and
        // against the budget the compiled code starts with.
        let _run = function.limits.deadline.map(deadline::begin);
        let initialize = exports.get_typed_function::<(), ()>(&guest.store, "_initialize").ok();
        for call in [start, initialize].into_iter().flatten() {
            clear_grow_refused();
            guest.call(|store| call.call(store)).map_err(|trap| guest.classify(trap, function))?;
        }
        let abi = guest.call(|store| version.call(store)).map_err(|trap| guest.classify(trap, function))?;
        if !(scale_abi::OLDEST..=scale_abi::VERSION).contains(&abi) {
            return Err(fail(format!(
                "the module speaks ABI version {abi}; this host speaks versions {} to {}",
                scale_abi::OLDEST,
                scale_abi::VERSION
            )));
        }
        guest.env.as_mut(&mut guest.store).abi = abi;
        guest.memory_size = guest.memory.view(&guest.store).data_size();
        if let Some(at_instantiation) = at_instantiation {
            let snapshot = Snapshot::take(&mut guest.store, points, regions).map_err(fail)?;
            if templatable {
                function.templates.offer(snapshot.template(&at_instantiation, abi));
            }
            guest.snapshot = Some(snapshot);
        }
        Ok(guest)
    }

    /// Under per-run isolation, brings the guest back to its state right
    /// after start-up; otherwise does nothing. A guest that cannot be reset
    /// must not run again.
    fn reset(&mut self) -> Result<(), ResetError> {
        let Some(snapshot) = &self.snapshot else { return Ok(()) };
        snapshot.restore()?;
        // The input buffer the guest allocated is gone with its heap.
        self.input = (0, 0);
        self.memory_size = snapshot.memory_bytes();
        Ok(())
    }

    /// The size of the guest's memory, in bytes, when its last run ended.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_size
    }

    /// Runs the module's `run` on `input` (the encoding of `sent`) and
    /// decodes its answer into `spare`: `Ok(Ok(()))` when it answered with a
    /// context (now in `spare`; parts of `sent` it gave back unchanged may
    /// have moved there), `Ok(Err(message))` when it answered with an error.
    ///
    /// The guest runs on `points`, the run's CPU budget, and leaves in it
    /// what it did not use.
    fn invoke(
        &mut self,
        input: &mut Vec<u8>,
        sent: &mut S,
        function: &FunctionShared<S>,
        points: &mut i64,
    ) -> Result<Result<(), String>, Error> {
        let malformed = |what: String| Error::MalformedOutput { function: function.name.to_string(), what };
        let len = u32::try_from(input.len())
            .map_err(|_| malformed(format!("a context of {} bytes does not fit the 32-bit ABI", input.len())))?;
        // The run's budget, for the calls into the guest, `resize` included.
        if let Some(meter) = &self.metering {
            meter.set(*points);
            let _ = meter.exhausted.set(&mut self.store, Value::I32(0));
        }
        let outcome = self.invoke_metered(input, sent, function, len);
        if let Some(meter) = &self.metering {
            *points = meter.get();
        }
        outcome
    }

    /// Calls into the guest with `call`, making its points what the
    /// deadline watchdog stops meanwhile.
    fn call<T>(&mut self, call: impl FnOnce(&mut Store) -> Result<T, RuntimeError>) -> Result<T, RuntimeError> {
        let Some(meter) = &self.metering else { return call(&mut self.store) };
        // Put back when the call ends, returning or unwinding (a native
        // handler's panic crosses it).
        let _target = deadline::Target::set(meter.points.0.as_ptr());
        call(&mut self.store)
    }

    fn invoke_metered(
        &mut self,
        input: &mut Vec<u8>,
        sent: &mut S,
        function: &FunctionShared<S>,
        len: u32,
    ) -> Result<Result<(), String>, Error> {
        let malformed = |what: String| Error::MalformedOutput { function: function.name.to_string(), what };
        self.env.as_mut(&mut self.store).reset();
        clear_grow_refused();
        if len > self.input.1 {
            let resize = self.resize.clone();
            let ptr = self.call(|store| resize.call(store, len)).map_err(|trap| self.classify(trap, function))?;
            let view = self.memory.view(&self.store);
            if ptr == 0 || u64::from(ptr) + u64::from(len) > view.data_size() {
                return Err(malformed(format!(
                    "resize({len}) returned {ptr:#x}, which does not hold {len} bytes inside its {}-byte memory",
                    view.data_size()
                )));
            }
            self.input = (ptr, len);
        }
        // SAFETY: no slice of the memory is alive here, and the guest runs
        // only through `self.store`, which this call borrows.
        unsafe { write_guest(&self.memory.view(&self.store), self.input.0, input) }
            .map_err(|err| malformed(format!("writing the input: {err}")))?;
        // The guest's `next` may compare what it hands on with this input.
        self.env.as_mut(&mut self.store).sent = std::mem::take(input);
        let run = self.run.clone();
        let called = self.call(|store| run.call(store, len));
        *input = std::mem::take(&mut self.env.as_mut(&mut self.store).sent);
        let packed = called.map_err(|trap| self.classify(trap, function))?;
        self.uses += 1;
        let (ptr, out_len) = ((packed >> 32) as u32, packed as u32);
        self.log_output(function);
        let view = self.memory.view(&self.store);
        self.memory_size = view.data_size();
        // SAFETY: `data_unchecked` asks that nothing change the memory while
        // the slice lives. It lives until the end of this function, during
        // which no guest code runs (`self.store` is borrowed here, and the
        // store is used by one thread at a time: see the `Send` impl above),
        // the memory is not shared with another instance, and the decoder
        // only reads it (copying what it keeps).
        let memory = unsafe { view.data_unchecked() };
        let output = match guest_bytes(memory, ptr, out_len) {
            Some(output) if ptr != 0 => output,
            _ => {
                return Err(malformed(format!(
                    "run returned {out_len} bytes at {ptr:#x}, outside its {}-byte memory",
                    memory.len()
                )));
            }
        };
        self.spare
            .decode_result_reusing(output, input, sent)
            .map_err(|err| malformed(format!("its result does not decode: {err}")))
    }

    /// Sends what the guest printed this run to `tracing`.
    fn log_output(&mut self, function: &FunctionShared<S>) {
        let env = self.env.as_ref(&self.store);
        if !env.stdout.is_empty() || !env.stderr.is_empty() {
            tracing::debug!(
                function = %function.name,
                stdout = %env.stdout.text(),
                stderr = %env.stderr.text(),
                dropped = env.stdout.dropped + env.stderr.dropped,
                "guest output"
            );
        }
    }

    /// Turns a trap out of this guest into the error that explains it.
    fn classify(&mut self, trap: RuntimeError, function: &FunctionShared<S>) -> Error {
        let name = function.name.to_string();
        self.log_output(function);
        let env = self.env.as_mut(&mut self.store);
        let panic_message = env.panic_message.take();
        let stderr = env.stderr.text();
        let mut out_of_time = false;
        let trap = match trap.downcast::<HostTrap>() {
            Ok(HostTrap::Malformed(what)) => return Error::MalformedOutput { function: name, what },
            Ok(HostTrap::Abandoned) => return Error::Abandoned,
            Ok(HostTrap::OutOfTime) => {
                out_of_time = true;
                RuntimeError::new("the run's budget or deadline ran out")
            }
            Ok(HostTrap::Exit(code)) => {
                let message = panic_message.unwrap_or_else(|| match stderr.trim() {
                    "" => format!("exited with code {code}"),
                    stderr => format!("exited with code {code}: {}", tail(stderr)),
                });
                return Error::Panic { function: name, message };
            }
            Err(trap) => trap,
        };
        let noted = self.metering.as_ref().map_or(0, |meter| meter.noted(&mut self.store));
        if noted == metering::OUT_OF_POINTS || out_of_time {
            // The deadline of the run on this thread: this runtime's, or
            // that of a run this one is nested in (from a native handler).
            if let Some(deadline) = deadline::passed_limit() {
                return Error::Deadline { function: name, deadline };
            }
            return Error::CpuBudget { function: name, budget: function.limits.cpu_budget.unwrap_or(u64::MAX) };
        }
        let table_refused = match &self.metering {
            Some(_) => noted == metering::TABLE_REFUSED,
            None => self.a_table_is_full(),
        };
        if grow_refused() || table_refused {
            return Error::MemoryLimit { function: name, limit_bytes: function.limits.memory_limit };
        }
        if let Some(message) = panic_message {
            return Error::Panic { function: name, message };
        }
        // Go's runtime prints a fatal error or an unrecovered panic to
        // standard error and then aborts with `unreachable`.
        let aborted = trap.clone().to_trap() == Some(wasmer::sys::vm::TrapCode::UnreachableCodeReached);
        match stderr.trim() {
            stderr if aborted && !stderr.is_empty() => {
                Error::Panic { function: name, message: tail(stderr).to_string() }
            }
            _ => Error::Trap { function: name, trap: trap.message() },
        }
    }
}

impl<S: Signature> Guest<S> {
    /// Whether a table whose growth the table limit may refuse is full.
    fn a_table_is_full(&self) -> bool {
        self.capped_tables.iter().any(|table| {
            // SAFETY: the definition lives in the instance's context, which
            // `self.store` owns for as long as this guest lives; no guest
            // code runs while `&self` is borrowed here.
            let size = unsafe { table.definition.as_ref() }.current_elements;
            size >= table.cap
        })
    }
}

/// Where the metering global `remaining` keeps its value, found by giving
/// it a random value and looking for that value among the store's globals.
/// `None` when it is not found exactly once.
fn points_address(store: &mut Store, remaining: &Global) -> Option<NonNull<i64>> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).ok()?;
    let marker = i64::from_le_bytes(bytes) | 1;
    remaining.set(store, Value::I64(marker)).ok()?;
    let mut found = None;
    for global in store.objects_mut().as_sys_mut().iter_globals() {
        if global.ty().ty != wasmer::Type::I64 {
            continue;
        }
        let definition = global.vmglobal();
        // SAFETY: every global of the store has a live definition, and an
        // i64 global's value is its first 8 bytes; no guest code runs now.
        let value = unsafe { definition.as_ref().val.i64 };
        if value == marker {
            if found.is_some() {
                return None;
            }
            found = Some(definition.cast::<i64>());
        }
    }
    found
}

/// The last few KiB of a guest's standard error, on a character boundary.
fn tail(text: &str) -> &str {
    const KEEP: usize = 4096;
    let mut start = text.len().saturating_sub(KEEP);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A guest in the chain. What follows it is in `guest.next`.
pub(crate) struct Link<S: Signature> {
    /// The guest's function, held through the anchor of the thread that
    /// made the instance.
    pub function: Arc<Anchor<S>>,
    /// Boxed, so that the pool hands it out and takes it back by pointer.
    pub guest: Box<Guest<S>>,
    /// Set when the guest trapped or broke the ABI: it must not run again.
    pub poisoned: bool,
}

/// What a guest's `next` runs.
pub(crate) enum Downstream<S: Signature> {
    Guest(Link<S>),
    Handlers(Vec<Handler<S>>),
}

impl<S: Signature> Downstream<S> {
    /// Runs this part of the chain on `ctx`, in place, on the run's CPU
    /// budget `points` (what is left stays there).
    pub fn run(&mut self, ctx: &mut S, points: &mut i64) -> Result<(), Error> {
        match self {
            Downstream::Guest(link) => link.run(ctx, points),
            Downstream::Handlers(handlers) => {
                for (index, handler) in handlers.iter_mut().enumerate() {
                    match handler {
                        Handler::Sync(handler) => handler(ctx).map_err(|source| Error::Handler { index, source })?,
                        Handler::Async(handler) => *ctx = run_async_handler(handler, std::mem::take(ctx), index)?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// Runs an async native handler on `ctx` and waits for its answer (see
/// [`awaiting`]).
fn run_async_handler<S: Signature>(handler: &mut BoxedAsyncHandler<S>, ctx: S, index: usize) -> Result<S, Error> {
    match awaiting::await_handler(handler(ctx)) {
        Ok(Ok(ctx)) => Ok(ctx),
        Ok(Err(source)) => Err(Error::Handler { index, source }),
        // The guest that called `next` sees the deadline has passed and stops.
        Err(Interrupted::Deadline) => Err(Error::Handler {
            index,
            source: HandlerError::new("the run's deadline passed while the handler was awaited"),
        }),
        Err(Interrupted::Abandoned) => Err(Error::Abandoned),
    }
}

impl<S: Signature> Link<S> {
    /// Runs this guest (and, through its `next`, the rest of the chain) on
    /// `ctx`, on the run's CPU budget `points`. `ctx` is replaced only when
    /// the guest succeeds.
    pub fn run(&mut self, ctx: &mut S, points: &mut i64) -> Result<(), Error> {
        let _span = tracing::debug_span!("function", name = %self.function.name).entered();
        if self.poisoned {
            // Instances heal poisoned links before each run; reaching one is a bug.
            return Err(Error::Trap {
                function: self.function.name.to_string(),
                trap: "instance was discarded".into(),
            });
        }
        let guest = &mut *self.guest;
        let mut encoded = std::mem::take(&mut guest.encoded);
        encoded.clear();
        ctx.encode(&mut encoded);
        guest.env.as_mut(&mut guest.store).downstream = guest.next.take();
        // Poisoned until the call returns. A native handler's panic unwinds
        // through it (wasmer carries the panic out of the guest): the guest,
        // stopped halfway, must not run again or go back to the pool, and
        // the rest of the chain comes back to the link before the panic goes
        // on, so that the instance can heal and release it as usual.
        self.poisoned = true;
        let outcome = {
            let rejoin = Rejoin(guest);
            rejoin.0.invoke(&mut encoded, ctx, &self.function, points)
        };
        self.poisoned = false;
        guest.encoded = encoded;
        let downstream_failure = guest.env.as_mut(&mut guest.store).downstream_failure.take();
        let result = self.settle(outcome, ctx, downstream_failure);
        // Under per-run isolation the run ends by going back to the state
        // after start-up, whether the guest returned or trapped: a reset
        // guest may run again. One that cannot be reset is discarded.
        if self.guest.snapshot.is_some() {
            match self.guest.reset() {
                Ok(()) => self.poisoned = false,
                Err(err) => {
                    tracing::debug!(function = %self.function.name, %err, "instance replaced: it cannot be reset");
                    self.poisoned = true;
                }
            }
        }
        result
    }

    /// The run's result from the guest's `outcome` and the first failure
    /// further down the chain.
    fn settle(
        &mut self,
        outcome: Result<Result<(), String>, Error>,
        ctx: &mut S,
        downstream_failure: Option<Error>,
    ) -> Result<(), Error> {
        let guest = &mut *self.guest;
        match outcome {
            Ok(Ok(())) => {
                std::mem::swap(ctx, &mut guest.spare);
                Ok(())
            }
            // A guest passing on an error from further down keeps the original error.
            Ok(Err(message)) => Err(downstream_failure.unwrap_or_else(|| Error::Guest {
                function: self.function.name.to_string(),
                message: printable(&message),
            })),
            Err(err) => {
                self.poisoned = err.poisons_instance();
                // A budget or deadline that ran out further down names the
                // function that was running then.
                match (err, downstream_failure) {
                    (
                        Error::Deadline { .. } | Error::CpuBudget { .. },
                        Some(below @ (Error::Deadline { .. } | Error::CpuBudget { .. })),
                    ) => Err(below),
                    (err, _) => Err(err),
                }
            }
        }
    }
}

/// Puts the rest of the chain back from a guest's env into the guest when
/// its call ends, returning or unwinding.
struct Rejoin<'a, S: Signature>(&'a mut Guest<S>);

impl<S: Signature> Drop for Rejoin<'_, S> {
    fn drop(&mut self) {
        let guest = &mut *self.0;
        guest.next = guest.env.as_mut(&mut guest.store).downstream.take();
    }
}

/// Copies `len` bytes at `ptr` out of guest memory. (wasmer's
/// `copy_range_to_vec` zeroes a 40 KiB buffer on every call, which cost more
/// than a whole small run.)
fn read_vec(view: &MemoryView<'_>, ptr: u32, len: u32) -> Result<Vec<u8>, wasmer::MemoryAccessError> {
    let mut bytes = vec![0; len as usize];
    view.read(u64::from(ptr), &mut bytes)?;
    Ok(bytes)
}

/// Writes `bytes` at `ptr` of a guest's memory, a chunk at a time
/// (`scale_signature_http::raw::chunked_copy` says why). wasmer's own `write` copies
/// eight bytes per volatile store, several times slower for large contexts.
///
/// # Safety
///
/// No slice of the memory may be alive (from `data_unchecked`), `bytes`
/// must not lie in it, and no guest code may run on it until this returns.
unsafe fn write_guest(view: &MemoryView<'_>, ptr: u32, bytes: &[u8]) -> Result<(), wasmer::MemoryAccessError> {
    // SAFETY: `data_unchecked_mut` asks that nothing else read or write the
    // memory while the slice lives. It lives until this function returns,
    // the caller guarantees the rest, and the memory is not shared with
    // another instance.
    let memory = unsafe { view.data_unchecked_mut() };
    let target = memory
        .get_mut(ptr as usize..)
        .and_then(|rest| rest.get_mut(..bytes.len()))
        .ok_or(wasmer::MemoryAccessError::HeapOutOfBounds)?;
    for (to, from) in target.chunks_mut(chunked_copy::CHUNK).zip(bytes.chunks(chunked_copy::CHUNK)) {
        to.copy_from_slice(from);
    }
    Ok(())
}

/// The `len` bytes at `ptr` of a guest's memory, if they lie inside it.
fn guest_bytes(memory: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    memory.get(ptr as usize..)?.get(..len as usize)
}

fn range_in(view: &MemoryView<'_>, ptr: u32, len: u32) -> bool {
    u64::from(ptr) + u64::from(len) <= view.data_size()
}

/// `env.next(ptr, len, out_ptr, out_cap) -> i32`.
fn host_next<S: Signature>(
    mut env: FunctionEnvMut<'_, GuestEnv<S>>,
    ptr: u32,
    len: u32,
    out_ptr: u32,
    out_cap: u32,
) -> Result<i32, HostTrap> {
    let (data, mut store) = env.data_and_store_mut();
    let memory =
        data.memory.clone().ok_or_else(|| HostTrap::Malformed("next called before instantiation finished".into()))?;
    // Where the chain ends with no native handlers, `next` hands the context
    // back unchanged: the guest's own bytes are the answer, once checked. A
    // guest of ABI version 2 is told so (the answer 0) instead of being sent
    // its bytes back.
    let unchanged = match &data.downstream {
        None => true,
        Some(Downstream::Handlers(handlers)) => handlers.is_empty(),
        Some(Downstream::Guest(_)) => false,
    };
    let say_unchanged = unchanged && data.abi >= scale_abi::UNCHANGED_ANSWER;
    let mut answer = std::mem::take(&mut data.scratch);
    answer.clear();
    let mut ctx = if unchanged { None } else { Some(data.next_context.take().unwrap_or_default()) };
    {
        let view = memory.view(&store);
        if !range_in(&view, ptr, len) || !range_in(&view, out_ptr, out_cap) {
            return Err(HostTrap::Malformed(format!(
                "next({ptr:#x}, {len}, {out_ptr:#x}, {out_cap}) points outside the {}-byte memory",
                view.data_size()
            )));
        }
        // SAFETY: as in `Guest::invoke`: the slice lives only while
        // the context is decoded or copied (keeping nothing borrowed). This
        // guest is suspended inside this import, no other code can reach its
        // memory (the store is borrowed here, one thread at a time), and
        // nothing grows the memory meanwhile.
        let memory = unsafe { view.data_unchecked() };
        let input = guest_bytes(memory, ptr, len)
            .ok_or_else(|| HostTrap::Malformed("next: the context lies outside the guest's memory".into()))?;
        match &mut ctx {
            None if say_unchanged => S::validate(input, &data.sent),
            None => S::encode_unchanged_result(input, &mut answer),
            Some(ctx) => ctx.decode(input),
        }
        .map_err(|err| HostTrap::Malformed(format!("next was handed a context that does not decode: {err}")))?;
    }

    // The bytes read count against the run's budget. A guest with no
    // points left (or past the deadline) stops here: the rest of the chain
    // does not run.
    charge(data.meter.as_ref(), u64::from(len));
    if let Some(meter) = &data.meter
        && meter.get() < 0
    {
        meter.note_out_of_points(&mut store);
        if let Some(ctx) = ctx {
            data.next_context = Some(ctx);
        }
        data.scratch = answer;
        return Err(HostTrap::OutOfTime);
    }
    if let Some(mut ctx) = ctx {
        // The rest of the chain may trap on memory growth of its own; keep
        // this guest's record of refused growth apart from theirs.
        let refused = grow_refused();
        // It runs on what this guest has left of the run's budget, and
        // hands back what it leaves.
        let mut points = data.meter.as_ref().map_or(0, Meter::get);
        let result = match data.downstream.as_mut() {
            Some(downstream) => downstream.run(&mut ctx, &mut points),
            None => Ok(()),
        };
        if let Some(meter) = &data.meter {
            meter.set(points);
        }
        set_grow_refused(refused);
        let ran_out = matches!(result, Err(Error::CpuBudget { .. } | Error::Deadline { .. }));
        let abandoned = matches!(result, Err(Error::Abandoned));
        match result {
            Ok(()) => S::encode_result(Ok(&ctx), &mut answer),
            Err(err) => {
                S::encode_result(Err(&err.to_string()), &mut answer);
                if data.downstream_failure.is_none() {
                    data.downstream_failure = Some(err);
                }
            }
        }
        // Reset now, so that a pooled guest does not keep the last body alive.
        ctx.reset();
        data.next_context = Some(ctx);
        // Nobody waits for the run any more: no guest code runs after this.
        if abandoned {
            data.scratch = answer;
            return Err(HostTrap::Abandoned);
        }
        // The rest of the chain used up the run's budget or ran past its
        // deadline: the run has failed, and this guest stops too.
        if let Some(meter) = &data.meter
            && (ran_out || points < 0 || deadline::passed())
        {
            meter.note_out_of_points(&mut store);
            data.scratch = answer;
            return Err(HostTrap::OutOfTime);
        }
    }
    if say_unchanged {
        data.scratch = answer;
        return Ok(0);
    }
    let n = i32::try_from(answer.len()).map_err(|_| HostTrap::Malformed("next: the answer exceeds 2 GiB".into()))?;
    charge(data.meter.as_ref(), answer.len() as u64);
    if answer.len() <= out_cap as usize {
        // SAFETY: the slice read above is gone; this guest is suspended in
        // this import, and the rest of the chain has returned.
        unsafe { write_guest(&memory.view(&store), out_ptr, &answer) }
            .map_err(|err| HostTrap::Malformed(format!("next: {err}")))?;
        data.scratch = answer;
        Ok(n)
    } else {
        data.kept = Some(answer);
        Ok(-n)
    }
}

/// `env.next_result(out_ptr, out_cap) -> i32`.
fn host_next_result<S: Signature>(
    mut env: FunctionEnvMut<'_, GuestEnv<S>>,
    out_ptr: u32,
    out_cap: u32,
) -> Result<i32, HostTrap> {
    let (data, store) = env.data_and_store_mut();
    let Some(kept) = data.kept.take() else { return Ok(0) };
    charge(data.meter.as_ref(), kept.len() as u64);
    let n = kept.len() as i32;
    if kept.len() > out_cap as usize {
        data.kept = Some(kept);
        return Ok(-n);
    }
    let memory = data
        .memory
        .clone()
        .ok_or_else(|| HostTrap::Malformed("next_result called before instantiation finished".into()))?;
    let view = memory.view(&store);
    if !range_in(&view, out_ptr, out_cap) {
        return Err(HostTrap::Malformed(format!(
            "next_result({out_ptr:#x}, {out_cap}) points outside the {}-byte memory",
            view.data_size()
        )));
    }
    // SAFETY: no slice of the memory is alive, and this guest is suspended
    // in this import.
    unsafe { write_guest(&view, out_ptr, &kept) }.map_err(|err| HostTrap::Malformed(format!("next_result: {err}")))?;
    data.scratch = kept;
    Ok(n)
}

/// The longest panic message kept.
const PANIC_MESSAGE_LIMIT: u32 = 16 * 1024;

/// `env.panic(ptr, len)`. A message that lies outside memory or is not
/// UTF-8 is replaced by a description of the problem; control characters
/// are escaped (see [`printable`]), so that a message never carries raw
/// control sequences to a terminal.
fn host_panic<S: Signature>(mut env: FunctionEnvMut<'_, GuestEnv<S>>, ptr: u32, len: u32) {
    let (data, store) = env.data_and_store_mut();
    charge(data.meter.as_ref(), u64::from(len.min(PANIC_MESSAGE_LIMIT)));
    let Some(memory) = data.memory.clone() else { return };
    let view = memory.view(&store);
    let message = if !range_in(&view, ptr, len) {
        format!("<panic message of {len} bytes at {ptr:#x} lies outside the guest's {}-byte memory>", view.data_size())
    } else {
        let kept = len.min(PANIC_MESSAGE_LIMIT);
        match read_vec(&view, ptr, kept) {
            Ok(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => printable(text),
                // A message cut at the limit may end inside a character.
                Err(err) if kept < len && err.error_len().is_none() => printable(&String::from_utf8_lossy(&bytes)),
                Err(err) => {
                    format!("<panic message of {len} bytes is not UTF-8: invalid byte at offset {}>", err.valid_up_to())
                }
            },
            Err(err) => format!("<panic message unreadable: {err}>"),
        }
    };
    data.panic_message = Some(message);
}

/// `text` with every control character but newline and tab written as an
/// escape (`\u{1b}`): guest text that reaches logs and terminals cannot
/// move the cursor, recolour or retitle them.
pub(crate) fn printable(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// The ABI version this host speaks (docs/abi.md).
pub(crate) mod scale_abi {
    /// The newest version.
    pub const VERSION: u32 = 2;
    /// The oldest version still served.
    pub const OLDEST: u32 = 1;
    /// The first version whose `next` may answer 0: "unchanged".
    pub const UNCHANGED_ANSWER: u32 = 2;
}
