//! Per-run isolation: what a guest instance looked like once it had started
//! (its [`Snapshot`]), and the reset that brings it back there after a run.
//!
//! Mutable globals and table elements are saved as raw values and written
//! back when they differ. Linear memory goes back to its image: on Linux
//! through [`crate::image`] (copy-on-write, only what the run changed, and
//! grown memory shrinks back); elsewhere by copying the image back whole, a
//! memory that grew during the run making the instance unfit to keep.

use std::ptr::NonNull;

use wasmer::sys::vm::{StoreObject, VMGlobalDefinition, VMTable, VMTableDefinition};
use wasmer::{AsStoreMut, Store};

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
    /// therefore the same in every run of one instance.
    ///
    /// Instances are still pooled: the reset costs what the run changed, not
    /// a new instantiation (on Linux, pages the run wrote are copied back
    /// from a copy-on-write image of the memory; see `docs/benchmarks.md`).
    /// A run that fails (a trap, a panic, a limit) resets its instance too,
    /// which then stays in the pool. An instance whose tables grew during a
    /// run, or, off Linux, whose memory grew, is replaced by a fresh one
    /// instead.
    PerRun,
}

/// Why an instance could not be reset; it is replaced instead.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResetError {
    #[error("a table grew during the run")]
    TableGrew,
    #[cfg(not(target_os = "linux"))]
    #[error("the memory grew during the run")]
    MemoryGrew,
    #[cfg(target_os = "linux")]
    #[error("the memory could not be reset: {0}")]
    Memory(#[from] std::io::Error),
}

/// A mutable global's value right after start-up.
struct SavedGlobal {
    definition: NonNull<VMGlobalDefinition>,
    value: u128,
}

/// A table's elements right after start-up, as raw pointers.
struct SavedTable {
    definition: NonNull<VMTableDefinition>,
    elements: Box<[usize]>,
}

/// A memory's state right after start-up.
#[cfg(target_os = "linux")]
type SavedMemory = std::sync::Arc<crate::image::Region>;

/// A memory's state right after start-up: its bytes.
#[cfg(not(target_os = "linux"))]
struct SavedMemory {
    definition: NonNull<wasmer::sys::vm::VMMemoryDefinition>,
    bytes: Box<[u8]>,
}

/// The state of a started guest instance, to bring it back to after each run.
pub(crate) struct Snapshot {
    globals: Vec<SavedGlobal>,
    tables: Vec<SavedTable>,
    memories: Vec<SavedMemory>,
}

// SAFETY: the pointers are to globals, tables and memories of the one
// instance in the store of the guest that owns this snapshot; they are used
// only through that guest (`&mut`), while its store lives and no guest code
// runs. Moving the snapshot to another thread with the guest changes nothing
// (see the `Send` impl of `Guest`).
unsafe impl Send for Snapshot {}

impl Snapshot {
    /// Saves the state of the started instance in `store`, except the
    /// global at `skip` (the CPU budget's points, which each run sets).
    /// `regions` are the regions of its memories (Linux), as its
    /// instantiation made them.
    pub fn take(store: &mut Store, skip: Option<NonNull<i64>>, regions: Vec<MemoryRegion>) -> Result<Self, String> {
        let objects = store.objects_mut().as_sys_mut();
        let mut globals = Vec::new();
        for global in objects.iter_globals() {
            let definition = global.vmglobal();
            if !global.ty().mutability.is_mutable() || Some(definition.cast::<i64>()) == skip {
                continue;
            }
            // SAFETY: every global of the store has a live definition, and no
            // guest code runs now; all 16 bytes of the value are initialised.
            let value = unsafe { definition.as_ref().val.u128 };
            globals.push(SavedGlobal { definition, value });
        }
        let mut tables = Vec::new();
        for table in VMTable::list(objects) {
            let definition = table.vmtable();
            // SAFETY: as above, for the table's definition and its elements.
            let elements = unsafe { live_elements(definition) }.into();
            tables.push(SavedTable { definition, elements });
        }
        #[cfg(target_os = "linux")]
        let memories = {
            for region in &regions {
                region.capture().map_err(|err| format!("the memory image cannot be made: {err}"))?;
            }
            regions
        };
        #[cfg(not(target_os = "linux"))]
        let memories = {
            let _: Vec<MemoryRegion> = regions;
            let list = <wasmer::sys::vm::VMMemory as StoreObject>::list(objects);
            list.iter()
                .map(|memory| {
                    let definition = wasmer::sys::vm::LinearMemory::vmmemory(memory);
                    // SAFETY: as above, for the memory's accessible bytes.
                    let bytes = unsafe {
                        let live = definition.as_ref();
                        std::slice::from_raw_parts(live.base, live.current_length)
                    };
                    SavedMemory { definition, bytes: bytes.into() }
                })
                .collect()
        };
        Ok(Self { globals, tables, memories })
    }

    /// The size of the instance's first memory right after start-up, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        #[cfg(target_os = "linux")]
        let size = self.memories.first().map_or(0, |region| region.size());
        #[cfg(not(target_os = "linux"))]
        let size = self.memories.first().map_or(0, |memory| memory.bytes.len());
        size as u64
    }

    /// Brings the instance back to the saved state.
    pub fn restore(&self) -> Result<(), ResetError> {
        for table in &self.tables {
            // SAFETY: the definition and its elements live as long as the
            // store (see the `Send` impl), and no guest code runs now.
            let live = unsafe { live_elements_mut(table.definition) };
            if live.len() != table.elements.len() {
                return Err(ResetError::TableGrew);
            }
            if *live != *table.elements {
                live.copy_from_slice(&table.elements);
            }
        }
        for global in &self.globals {
            // SAFETY: as above, for the global's definition.
            unsafe { (*global.definition.as_ptr()).val.u128 = global.value };
        }
        for memory in &self.memories {
            #[cfg(target_os = "linux")]
            memory.reset()?;
            #[cfg(not(target_os = "linux"))]
            {
                // SAFETY: as above, for the memory's definition and bytes.
                let live = unsafe { memory.definition.as_ref() };
                if live.current_length != memory.bytes.len() {
                    return Err(ResetError::MemoryGrew);
                }
                // SAFETY: the first `current_length` bytes at `base` are the
                // memory's, and no guest code runs now.
                unsafe { std::ptr::copy_nonoverlapping(memory.bytes.as_ptr(), live.base, memory.bytes.len()) };
            }
        }
        Ok(())
    }
}

/// What an instantiation hands the snapshot about its memories.
#[cfg(target_os = "linux")]
pub(crate) type MemoryRegion = std::sync::Arc<crate::image::Region>;

/// What an instantiation hands the snapshot about its memories: nothing, off Linux.
#[cfg(not(target_os = "linux"))]
pub(crate) type MemoryRegion = ();

/// The memories the instantiation that just ran on this thread made for
/// per-run isolation.
pub(crate) fn take_created_regions() -> Vec<MemoryRegion> {
    #[cfg(target_os = "linux")]
    return crate::image::take_created();
    #[cfg(not(target_os = "linux"))]
    return Vec::new();
}

/// The elements of the table defined at `definition`.
///
/// # Safety
///
/// The definition is live, and nothing changes the table while the slice is.
unsafe fn live_elements<'a>(definition: NonNull<VMTableDefinition>) -> &'a [usize] {
    // SAFETY: a table's elements are pointer-sized raw values, `current_elements`
    // of them at `base`; the caller guarantees the rest.
    unsafe {
        let table = definition.as_ref();
        match table.current_elements {
            0 => &[],
            n => std::slice::from_raw_parts(table.base.cast::<usize>(), n as usize),
        }
    }
}

/// The elements of the table defined at `definition`, to write.
///
/// # Safety
///
/// As [`live_elements`], and nothing else reads the table while the slice lives.
unsafe fn live_elements_mut<'a>(definition: NonNull<VMTableDefinition>) -> &'a mut [usize] {
    // SAFETY: as in `live_elements`.
    unsafe {
        let table = definition.as_ref();
        match table.current_elements {
            0 => &mut [],
            n => std::slice::from_raw_parts_mut(table.base.cast::<usize>(), n as usize),
        }
    }
}
