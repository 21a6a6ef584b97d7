//! The limits and settings every guest instance of a runtime runs under,
//! and the per-thread record of growth the limits refused.

use std::cell::Cell;
use std::time::Duration;

/// The default memory limit of one guest instance: 64 MiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 << 20;
/// The default number of idle instances kept per function.
pub const DEFAULT_MAX_IDLE: usize = 64;
/// The most functions one chain may have. A guest's `next` runs the rest of
/// the chain nested inside its own call, so the host's stack grows with every
/// link. 64 links fit, with room to spare, in the 2 MiB stack of a spawned
/// thread (tokio's blocking threads included), in debug builds too; a test
/// runs the longest chain on such a thread.
pub const MAX_CHAIN_LENGTH: usize = 64;
/// The default number of runs after which an instance is recycled.
pub const DEFAULT_MAX_USES: u64 = 100_000;
/// The default number of table elements one guest instance may have, over
/// all its tables: 65,536 (512 KiB on the host), or fewer under a memory
/// limit below 4 MiB: tables take at most an eighth of it by default.
pub const DEFAULT_TABLE_LIMIT: u32 = 1 << 16;

/// What one run of a guest instance sees of the runs before it.
///
/// Set with [`RuntimeBuilder::isolation`](crate::RuntimeBuilder::isolation).
/// Instances are pooled either way; what changes is what they keep.
///
/// ```no_run
/// use scale_runtime::{Isolation, Runtime, ScaleFunc};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let function = ScaleFunc::decode(&std::fs::read("hello.scale")?)?;
/// // Every run starts from the state the module had right after it started:
/// // nothing one request leaves in globals or on the heap reaches the next.
/// let runtime = Runtime::builder().function(function).isolation(Isolation::PerRun).build()?;
/// let mut instance = runtime.instance()?;
/// instance.context_mut().request.set_body_string("for this run only");
/// instance.run()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isolation {
    /// An instance keeps its globals, tables and memory from one run to the
    /// next, as a long-lived process would: the fastest, for functions that
    /// trust each other's callers (or keep caches on purpose). A guest that
    /// stores a request's data in a global hands it to whoever runs that
    /// instance next. The default.
    #[default]
    Pooled,
    /// Each run sees the module exactly as it was right after instantiation
    /// and initialisation (data segments, start function, `_initialize`, the
    /// Go runtime's start-up): linear memory, mutable globals and tables are
    /// reset after every run, and memory grown during a run shrinks back.
    /// Values the guest drew during start-up (Go's random seeds, say) are
    /// therefore the same in every run, and, on Linux, in every instance of
    /// the function (they start from the first one's state).
    ///
    /// Instances are still pooled: the reset costs what the run changed, not
    /// a new instantiation (on Linux, pages the run wrote are copied back
    /// from a copy-on-write image of the memory; see `docs/benchmarks.md`).
    /// On Linux, instances made after the first start from its image and
    /// globals instead of running start-up again, where start-up leaves the
    /// tables as instantiation made them (Go and Rust guests do).
    /// A run that fails (a trap, a panic, a limit) resets its instance too,
    /// which then stays in the pool. An instance whose tables grew during a
    /// run, or, off Linux, whose memory grew, is replaced by a fresh one
    /// instead.
    PerRun,
}

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
            let eighth = self.memory_limit / 8 / TABLE_ELEMENT_BYTES;
            DEFAULT_TABLE_LIMIT.min(u32::try_from(eighth).unwrap_or(u32::MAX))
        })
    }

    /// Whether guests are compiled to count their work: for a CPU budget,
    /// and for a deadline, which stops them through the same checks.
    pub fn metered(&self) -> bool {
        self.cpu_budget.is_some() || self.deadline.is_some()
    }
}

/// Bytes in a wasm page.
pub(crate) const PAGE_BYTES: u64 = 64 * 1024;

/// The bytes one table element takes on the host (a pointer).
pub(crate) const TABLE_ELEMENT_BYTES: u64 = 8;

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

/// Records that a guest memory on this thread failed to grow.
pub(crate) fn note_grow_refused() {
    GROW_REFUSED.with(|flag| flag.set(true));
}

/// Whether a guest memory on this thread failed to grow since the last clear.
pub(crate) fn grow_refused() -> bool {
    GROW_REFUSED.with(Cell::get)
}
