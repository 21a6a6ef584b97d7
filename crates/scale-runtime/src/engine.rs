//! Engines: Cranelift, optional metering, and the memory limit.

use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use wasmer::sys::vm::{
    ExpectedValue, InternalStoreHandle, LinearMemory, MemoryError, MemoryStyle, StoreObjects, ThreadConditions, Trap,
    VMMemory, VMMemoryDefinition, VMSharedMemory, VMTable, VMTableDefinition, WaiterError,
};
use wasmer::sys::{CompilerConfig, Features};
use wasmer::sys::{Cranelift, CraneliftOptLevel, EngineBuilder, NativeEngineExt, Tunables};
use wasmer::{Engine, MemoryType, Pages, TableStyle, TableType};
use wasmer_compiler::LinkError;
use wasmer_types::entity::PrimaryMap;
use wasmer_types::{LocalMemoryIndex, LocalTableIndex, MemoryIndex, ModuleInfo, TableIndex};

use crate::limits::{self, Isolation, PAGE_BYTES, TABLE_ELEMENT_BYTES};
use crate::metering::Metering;

/// What an engine is built with. Two engines with equal settings compile
/// interchangeable code, so these settings are part of the module cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EngineSettings {
    /// The CPU budget of one run, when functions are instrumented to count
    /// their work. It is also the budget of instantiation (a start function
    /// and `_initialize`), which the compiled code starts with.
    pub cpu_budget: Option<u64>,
    /// Whether functions are instrumented: with a CPU budget, and with a
    /// deadline (which stops a guest through the same checks).
    pub metered: bool,
    /// The most linear memory one guest may have, in wasm pages, tables
    /// included (see [`TablePlan`]).
    pub memory_limit_pages: u32,
    /// The most table elements one guest may have, over all its tables.
    /// Not part of the compiled code.
    pub table_limit: u32,
    /// What the memories are made for: kept between runs, or reset to an
    /// image after each. Not part of the compiled code.
    pub isolation: Isolation,
}

impl EngineSettings {
    /// A string naming everything that changes the compiled code. The
    /// metering version changes with every change to what the metering
    /// middleware emits: cached modules of an older one are recompiled.
    pub fn cache_tag(&self) -> String {
        format!(
            "wasmer-{}/cranelift-speed/metering-v4-{}/{}",
            WASMER_VERSION,
            match (self.metered, self.cpu_budget) {
                (false, _) => "off".into(),
                (true, Some(budget)) => budget.to_string(),
                (true, None) => "unlimited".into(),
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
    if settings.metered {
        // Instances start with one budget, for instantiation; it is set
        // again before each run.
        compiler.push_middleware(Arc::new(Metering::new(settings.cpu_budget.unwrap_or(u64::MAX))));
    }
    let features = Features::default();
    let mut engine: Engine = EngineBuilder::new(compiler).set_features(Some(features)).engine().into();
    engine.set_tunables(LimitingTunables {
        limit: Pages(settings.memory_limit_pages),
        table_limit: settings.table_limit,
        isolation: settings.isolation,
    });
    engine
}

/// The environment variable that makes engines write `/tmp/perf-<pid>.map`,
/// which names each compiled guest function for `perf report`.
pub(crate) const PERF_MAP_VAR: &str = "SCALE_PERF_MAP";

/// Whether [`PERF_MAP_VAR`] is set to something other than empty or `0`.
fn perf_map_requested() -> bool {
    std::env::var_os(PERF_MAP_VAR).is_some_and(|value| !value.is_empty() && value != "0")
}

/// How a module's tables share one instance's table limit, and what they
/// take of its memory limit.
///
/// Every table gets its declared minimum. What is left of the limit goes to
/// the tables that may grow, fairly: in order of the headroom they declare,
/// each gets at most an equal share of what remains, so the caps of all
/// tables together never pass the limit. The caps, as bytes, are taken out
/// of the memory limit (rounded up to whole pages): linear memory and tables
/// together stay within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TablePlan {
    /// The most elements each defined table may hold, in table order.
    pub caps: Vec<u32>,
    /// Whether each cap is lower than what the module declared (or it
    /// declared no maximum): growth there may be refused by the limit.
    pub lowered: Vec<bool>,
    /// The pages of the memory limit the tables' caps take.
    pub reserved_pages: u32,
}

impl TablePlan {
    /// The plan for `module`'s defined tables under `table_limit` elements.
    /// Fails when their declared minimums alone pass the limit.
    pub fn new(module: &ModuleInfo, table_limit: u32) -> Result<Self, String> {
        let tables: Vec<&TableType> = module.tables.values().skip(module.num_imported_tables).collect();
        let minimums: u64 = tables.iter().map(|table| u64::from(table.minimum)).sum();
        if minimums > u64::from(table_limit) {
            return Err(format!(
                "its tables declare {minimums} elements at least, more than the limit of {table_limit} per instance"
            ));
        }
        let mut slack = u64::from(table_limit) - minimums;
        let headroom = |table: &TableType| match table.maximum {
            Some(max) => u64::from(max.saturating_sub(table.minimum)),
            None => u64::MAX,
        };
        let mut order: Vec<usize> = (0..tables.len()).collect();
        order.sort_by_key(|&index| headroom(tables[index]));
        let mut caps: Vec<u32> = tables.iter().map(|table| table.minimum).collect();
        let mut lowered = vec![false; tables.len()];
        for (position, &index) in order.iter().enumerate() {
            let share = slack / (order.len() - position) as u64;
            let wanted = headroom(tables[index]);
            let given = wanted.min(share);
            lowered[index] = given < wanted;
            // `given <= slack <= table_limit`, so this fits a u32.
            caps[index] += given as u32;
            slack -= given;
        }
        let bytes: u64 = caps.iter().map(|&cap| u64::from(cap) * TABLE_ELEMENT_BYTES).sum();
        let reserved_pages = bytes.div_ceil(PAGE_BYTES) as u32;
        Ok(Self { caps, lowered, reserved_pages })
    }
}

/// A table whose cap is lower than its module declared, as instantiation
/// made it: where its current size lives, and the cap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CappedTable {
    pub definition: NonNull<VMTableDefinition>,
    pub cap: u32,
}

// SAFETY: `definition` points into the context of the instance this table
// belongs to, which the store of the guest holding this value owns; it is
// read only by the thread using that guest, through `&Guest`, while no guest
// code runs. Moving it to another thread with the guest's store changes
// nothing.
unsafe impl Send for CappedTable {}

thread_local! {
    /// The capped tables made by instantiations on this thread since
    /// [`take_capped_tables`] last ran.
    static CAPPED_TABLES: RefCell<Vec<CappedTable>> = const { RefCell::new(Vec::new()) };
}

/// The capped tables of the instantiation that just ran on this thread.
pub(crate) fn take_capped_tables() -> Vec<CappedTable> {
    CAPPED_TABLES.with(|tables| std::mem::take(&mut *tables.borrow_mut()))
}

/// Tunables that hold each instance within its memory limit: tables are
/// capped by a [`TablePlan`], linear memory at what the tables leave of the
/// limit (lowering a larger declared maximum), and refused memory growth is
/// recorded.
#[derive(Debug, Clone, Copy)]
struct LimitingTunables {
    limit: Pages,
    table_limit: u32,
    /// Only Linux has memories of its own for per-run isolation; elsewhere
    /// the guest's snapshot copies wasmer's.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    isolation: Isolation,
}

impl LimitingTunables {
    fn limited(&self, ty: &MemoryType, limit: Pages) -> Result<MemoryType, MemoryError> {
        if ty.minimum > limit {
            return Err(MemoryError::MinimumMemoryTooLarge { min_requested: ty.minimum, max_allowed: limit });
        }
        let maximum = Some(ty.maximum.map_or(limit, |max| max.min(limit)));
        Ok(MemoryType { maximum, ..*ty })
    }

    fn plan(&self, module: &ModuleInfo) -> Result<TablePlan, String> {
        TablePlan::new(module, self.table_limit)
    }

    /// `ty` with its maximum lowered to the table limit.
    fn capped(&self, ty: &TableType) -> TableType {
        TableType { maximum: Some(ty.maximum.map_or(self.table_limit, |max| max.min(self.table_limit))), ..*ty }
    }

    /// A linear memory of the VM, capped at `limit` pages, that records
    /// refused growth: under per-run isolation on Linux, one that resets to
    /// an image (see [`crate::image`]).
    ///
    /// # Safety
    ///
    /// As `Tunables::create_vm_memory`: `location` is valid and owned.
    unsafe fn vm_memory(
        &self,
        ty: &MemoryType,
        limit: Pages,
        style: &MemoryStyle,
        location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        let ty = self.limited(ty, limit)?;
        #[cfg(target_os = "linux")]
        if self.isolation == Isolation::PerRun {
            // SAFETY: as below.
            let memory = unsafe { crate::image::ImageMemory::new(&ty, style, location)? };
            return Ok(VMMemory(Box::new(memory)));
        }
        // SAFETY: the caller guarantees `location` is valid and owned, which
        // is all `from_definition` requires; we pass it on as is.
        let inner = unsafe { VMMemory::from_definition(&ty, style, location)? };
        Ok(VMMemory(Box::new(RecordingMemory(inner))))
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
        let inner = VMMemory::new(&self.limited(ty, self.limit)?, style)?;
        Ok(VMMemory(Box::new(RecordingMemory(inner))))
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        // SAFETY: forwarded unchanged from our caller, who guarantees it.
        unsafe { self.vm_memory(ty, self.limit, style, vm_definition_location) }
    }

    unsafe fn create_memories(
        &self,
        context: &mut StoreObjects,
        module: &ModuleInfo,
        memory_styles: &PrimaryMap<MemoryIndex, MemoryStyle>,
        memory_definition_locations: &[NonNull<VMMemoryDefinition>],
    ) -> Result<PrimaryMap<LocalMemoryIndex, InternalStoreHandle<VMMemory>>, LinkError> {
        // What the tables may take comes out of the memory limit.
        let limit = Pages(self.limit.0.saturating_sub(self.plan(module).map_err(LinkError::Resource)?.reserved_pages));
        let defined = module.memories.iter().skip(module.num_imported_memories);
        let mut memories = PrimaryMap::with_capacity(defined.len());
        for ((index, ty), location) in defined.zip(memory_definition_locations) {
            // SAFETY: wasmer hands us one valid, owned definition location
            // per defined memory; each goes to exactly one memory.
            let memory = unsafe { self.vm_memory(ty, limit, &memory_styles[index], *location) }
                .map_err(|err| LinkError::Resource(format!("Failed to create memory: {err}")))?;
            memories.push(InternalStoreHandle::new(context, memory));
        }
        Ok(memories)
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        VMTable::new(&self.capped(ty), style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: forwarded unchanged from our caller, who guarantees it.
        unsafe { VMTable::from_definition(&self.capped(ty), style, vm_definition_location) }
    }

    unsafe fn create_tables(
        &self,
        context: &mut StoreObjects,
        module: &ModuleInfo,
        table_styles: &PrimaryMap<TableIndex, TableStyle>,
        table_definition_locations: &[NonNull<VMTableDefinition>],
    ) -> Result<PrimaryMap<LocalTableIndex, InternalStoreHandle<VMTable>>, LinkError> {
        let plan = self.plan(module).map_err(LinkError::Resource)?;
        let defined = module.tables.iter().skip(module.num_imported_tables);
        let mut tables = PrimaryMap::with_capacity(defined.len());
        for (position, ((index, ty), location)) in defined.zip(table_definition_locations).enumerate() {
            let cap = plan.caps[position];
            let capped = TableType { maximum: Some(cap), ..*ty };
            // SAFETY: wasmer hands us one valid, owned definition location
            // per defined table; each goes to exactly one table.
            let table = unsafe { VMTable::from_definition(&capped, &table_styles[index], *location) }
                .map_err(LinkError::Resource)?;
            if plan.lowered[position] {
                CAPPED_TABLES.with(|capped| capped.borrow_mut().push(CappedTable { definition: *location, cap }));
            }
            tables.push(InternalStoreHandle::new(context, table));
        }
        Ok(tables)
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
            limits::note_grow_refused();
        }
        grown
    }

    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        let grown = self.0.grow_at_least(min_size);
        if grown.is_err() {
            limits::note_grow_refused();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The wasmer version in module cache keys is the one the workspace
    /// builds: a wasmer update that forgets it would load artifacts of the
    /// old version.
    #[test]
    fn the_recorded_wasmer_version_is_the_locked_one() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
            .expect("the workspace's Cargo.lock is readable");
        let locked: Vec<&str> = lock
            .split("[[package]]")
            .filter_map(|package| {
                let mut lines = package.lines().map(str::trim);
                lines.find(|line| *line == r#"name = "wasmer""#)?;
                lines.next()?.strip_prefix(r#"version = ""#)?.strip_suffix('"')
            })
            .collect();
        assert_eq!(locked, [WASMER_VERSION], "Cargo.lock's wasmer versions against engine::WASMER_VERSION");
    }
}
