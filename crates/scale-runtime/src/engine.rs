//! Engines: Cranelift, optional metering, and the memory limit.

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use wasmer::sys::vm::{
    ExpectedValue, LinearMemory, MemoryError, MemoryStyle, ThreadConditions, Trap, VMMemory, VMMemoryDefinition,
    VMSharedMemory, VMTable, VMTableDefinition, WaiterError,
};
use wasmer::sys::{CompilerConfig, Features};
use wasmer::sys::{Cranelift, CraneliftOptLevel, EngineBuilder, NativeEngineExt, Tunables};
use wasmer::{Engine, MemoryType, Pages, TableStyle, TableType};

use crate::metering::Metering;

/// What an engine is built with. Two engines with equal settings compile
/// interchangeable code, so these settings are part of the module cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EngineSettings {
    /// The CPU budget of one call, when functions are instrumented to count
    /// their work. It is also the budget of instantiation (a start function
    /// and `_initialize`), which the compiled code starts with.
    pub cpu_budget: Option<u64>,
    /// The most linear memory one guest may have, in wasm pages.
    pub memory_limit_pages: u32,
}

impl EngineSettings {
    /// A string naming everything that changes the compiled code.
    pub fn cache_tag(&self) -> String {
        format!(
            "wasmer-{}/cranelift-speed/metering-v2-{}/{}",
            WASMER_VERSION,
            match self.cpu_budget {
                Some(budget) => budget.to_string(),
                None => "off".into(),
            },
            std::env::consts::ARCH
        )
    }
}

/// The wasmer version this crate is built against (pinned in Cargo.toml).
pub(crate) const WASMER_VERSION: &str = "7.4.2";

/// Builds an engine. With metering, the engine may compile one module only
/// (wasmer's metering middleware keeps per-module state), so the runtime
/// builds one engine per function in that case.
pub(crate) fn build_engine(settings: EngineSettings) -> Engine {
    let mut compiler = Cranelift::default();
    compiler.opt_level(CraneliftOptLevel::Speed);
    if perf_map_requested() {
        compiler.enable_perfmap();
    }
    if let Some(budget) = settings.cpu_budget {
        // Instances start with one budget, for instantiation; it is set
        // again before each call.
        compiler.push_middleware(Arc::new(Metering::new(budget)));
    }
    let features = Features::default();
    let mut engine: Engine = EngineBuilder::new(compiler).set_features(Some(features)).engine().into();
    engine.set_tunables(LimitingTunables { limit: Pages(settings.memory_limit_pages) });
    engine
}

/// The environment variable that makes engines write `/tmp/perf-<pid>.map`,
/// which names each compiled guest function for `perf report`.
pub(crate) const PERF_MAP_VAR: &str = "SCALE_PERF_MAP";

/// Whether [`PERF_MAP_VAR`] is set to something other than empty or `0`.
fn perf_map_requested() -> bool {
    std::env::var_os(PERF_MAP_VAR).is_some_and(|value| !value.is_empty() && value != "0")
}

thread_local! {
    /// Set when a guest memory on this thread failed to grow. The runtime
    /// clears it before calling into a guest and reads it after a trap, to
    /// tell "ran out of its memory limit" from other traps. Guests run on the
    /// thread that calls them, so a thread-local is exact.
    static GROW_REFUSED: Cell<bool> = const { Cell::new(false) };
}

/// Clears the record of refused memory growth on this thread.
pub(crate) fn clear_grow_refused() {
    GROW_REFUSED.with(|flag| flag.set(false));
}

/// Restores the record of refused memory growth saved with [`grow_refused`].
pub(crate) fn set_grow_refused(refused: bool) {
    GROW_REFUSED.with(|flag| flag.set(refused));
}

/// Whether a guest memory on this thread failed to grow since the last clear.
pub(crate) fn grow_refused() -> bool {
    GROW_REFUSED.with(Cell::get)
}

/// Tunables that cap every linear memory at `limit` pages (lowering a larger
/// declared maximum) and record refused growth.
#[derive(Debug, Clone, Copy)]
struct LimitingTunables {
    limit: Pages,
}

impl LimitingTunables {
    fn limited(&self, ty: &MemoryType) -> Result<MemoryType, MemoryError> {
        if ty.minimum > self.limit {
            return Err(MemoryError::MinimumMemoryTooLarge { min_requested: ty.minimum, max_allowed: self.limit });
        }
        let maximum = Some(ty.maximum.map_or(self.limit, |max| max.min(self.limit)));
        Ok(MemoryType { maximum, ..*ty })
    }
}

impl Tunables for LimitingTunables {
    fn memory_style(&self, _memory: &MemoryType) -> MemoryStyle {
        MemoryStyle::Static
    }

    fn table_style(&self, _table: &TableType) -> TableStyle {
        TableStyle::CallerChecksSignature
    }

    fn create_host_memory(&self, ty: &MemoryType, style: &MemoryStyle) -> Result<VMMemory, MemoryError> {
        let inner = VMMemory::new(&self.limited(ty)?, style)?;
        Ok(VMMemory(Box::new(RecordingMemory(inner))))
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        // SAFETY: the caller guarantees `vm_definition_location` is valid and
        // owned, which is all `from_definition` requires; we pass it on as is.
        let inner = unsafe { VMMemory::from_definition(&self.limited(ty)?, style, vm_definition_location)? };
        Ok(VMMemory(Box::new(RecordingMemory(inner))))
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        VMTable::new(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: forwarded unchanged from our caller, who guarantees it.
        unsafe { VMTable::from_definition(ty, style, vm_definition_location) }
    }
}

/// A linear memory that forwards everything to wasmer's and notes refused growth.
#[derive(Debug)]
struct RecordingMemory(VMMemory);

impl LinearMemory for RecordingMemory {
    fn ty(&self) -> MemoryType {
        self.0.ty()
    }

    fn size(&self) -> Pages {
        self.0.size()
    }

    fn style(&self) -> MemoryStyle {
        self.0.style()
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let grown = self.0.grow(delta);
        if grown.is_err() {
            GROW_REFUSED.with(|flag| flag.set(true));
        }
        grown
    }

    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        let grown = self.0.grow_at_least(min_size);
        if grown.is_err() {
            GROW_REFUSED.with(|flag| flag.set(true));
        }
        grown
    }

    fn reset(&mut self) -> Result<(), MemoryError> {
        self.0.reset()
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.0.vmmemory()
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        LinearMemory::try_clone(&self.0)
    }

    unsafe fn initialize_with_data(&self, start: usize, data: &[u8]) -> Result<(), Trap> {
        // SAFETY: forwarded unchanged; wasmer calls this only during instantiation,
        // with the module's own data segments.
        unsafe { self.0.initialize_with_data(start, data) }
    }

    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        LinearMemory::copy(&self.0)
    }

    fn as_shared(&self) -> Result<VMSharedMemory, MemoryError> {
        self.0.as_shared()
    }

    unsafe fn do_wait(
        &mut self,
        dst: u32,
        expected: ExpectedValue,
        timeout: Option<Duration>,
    ) -> Result<u32, WaiterError> {
        // SAFETY: forwarded unchanged; our caller upholds the alignment and bounds rules.
        unsafe { self.0.do_wait(dst, expected, timeout) }
    }

    fn do_notify(&mut self, dst: u32, count: u32) -> u32 {
        self.0.do_notify(dst, count)
    }

    fn thread_conditions(&self) -> Option<&ThreadConditions> {
        self.0.thread_conditions()
    }
}
