//! One instantiated guest module: its store, the calls into it, and what
//! it is reset to under per-run isolation.
//!
//! A [`Guest`] owns a wasmer `Store` with one instance of a function's
//! module. The chain of an [`Instance`](crate::Instance) is a linked list of
//! [`Link`](crate::chain::Link)s ending in the native handlers; while a guest
//! runs, the rest of the chain is moved into its store's
//! [`GuestEnv`], so that the guest's `next` import can run it. Ownership
//! moves in and out; nothing is shared.

use std::sync::Arc;

use wasmer::{Engine, FunctionEnv, Memory, Module, RuntimeError, Store, TypedFunction};

use crate::abi::env::GuestEnv;
use crate::abi::memory::{guest_bytes, write_guest};
use crate::abi::{ImportPlan, versions};
use crate::chain::Chain;
use crate::deadline;
use crate::engine::{CappedTable, take_capped_tables};
use crate::error::Error;
use crate::isolation::{self, ResetError, Snapshot, Templates, take_created_regions};
use crate::limits::{Isolation, Limits, clear_grow_refused, grow_refused};
use crate::meter::Meter;
use crate::metering;
use crate::signature::Signature;
use crate::trap::{self, TrapContext};
use crate::wasi::WasiEnv;

/// A compiled function: what instantiating and running its guests needs.
pub(crate) struct Compiled<S: Signature> {
    pub name: Arc<str>,
    pub engine: Engine,
    pub module: Module,
    pub limits: Limits,
    /// The host functions its imports resolve to.
    pub imports: ImportPlan<S>,
    /// What new instances start from under per-run isolation.
    pub templates: Templates,
}

/// A wasmer `Store`, movable to another thread.
struct SendStore(Store);

// SAFETY: the store is owned by one `Guest`, which owns every handle into
// it; nothing else refers to the store, and it is only used through
// `&mut Guest`, by one thread at a time (the pool hands a guest to one
// `Instance`, and `Instance` is used through `&mut self`). Moving it between
// calls is a plain move of owned heap data. wasmer marks `Store` `!Send` for
// two reasons that do not hold here: the optional `on_called` handler (a
// boxed closure without a `Send` bound, never installed by this crate), and
// raw pointers inside the store's objects, which point into allocations the
// store owns and have no thread affinity in the `sys` backend. Trap handling
// is set up per call on the calling thread, not per store. What the store
// holds in its function environments (`GuestEnv`, `WasiEnv`) must be `Send`
// on its own terms: `FunctionEnv::new` requires it.
unsafe impl Send for SendStore {}

/// One instantiated module, ready to run.
pub(crate) struct Guest<S: Signature> {
    store: SendStore,
    env: FunctionEnv<GuestEnv<S>>,
    /// The WASI shim's state, for modules that import from it.
    wasi: Option<FunctionEnv<WasiEnv>>,
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
    pub next: Option<Chain<S>>,
    /// The guest's result is decoded into this context, which then trades
    /// places with the caller's: steady-state runs reuse the allocations of
    /// the contexts before them. Reset before the guest goes back to the pool.
    pub result_context: S,
    /// A context kept for the next `Instance` that has this guest first in
    /// its chain, so that getting an instance allocates nothing. Reset before
    /// the guest goes back to the pool.
    pub parked_context: Option<Box<S>>,
    pub uses: u64,
    pub generation: u64,
    /// The size of the guest's memory in bytes when its last run ended (or
    /// when it was made): what the pool checks against its high-water mark,
    /// without making a memory view for it. A run that ends before that is
    /// read, by an error or by a panic unwinding through it, leaves the
    /// guest poisoned (see `Link::run`), and a poisoned guest is not kept.
    memory_size: u64,
}

impl<S: Signature> Guest<S> {
    /// Instantiates `function`'s module in a fresh store.
    pub fn instantiate(function: &Compiled<S>, generation: u64) -> Result<Self, Error> {
        let name = &function.name;
        let fail = |reason: String| Error::Instantiation { function: name.to_string(), reason };
        let mut store = Store::new(function.engine.clone());
        let env = FunctionEnv::new(&mut store, GuestEnv::<S>::new());
        let wasi = function.imports.uses_wasi().then(|| FunctionEnv::new(&mut store, WasiEnv::default()));
        let imports = function.imports.instantiate(&mut store, &env, wasi.as_ref());
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
        if let Some(wasi) = &wasi {
            wasi.as_mut(&mut store).memory = Some(memory.clone());
        }
        let export_err = |export: &str, err: wasmer::ExportError| fail(format!("export {export}: {err}"));
        let resize = exports.get_typed_function(&store, "resize").map_err(|e| export_err("resize", e))?;
        let run = exports.get_typed_function(&store, "run").map_err(|e| export_err("run", e))?;
        let version: TypedFunction<(), u32> =
            exports.get_typed_function(&store, "scale_abi_version").map_err(|e| export_err("scale_abi_version", e))?;
        let metering = if function.limits.metered() {
            let global = |export: &str| exports.get_global(export).cloned().map_err(|err| fail(err.to_string()));
            let (remaining, exhausted) = (global(metering::REMAINING)?, global(metering::EXHAUSTED)?);
            let meter = Meter::locate(&mut store, &remaining, exhausted)
                .ok_or_else(|| fail("the CPU budget's global cannot be located".into()))?;
            meter.set(metering::initial_points(function.limits.cpu_budget.unwrap_or(u64::MAX)));
            env.as_mut(&mut store).meter = Some(meter.clone());
            if let Some(wasi) = &wasi {
                wasi.as_mut(&mut store).meter = Some(meter.clone());
            }
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
            store: SendStore(store),
            env,
            wasi,
            memory,
            resize,
            run,
            input: (0, 0),
            metering,
            capped_tables,
            snapshot: None,
            encoded: Vec::new(),
            next: None,
            result_context: S::default(),
            parked_context: None,
            uses: 0,
            generation,
            memory_size: 0,
        };

        let points = guest.metering.as_ref().map(|meter| meter.address());
        if let Some(template) = template {
            // The template holds what start-up would do.
            guest.snapshot =
                Some(Snapshot::from_template(&mut guest.store.0, points, regions, &template).map_err(fail)?);
            guest.env.as_mut(&mut guest.store.0).abi = template.abi;
            guest.memory_size = guest.memory.view(&guest.store.0).data_size();
            return Ok(guest);
        }
        let at_instantiation = per_run.then(|| isolation::table_contents(&mut guest.store.0));

        // Start-up runs under the run's deadline, if there is one, and
        // against the budget the compiled code starts with.
        let _run = function.limits.deadline.map(deadline::begin);
        let initialize = exports.get_typed_function::<(), ()>(&guest.store.0, "_initialize").ok();
        for call in [start, initialize].into_iter().flatten() {
            clear_grow_refused();
            guest.call(|store| call.call(store)).map_err(|trap| guest.classify(trap, function))?;
        }
        let abi = guest.call(|store| version.call(store)).map_err(|trap| guest.classify(trap, function))?;
        if !(versions::OLDEST..=versions::VERSION).contains(&abi) {
            return Err(fail(format!(
                "the module speaks ABI version {abi}; this host speaks versions {} to {}",
                versions::OLDEST,
                versions::VERSION
            )));
        }
        guest.env.as_mut(&mut guest.store.0).abi = abi;
        guest.memory_size = guest.memory.view(&guest.store.0).data_size();
        if let Some(at_instantiation) = at_instantiation {
            let snapshot = Snapshot::take(&mut guest.store.0, points, regions).map_err(fail)?;
            if templatable {
                function.templates.offer(snapshot.template(&at_instantiation, abi));
            }
            guest.snapshot = Some(snapshot);
        }
        Ok(guest)
    }

    /// Runs the guest on `ctx`, on the run's CPU budget `points`, with the
    /// rest of the chain (`self.next`) in its env for its `next` calls; the
    /// rest comes back to `self.next` when the call ends, returning or
    /// unwinding. Returns the guest's outcome (see [`Guest::invoke`]) and
    /// the first failure further down the chain.
    pub fn run(
        &mut self,
        ctx: &mut S,
        function: &Compiled<S>,
        points: &mut i64,
    ) -> (Result<Result<(), String>, Error>, Option<Error>) {
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        ctx.encode(&mut encoded);
        self.env.as_mut(&mut self.store.0).rest = self.next.take();
        let outcome = {
            let reattach = Reattach(self);
            reattach.0.invoke(&mut encoded, ctx, function, points)
        };
        self.encoded = encoded;
        let rest_failure = self.env.as_mut(&mut self.store.0).rest_failure.take();
        (outcome, rest_failure)
    }

    /// Whether the guest runs under per-run isolation, going back to its
    /// state after start-up after every run.
    pub fn is_isolated(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Under per-run isolation, brings the guest back to its state right
    /// after start-up; otherwise does nothing. A guest that cannot be reset
    /// must not run again.
    pub fn reset(&mut self) -> Result<(), ResetError> {
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
        function: &Compiled<S>,
        points: &mut i64,
    ) -> Result<Result<(), String>, Error> {
        let malformed = |what: String| Error::MalformedOutput { function: function.name.to_string(), what };
        let len = u32::try_from(input.len())
            .map_err(|_| malformed(format!("a context of {} bytes does not fit the 32-bit ABI", input.len())))?;
        // The run's budget, for the calls into the guest, `resize` included.
        if let Some(meter) = &self.metering {
            meter.set(*points);
            meter.clear_noted(&mut self.store.0);
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
        let Some(meter) = &self.metering else { return call(&mut self.store.0) };
        // Put back when the call ends, returning or unwinding (a native
        // handler's panic crosses it).
        let _target = deadline::Target::set(meter.address().as_ptr());
        call(&mut self.store.0)
    }

    fn invoke_metered(
        &mut self,
        input: &mut Vec<u8>,
        sent: &mut S,
        function: &Compiled<S>,
        len: u32,
    ) -> Result<Result<(), String>, Error> {
        let malformed = |what: String| Error::MalformedOutput { function: function.name.to_string(), what };
        self.env.as_mut(&mut self.store.0).reset();
        if let Some(wasi) = &self.wasi {
            wasi.as_mut(&mut self.store.0).clear_output();
        }
        clear_grow_refused();
        if len > self.input.1 {
            let resize = self.resize.clone();
            let ptr = self.call(|store| resize.call(store, len)).map_err(|trap| self.classify(trap, function))?;
            let view = self.memory.view(&self.store.0);
            if ptr == 0 || u64::from(ptr) + u64::from(len) > view.data_size() {
                return Err(malformed(format!(
                    "resize({len}) returned {ptr:#x}, which does not hold {len} bytes inside its {}-byte memory",
                    view.data_size()
                )));
            }
            self.input = (ptr, len);
        }
        // SAFETY: no slice of the memory is alive here, and the guest runs
        // only through `self.store.0`, which this call borrows.
        unsafe { write_guest(&self.memory.view(&self.store.0), self.input.0, input) }
            .map_err(|err| malformed(format!("writing the input: {err}")))?;
        // The guest's `next` may compare what it hands on with this input.
        self.env.as_mut(&mut self.store.0).sent = std::mem::take(input);
        let run = self.run.clone();
        let called = self.call(|store| run.call(store, len));
        *input = std::mem::take(&mut self.env.as_mut(&mut self.store.0).sent);
        let packed = called.map_err(|trap| self.classify(trap, function))?;
        self.uses += 1;
        let (ptr, out_len) = ((packed >> 32) as u32, packed as u32);
        self.log_output(function);
        let view = self.memory.view(&self.store.0);
        self.memory_size = view.data_size();
        // SAFETY: `data_unchecked` asks that nothing change the memory while
        // the slice lives. It lives until the end of this function, during
        // which no guest code runs (`self.store.0` is borrowed here, and the
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
        self.result_context
            .decode_result_reusing(output, input, sent)
            .map_err(|err| malformed(format!("its result does not decode: {err}")))
    }

    /// Sends what the guest printed this run to `tracing`.
    fn log_output(&mut self, function: &Compiled<S>) {
        let Some(wasi) = &self.wasi else { return };
        let wasi = wasi.as_ref(&self.store.0);
        if !wasi.stdout.is_empty() || !wasi.stderr.is_empty() {
            tracing::debug!(
                function = %function.name,
                stdout = %wasi.stdout.text(),
                stderr = %wasi.stderr.text(),
                dropped = wasi.stdout.dropped + wasi.stderr.dropped,
                "guest output"
            );
        }
    }

    /// Turns a trap out of this guest into the error that explains it.
    fn classify(&mut self, trap: RuntimeError, function: &Compiled<S>) -> Error {
        self.log_output(function);
        let panic_message = self.env.as_mut(&mut self.store.0).panic_message.take();
        let stderr = match &self.wasi {
            Some(wasi) => wasi.as_ref(&self.store.0).stderr.text(),
            None => String::new(),
        };
        let noted = self.metering.as_ref().map_or(0, |meter| meter.noted(&mut self.store.0));
        let table_refused = match &self.metering {
            Some(_) => noted == metering::TABLE_REFUSED,
            None => self.a_table_is_full(),
        };
        trap::classify(
            trap,
            TrapContext {
                function: function.name.to_string(),
                panic_message,
                stderr,
                out_of_points: noted == metering::OUT_OF_POINTS,
                table_refused,
                memory_refused: grow_refused(),
                cpu_budget: function.limits.cpu_budget,
                memory_limit: function.limits.memory_limit,
            },
        )
    }
}

impl<S: Signature> Guest<S> {
    /// Whether a table whose growth the table limit may refuse is full.
    fn a_table_is_full(&self) -> bool {
        self.capped_tables.iter().any(|table| {
            // SAFETY: the definition lives in the instance's context, which
            // `self.store.0` owns for as long as this guest lives; no guest
            // code runs while `&self` is borrowed here.
            let size = unsafe { table.definition.as_ref() }.current_elements;
            size >= table.cap
        })
    }
}

/// Puts the rest of the chain back from a guest's env into the guest when
/// its call ends, returning or unwinding.
struct Reattach<'a, S: Signature>(&'a mut Guest<S>);

impl<S: Signature> Drop for Reattach<'_, S> {
    fn drop(&mut self) {
        let guest = &mut *self.0;
        guest.next = guest.env.as_mut(&mut guest.store.0).rest.take();
    }
}
