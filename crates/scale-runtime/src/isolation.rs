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
use wasmer::{AsStoreMut, Store, Type};

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
    /// Whether every saved global holds a number (no reference, which would
    /// point into this instance).
    numeric_globals: bool,
    tables: Vec<SavedTable>,
    memories: Vec<SavedMemory>,
}

/// What every instance of a function starts from once one of them has
/// started (Linux): the image of its one memory, shared, and the values of
/// its mutable globals. Later instances map the image and take the values
/// instead of running start-up again, so that instantiation costs about
/// what wasmer's part of it does. Only for modules whose start-up leaves
/// their tables as instantiation made them, and whose mutable globals hold
/// numbers.
pub(crate) struct Template {
    #[cfg(target_os = "linux")]
    image: std::sync::Arc<crate::image::SharedImage>,
    globals: Vec<u128>,
    /// The ABI version the function speaks.
    pub abi: u32,
}

/// A function's [`Template`], made by the first of its instances to start
/// under per-run isolation (or found impossible then).
#[derive(Default)]
pub(crate) struct Templates(std::sync::OnceLock<Option<std::sync::Arc<Template>>>);

impl Templates {
    /// The template, if there is one yet.
    pub fn get(&self) -> Option<std::sync::Arc<Template>> {
        self.0.get().cloned().flatten()
    }

    /// Keeps `template` (or that there is none) unless another instance
    /// was first.
    pub fn offer(&self, template: Option<Template>) {
        let _ = self.0.set(template.map(std::sync::Arc::new));
    }
}

/// Makes the memory of the instantiation about to run on this thread start
/// as `template`'s image (or empty with `None`).
pub(crate) fn start_from(template: Option<&Template>) {
    #[cfg(target_os = "linux")]
    crate::image::start_from(template.map(|template| std::sync::Arc::clone(&template.image)));
    #[cfg(not(target_os = "linux"))]
    let _ = template;
}

/// Ends the instantiation that made `regions`.
pub(crate) fn end_instantiation(regions: &[MemoryRegion]) {
    #[cfg(target_os = "linux")]
    for region in regions {
        region.end_instantiation();
    }
    #[cfg(not(target_os = "linux"))]
    let _ = regions;
}

/// The mutable globals of the instance in `store` but the one at `skip`,
/// in store order, and whether they all hold numbers.
fn mutable_globals(store: &mut Store, skip: Option<NonNull<i64>>) -> (Vec<NonNull<VMGlobalDefinition>>, bool) {
    let mut numeric = true;
    let mut globals = Vec::new();
    for global in store.objects_mut().as_sys_mut().iter_globals() {
        let definition = global.vmglobal();
        let ty = global.ty();
        if !ty.mutability.is_mutable() || Some(definition.cast::<i64>()) == skip {
            continue;
        }
        numeric &= matches!(ty.ty, Type::I32 | Type::I64 | Type::F32 | Type::F64 | Type::V128);
        globals.push(definition);
    }
    (globals, numeric)
}

/// The elements of every table of the instance in `store`, in store order.
pub(crate) fn table_contents(store: &mut Store) -> Vec<Box<[usize]>> {
    let objects = store.objects_mut().as_sys_mut();
    // SAFETY: every table of the store has a live definition and elements,
    // and no guest code runs now.
    VMTable::list(objects).iter().map(|table| unsafe { live_elements(table.vmtable()) }.into()).collect()
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
        let (definitions, numeric_globals) = mutable_globals(store, skip);
        let globals = definitions
            .into_iter()
            // SAFETY: every global of the store has a live definition, and no
            // guest code runs now; all 16 bytes of the value are initialised.
            .map(|definition| SavedGlobal { definition, value: unsafe { definition.as_ref().val.u128 } })
            .collect();
        let objects = store.objects_mut().as_sys_mut();
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
        Ok(Self { globals, numeric_globals, tables, memories })
    }

    /// The template other instances of the function may start from, if this
    /// instance can be one: its tables are as they were at instantiation
    /// (`at_instantiation`), its mutable globals hold numbers, and it has one
    /// memory, in a memfd.
    pub fn template(&self, at_instantiation: &[Box<[usize]>], abi: u32) -> Option<Template> {
        let tables_kept = self.tables.len() == at_instantiation.len()
            && self.tables.iter().zip(at_instantiation).all(|(table, then)| table.elements == *then);
        if !tables_kept || !self.numeric_globals || self.memories.len() != 1 {
            return None;
        }
        let globals: Vec<u128> = self.globals.iter().map(|global| global.value).collect();
        #[cfg(target_os = "linux")]
        return Some(Template { image: self.memories[0].shared_image()?, globals, abi });
        #[cfg(not(target_os = "linux"))]
        return {
            let _ = (globals, abi);
            None
        };
    }

    /// Makes the instance in `store`, just instantiated from `template`'s
    /// image (its memories' `regions`), the template's state, and saves that
    /// as its snapshot (the global at `skip` excepted, as in [`Snapshot::take`]).
    pub fn from_template(
        store: &mut Store,
        skip: Option<NonNull<i64>>,
        regions: Vec<MemoryRegion>,
        template: &Template,
    ) -> Result<Self, String> {
        if cfg!(not(target_os = "linux")) {
            return Err("templates need memory images".into());
        }
        let (definitions, numeric_globals) = mutable_globals(store, skip);
        if definitions.len() != template.globals.len() || regions.len() != 1 {
            return Err("the instance does not match its function's template".into());
        }
        let mut globals = Vec::with_capacity(definitions.len());
        for (definition, &value) in definitions.into_iter().zip(&template.globals) {
            // SAFETY: a live definition of this store (see `take`), with no
            // guest code running; the template's value has the global's type
            // (same module, same order).
            unsafe { (*definition.as_ptr()).val.u128 = value };
            globals.push(SavedGlobal { definition, value });
        }
        let tables = VMTable::list(store.objects_mut().as_sys_mut())
            .iter()
            .map(|table| {
                let definition = table.vmtable();
                // SAFETY: as in `take`.
                SavedTable { definition, elements: unsafe { live_elements(definition) }.into() }
            })
            .collect();
        #[cfg(target_os = "linux")]
        let memories = regions;
        #[cfg(not(target_os = "linux"))]
        let memories = {
            let _ = regions;
            Vec::new()
        };
        Ok(Self { globals, numeric_globals, tables, memories })
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
