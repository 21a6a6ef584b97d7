//! Linear memory that goes back to an image (Linux).
//!
//! Under per-run isolation, every guest memory is an [`ImageMemory`]: its own
//! reservation of the wasm32 address space and its guard (like wasmer's
//! static memories, so compiled code is the same), sized with `mprotect`.
//! Once the guest has started, [`Region::capture`] writes the memory into a
//! sealed memfd, the image, and maps the image over the memory privately:
//! the guest reads the image's pages and writes copies of them.
//!
//! [`Region::reset`] brings the memory back to the image. Only the pages the
//! run changed differ from it: inside the image, those the guest wrote (no
//! longer the file's pages); past it, those the memory grew by and the guest
//! touched. `/proc/self/pagemap` tells which they are, in one system call
//! (its `PAGEMAP_SCAN` ioctl where the kernel has it, Linux 6.7 and later,
//! else a read of every page's entry). Up to [`KEEP_RESIDENT_BYTES`] of them
//! are copied back from a read-only mapping of the image, or zeroed, and stay
//! in memory, so that a guest writing the same few pages every run takes no
//! page fault for them; the rest are dropped (`MADV_DONTNEED`), to fault in
//! again from the image (or as zero) when next touched. The grown part then
//! becomes inaccessible again: the memory shrinks back. Without a usable
//! pagemap (or in a child process made by `fork`, where the one opened
//! describes the parent) every page is dropped; without memfds the image is
//! a copy, written back whole.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use wasmer::sys::vm::{LinearMemory, MemoryError, MemoryStyle, Trap, VMMemoryDefinition, initialize_memory_with_data};
use wasmer::{MemoryType, Pages};

use crate::limits::note_grow_refused;

/// Bytes in a wasm page.
const WASM_PAGE: usize = 64 * 1024;

/// The most bytes of written image pages a reset copies back (and keeps
/// mapped); the rest are dropped from the mapping.
pub(crate) const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// An anonymous or file mapping, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    start: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes (not zero) as `mmap` would, anywhere.
    fn new(len: usize, prot: libc::c_int, flags: libc::c_int, fd: libc::c_int) -> io::Result<Self> {
        // SAFETY: a mapping at an address of the kernel's choosing touches
        // no existing memory; the result is checked before use.
        let start = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
        if start == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = NonNull::new(start.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { start, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is this mapping's own, and nothing refers to it
        // once its owner drops it.
        unsafe { libc::munmap(self.start.as_ptr().cast(), self.len) };
    }
}

/// The system's page size.
fn page_size() -> usize {
    static SIZE: OnceLock<usize> = OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *SIZE.get_or_init(|| usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096))
}

/// The result of a libc call that returns -1 on failure.
fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Sets the protection of `len` bytes at `at`.
///
/// # Safety
///
/// The range lies in a mapping the caller owns, and no reference into it is
/// alive that the change would invalidate.
unsafe fn protect(at: *mut u8, len: usize, prot: libc::c_int) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: as the caller guarantees.
    check(unsafe { libc::mprotect(at.cast(), len, prot) })
}

/// A memfd holding `bytes`, its all-zero pages left as holes, sealed
/// against any change.
fn sealed_memfd(bytes: &[u8]) -> io::Result<File> {
    // SAFETY: the name is a NUL-terminated string; the result is checked.
    let fd = unsafe { libc::memfd_create(c"scale-guest-image".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(bytes.len() as u64)?;
    let page = page_size();
    let mut offset = 0;
    for chunk in bytes.chunks(page) {
        if chunk.iter().any(|&byte| byte != 0) {
            file.write_all_at(chunk, offset as u64)?;
        }
        offset += chunk.len();
    }
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on an open descriptor we own.
    check(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(file)
}

/// Bits of a `/proc/self/pagemap` entry.
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;

/// Whether a page with this pagemap entry may differ from the image it maps:
/// it is in memory but no longer the file's page (written), or swapped out
/// (which only the guest's own copies are).
fn written(entry: u64) -> bool {
    entry & PM_SWAPPED != 0 || (entry & PM_PRESENT != 0 && entry & PM_FILE == 0)
}

/// The `PAGEMAP_SCAN` ioctl of `/proc/self/pagemap` (Linux 6.7):
/// `_IOWR('f', 16, struct pm_scan_arg)`, and what it reads and writes.
const PAGEMAP_SCAN: libc::c_ulong = (3 << 30) | ((size_of::<PmScanArg>() as libc::c_ulong) << 16) | (0x66 << 8) | 16;
const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Debug, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region`: the pages from `start` to `end` (addresses).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// Scratch space for reading the pagemap, kept with each memory.
#[derive(Debug, Default)]
struct Scratch {
    entries: Vec<u64>,
    regions: Vec<PageRegion>,
    /// Stretches of written pages: first page, count.
    runs: Vec<(usize, usize)>,
}

/// `/proc/self/pagemap`, and how to ask it for written pages.
#[derive(Debug)]
struct Pagemap {
    file: File,
    /// Whether the `PAGEMAP_SCAN` ioctl works: it lists stretches of written
    /// pages, faster than reading every page's entry.
    scan: bool,
}

impl Pagemap {
    /// Notes in `scratch.runs` the stretches of written pages among the
    /// `pages` pages from `start`.
    fn written_runs(&self, start: *const u8, pages: usize, scratch: &mut Scratch) -> io::Result<()> {
        scratch.runs.clear();
        if self.scan { self.scan_runs(start, pages, scratch) } else { self.read_runs(start, pages, scratch) }
    }

    fn read_runs(&self, start: *const u8, pages: usize, scratch: &mut Scratch) -> io::Result<()> {
        let buffer = &mut scratch.entries;
        buffer.clear();
        buffer.resize(pages, 0);
        let offset = (start as usize / page_size() * 8) as u64;
        // SAFETY: a u64 slice may be viewed as bytes (no padding, any bit
        // pattern is a valid u64), and the view ends before `buffer` is used again.
        let raw = unsafe { std::slice::from_raw_parts_mut(buffer.as_mut_ptr().cast::<u8>(), pages * 8) };
        self.file.read_exact_at(raw, offset)?;
        let mut index = 0;
        while index < pages {
            let run = buffer[index..].iter().take_while(|&&entry| written(entry)).count();
            if run > 0 {
                scratch.runs.push((index, run));
            }
            index += run.max(1);
        }
        Ok(())
    }

    fn scan_runs(&self, start: *const u8, pages: usize, scratch: &mut Scratch) -> io::Result<()> {
        let page = page_size() as u64;
        let (first, end) = (start as u64, start as u64 + (pages as u64) * page);
        scratch.regions.resize(64, PageRegion::default());
        let mut from = first;
        while from < end {
            // Not a file page, and present or swapped: written (see `written`).
            let mut arg = PmScanArg {
                size: size_of::<PmScanArg>() as u64,
                start: from,
                end,
                vec: scratch.regions.as_mut_ptr() as u64,
                vec_len: scratch.regions.len() as u64,
                category_inverted: PAGE_IS_FILE,
                category_mask: PAGE_IS_FILE,
                category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask: PAGE_IS_FILE | PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                ..PmScanArg::default()
            };
            // SAFETY: `arg` is a valid `pm_scan_arg` whose output vector is
            // `regions`, which outlives the call; the kernel only reads page
            // tables of the range.
            let found = unsafe { libc::ioctl(self.file.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
            let found = usize::try_from(found).map_err(|_| io::Error::last_os_error())?;
            for region in scratch.regions.iter().take(found) {
                let index = ((region.start - first) / page) as usize;
                let count = ((region.end - region.start) / page) as usize;
                match scratch.runs.last_mut() {
                    Some((at, run)) if *at + *run == index => *run += count,
                    _ => scratch.runs.push((index, count)),
                }
            }
            if arg.walk_end <= from {
                return Err(io::Error::other("the pagemap scan made no progress"));
            }
            from = arg.walk_end;
        }
        Ok(())
    }
}

/// Set in a child process made by `fork`: the pagemap opened before
/// describes the parent, so resets no longer use it.
static FORKED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_fork() {
    FORKED.store(true, Ordering::Relaxed);
}

/// `/proc/self/pagemap`, if it tells written pages of a private file
/// mapping from read and untouched ones (checked once, on a scratch memfd),
/// and this is the process that opened it.
fn pagemap() -> Option<&'static Pagemap> {
    static PAGEMAP: OnceLock<Option<Pagemap>> = OnceLock::new();
    let pagemap = PAGEMAP.get_or_init(|| {
        // SAFETY: registers a handler that only stores to an atomic, which
        // is async-signal-safe as a fork child handler must be.
        let registered = unsafe { libc::pthread_atfork(None, None, Some(note_fork)) } == 0;
        registered.then(|| probe_pagemap().ok().flatten()).flatten()
    });
    if FORKED.load(Ordering::Relaxed) { None } else { pagemap.as_ref() }
}

fn probe_pagemap() -> io::Result<Option<Pagemap>> {
    let mut file = File::open("/proc/self/pagemap")?;
    let page = page_size();
    let image = sealed_memfd(&vec![1u8; 4 * page])?;
    let mapping = Mapping::new(4 * page, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE, image.as_raw_fd())?;
    let start = mapping.start.as_ptr();
    // Read the first page, write the second and the fourth, leave the third
    // alone (a read fault may map it too, as the file's).
    // SAFETY: the pages lie in the mapping, which is readable and writable
    // and referred to by nothing else.
    unsafe {
        std::ptr::read_volatile(start);
        std::ptr::write_volatile(start.add(page), 2);
        std::ptr::write_volatile(start.add(3 * page), 2);
    }
    let mut scratch = Scratch::default();
    for scan in [true, false] {
        let pagemap = Pagemap { file, scan };
        if pagemap.written_runs(start, 4, &mut scratch).is_ok() && scratch.runs == [(1, 1), (3, 1)] {
            return Ok(Some(pagemap));
        }
        file = pagemap.file;
    }
    Ok(None)
}

/// A memory image in a sealed memfd, which any number of memories map
/// privately: those of one instance, or of every instance of a function.
#[derive(Debug)]
pub(crate) struct SharedImage {
    /// The memfd, mapped read-only: written pages are copied back from here.
    source: Mapping,
    file: File,
}

// SAFETY: the mapping of a sealed file, read-only: nothing can change the
// bytes it shows, so any thread may read them; it is unmapped only when the
// last owner drops it.
unsafe impl Send for SharedImage {}
// SAFETY: as above.
unsafe impl Sync for SharedImage {}

impl SharedImage {
    /// Maps the image privately over the first `len` bytes at `base`.
    ///
    /// # Safety
    ///
    /// The range is the start of a reservation the caller owns, the image's
    /// length, and nothing refers into it.
    unsafe fn map_at(&self, base: *mut u8) -> io::Result<()> {
        let (len, prot, flags) =
            (self.source.len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_FIXED);
        // SAFETY: as the caller guarantees.
        let mapped = unsafe { libc::mmap(base.cast(), len, prot, flags, self.file.as_raw_fd(), 0) };
        if mapped == libc::MAP_FAILED { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}

/// The image of a memory, once captured.
#[derive(Debug)]
enum Image {
    /// Mapped privately from a sealed memfd.
    Mapped(Arc<SharedImage>),
    /// A copy, written back whole.
    Copied(Box<[u8]>),
}

/// One guest memory's address space: shared by its [`ImageMemory`] (which
/// the store owns) and the guest's snapshot (which resets it).
#[derive(Debug)]
pub(crate) struct Region(Mutex<State>);

#[derive(Debug)]
struct State {
    /// The wasm32 address space and its guard; the first `size` bytes are
    /// accessible.
    reservation: Mapping,
    size: usize,
    /// The most pages the memory may grow to.
    maximum: Pages,
    /// Where the compiled code finds the memory's base and length: in the
    /// instance's context, which lives as long as the store that owns the
    /// memory.
    definition: NonNull<VMMemoryDefinition>,
    image: Option<Image>,
    /// Made from another instance's image and still being instantiated:
    /// the module's data segments are in the image already.
    from_image: bool,
    /// Scratch space for reading the pagemap.
    scratch: Scratch,
}

// SAFETY: the raw pointers are to the region's own reservation and to the
// memory definition of the instance that owns the region's memory. Both are
// used only under the mutex, by the thread running that instance's store
// (the guest's snapshot is reset only while no guest code runs), so moving
// the state between threads with the store is sound.
unsafe impl Send for State {}

thread_local! {
    /// The regions made by instantiations on this thread since [`take_created`] last ran.
    static CREATED: RefCell<Vec<Arc<Region>>> = const { RefCell::new(Vec::new()) };
    /// The image the next memory made on this thread starts from.
    static START_FROM: RefCell<Option<Arc<SharedImage>>> = const { RefCell::new(None) };
}

/// Makes the next memory made on this thread (by the instantiation about
/// to run) start as `image`, or empty with `None`.
pub(crate) fn start_from(image: Option<Arc<SharedImage>>) {
    START_FROM.with(|next| *next.borrow_mut() = image);
}

/// The regions of the memories the instantiation that just ran on this
/// thread made.
pub(crate) fn take_created() -> Vec<Arc<Region>> {
    CREATED.with(|created| std::mem::take(&mut *created.borrow_mut()))
}

impl Region {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between calls; a panic cannot leave it half-made.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The size of the memory in bytes.
    pub fn size(&self) -> usize {
        self.state().size
    }

    /// The image in a memfd, for other instances of the same function.
    pub fn shared_image(&self) -> Option<Arc<SharedImage>> {
        match &self.state().image {
            Some(Image::Mapped(image)) => Some(Arc::clone(image)),
            _ => None,
        }
    }

    /// Ends instantiation: from now on data segments (`memory.init`) are
    /// written again. A memory made from an image skips those of
    /// instantiation, whose bytes the image already holds.
    pub fn end_instantiation(&self) {
        self.state().from_image = false;
    }

    /// Takes the memory as it is now as its image, which [`Region::reset`]
    /// brings it back to.
    pub fn capture(&self) -> io::Result<()> {
        let mut state = self.state();
        let size = state.size;
        let base = state.reservation.start.as_ptr();
        // SAFETY: the first `size` bytes of the reservation are accessible,
        // and no guest code runs while the snapshot is taken.
        let bytes = unsafe { std::slice::from_raw_parts(base, size) };
        if size == 0 {
            state.image = Some(Image::Copied(Box::default()));
            return Ok(());
        }
        let image = match sealed_memfd(bytes) {
            Ok(file) => {
                let source = Mapping::new(size, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd())?;
                let image = SharedImage { source, file };
                // SAFETY: the range is the accessible start of our own
                // reservation, replaced by a private mapping of a file with
                // the same bytes; nothing refers into it now.
                unsafe { image.map_at(base) }?;
                Image::Mapped(Arc::new(image))
            }
            Err(err) => {
                tracing::debug!(%err, "no memfd for a memory image; resets copy the whole image");
                Image::Copied(bytes.into())
            }
        };
        state.image = Some(image);
        Ok(())
    }

    /// Brings the memory back to its image: its size and every byte.
    pub fn reset(&self) -> io::Result<()> {
        self.reset_with(pagemap())
    }

    /// [`Region::reset`], telling written pages by `pagemap` when there is one.
    fn reset_with(&self, pagemap: Option<&Pagemap>) -> io::Result<()> {
        let mut state = self.state();
        let State { reservation, size, definition, image, scratch, .. } = &mut *state;
        let Some(image) = image else { return Err(io::Error::other("the memory has no image")) };
        let base = reservation.start.as_ptr();
        match image {
            Image::Copied(bytes) => {
                // SAFETY: the first `size` bytes are accessible, the image is
                // no longer than that, and no guest code runs now.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), base, bytes.len());
                    std::ptr::write_bytes(base.add(bytes.len()), 0, *size - bytes.len());
                }
            }
            Image::Mapped(image) => restore_pages(base, *size, &image.source, scratch, pagemap)?,
        }
        let image_len = match image {
            Image::Mapped(image) => image.source.len,
            Image::Copied(bytes) => bytes.len(),
        };
        if *size > image_len {
            // The grown pages are zero again; they become inaccessible until
            // the memory grows again (those kept stay in memory for then).
            // SAFETY: the range is the grown part of our own reservation, and
            // nothing refers into it.
            unsafe { protect(base.add(image_len), *size - image_len, libc::PROT_NONE) }?;
            *size = image_len;
            // SAFETY: the definition lives as long as the store that owns
            // this memory, and no guest code runs now.
            unsafe { definition.as_mut().current_length = image_len };
        }
        Ok(())
    }
}

/// Brings the first `size` bytes at `base` back to `source`, the image that
/// their start maps: written image pages become the image's again, and the
/// pages past the image (grown during the run) zero. Pages are told apart
/// by `pagemap`; without it, every page is dropped.
fn restore_pages(
    base: *mut u8,
    size: usize,
    source: &Mapping,
    scratch: &mut Scratch,
    pagemap: Option<&Pagemap>,
) -> io::Result<()> {
    let page = page_size();
    let drop_pages = |from: usize, pages: usize| {
        // SAFETY: the range lies in the accessible part of our own
        // reservation: dropping pages of the image's private mapping makes
        // them the image's again, and dropping grown ones makes them zero.
        check(unsafe { libc::madvise(base.add(from * page).cast(), pages * page, libc::MADV_DONTNEED) })
    };
    let (image_pages, pages) = (source.len / page, size / page);
    let Some(pagemap) = pagemap else { return drop_pages(0, pages) };
    pagemap.written_runs(base, pages, scratch)?;
    let mut budget = KEEP_RESIDENT_BYTES / page;
    for &(first, count) in &scratch.runs {
        // Each stretch in two: the part in the image, the part past it.
        let split = image_pages.clamp(first, first + count);
        for (index, run, in_image) in [(first, split - first, true), (split, first + count - split, false)] {
            let kept = run.min(budget);
            budget -= kept;
            if kept > 0 {
                let at = index * page;
                // SAFETY: the range lies in the accessible part of the memory
                // and, for image pages, in the image's read-only mapping (which
                // does not overlap the memory); no guest code runs now.
                unsafe {
                    if in_image {
                        std::ptr::copy_nonoverlapping(source.start.as_ptr().add(at), base.add(at), kept * page);
                    } else {
                        std::ptr::write_bytes(base.add(at), 0, kept * page);
                    }
                }
            }
            if kept < run {
                drop_pages(index + kept, run - kept)?;
            }
        }
    }
    Ok(())
}

/// A guest's linear memory under per-run isolation (see the module docs).
#[derive(Debug)]
pub(crate) struct ImageMemory {
    region: Arc<Region>,
    /// The region's definition, which never moves.
    definition: NonNull<VMMemoryDefinition>,
    ty: MemoryType,
    style: MemoryStyle,
}

// SAFETY: `definition` is the region's own (see the `Send` impl of `State`),
// only handed to wasmer, which uses it on the thread running the store.
unsafe impl Send for ImageMemory {}
// SAFETY: as above; `&ImageMemory` only reads the pointer itself.
unsafe impl Sync for ImageMemory {}

impl ImageMemory {
    /// A memory of type `ty` (whose maximum is the limit) whose definition
    /// lives at `location`; its region is noted for [`take_created`].
    ///
    /// # Safety
    ///
    /// `location` is valid for as long as the memory lives, and owned by it.
    pub unsafe fn new(
        ty: &MemoryType,
        style: &MemoryStyle,
        mut location: NonNull<VMMemoryDefinition>,
    ) -> Result<Self, MemoryError> {
        if *style != MemoryStyle::Static {
            return Err(MemoryError::Generic("per-run isolation needs static memories".into()));
        }
        let maximum = ty.maximum.unwrap_or(MemoryStyle::static_bound()).min(MemoryStyle::static_bound());
        if ty.minimum > maximum {
            return Err(MemoryError::MinimumMemoryTooLarge { min_requested: ty.minimum, max_allowed: maximum });
        }
        let reserved = MemoryStyle::static_bound().bytes().0 + MemoryStyle::static_offset_guard_size() as usize;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        let reservation =
            Mapping::new(reserved, libc::PROT_NONE, flags, -1).map_err(|err| MemoryError::Region(err.to_string()))?;
        let image = START_FROM.with(|next| next.borrow_mut().take());
        let size = image.as_ref().map_or(ty.minimum.bytes().0, |image| image.source.len);
        if size > maximum.bytes().0 {
            return Err(MemoryError::Generic("the memory image is larger than the memory may grow".into()));
        }
        let base = reservation.start.as_ptr();
        let region_error = |err: io::Error| MemoryError::Region(err.to_string());
        // SAFETY: the start of a reservation nothing else refers to.
        unsafe { protect(base, size, libc::PROT_READ | libc::PROT_WRITE) }.map_err(region_error)?;
        if let Some(image) = &image {
            // SAFETY: as above; the image is `size` bytes long.
            unsafe { image.map_at(base) }.map_err(region_error)?;
        }
        // SAFETY: the caller guarantees `location` is valid and ours.
        unsafe {
            let definition = location.as_mut();
            definition.base = base;
            definition.current_length = size;
        }
        let from_image = image.is_some();
        let image = image.map(Image::Mapped);
        let state =
            State { reservation, size, maximum, definition: location, image, from_image, scratch: Scratch::default() };
        let region = Arc::new(Region(Mutex::new(state)));
        CREATED.with(|created| created.borrow_mut().push(Arc::clone(&region)));
        Ok(Self { region, definition: location, ty: *ty, style: *style })
    }
}

impl LinearMemory for ImageMemory {
    fn ty(&self) -> MemoryType {
        MemoryType { minimum: self.size(), ..self.ty }
    }

    fn size(&self) -> Pages {
        Pages((self.region.size() / WASM_PAGE) as u32)
    }

    fn style(&self) -> MemoryStyle {
        self.style
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let mut state = self.region.state();
        let current = Pages((state.size / WASM_PAGE) as u32);
        if delta.0 == 0 {
            return Ok(current);
        }
        let refused = MemoryError::CouldNotGrow { current, attempted_delta: delta };
        let Some(grown) = current.0.checked_add(delta.0).map(Pages).filter(|&grown| grown <= state.maximum) else {
            note_grow_refused();
            return Err(refused);
        };
        let base = state.reservation.start.as_ptr();
        // SAFETY: the pages lie in our reservation (the maximum is at most
        // the static bound), past everything accessible; nothing refers to them.
        let opened =
            unsafe { protect(base.add(state.size), grown.bytes().0 - state.size, libc::PROT_READ | libc::PROT_WRITE) };
        if let Err(err) = opened {
            note_grow_refused();
            return Err(MemoryError::Region(err.to_string()));
        }
        state.size = grown.bytes().0;
        let size = state.size;
        // SAFETY: the definition lives as long as the store that owns this
        // memory; the guest is suspended in the grow.
        unsafe { state.definition.as_mut().current_length = size };
        Ok(current)
    }

    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        let size = self.region.size() as u64;
        if size >= min_size {
            return Ok(());
        }
        let pages = (min_size - size).div_ceil(WASM_PAGE as u64);
        let delta = u32::try_from(pages).map_err(|_| {
            note_grow_refused();
            MemoryError::CouldNotGrow { current: self.size(), attempted_delta: Pages(u32::MAX) }
        })?;
        self.grow(Pages(delta)).map(drop)
    }

    fn reset(&mut self) -> Result<(), MemoryError> {
        Err(MemoryError::Generic("a memory under per-run isolation cannot be emptied".into()))
    }

    unsafe fn initialize_with_data(&self, start: usize, data: &[u8]) -> Result<(), Trap> {
        let state = self.region.state();
        if state.from_image {
            return Ok(());
        }
        // SAFETY: wasmer checked that the segment lies inside the memory
        // (its length is the definition's), and no guest code runs meanwhile.
        unsafe { initialize_memory_with_data(state.definition.as_ref(), start, data) }
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.definition
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::Generic("a memory under per-run isolation cannot be cloned".into()))
    }

    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::Generic("a memory under per-run isolation cannot be copied".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memory of `pages` wasm pages (at most `maximum`), with its definition.
    fn memory(pages: u32, maximum: u32) -> (ImageMemory, Box<VMMemoryDefinition>) {
        let mut definition = Box::new(VMMemoryDefinition { base: std::ptr::null_mut(), current_length: 0 });
        let location = NonNull::from(&mut *definition);
        let ty = MemoryType::new(pages, Some(maximum), false);
        // SAFETY: the definition is boxed and outlives the memory in each test.
        let memory = unsafe { ImageMemory::new(&ty, &MemoryStyle::Static, location) }.expect("a memory");
        take_created();
        (memory, definition)
    }

    /// The memory's bytes, through its definition (as a guest sees them).
    fn bytes<'a>(definition: &VMMemoryDefinition) -> &'a mut [u8] {
        // SAFETY: the tests run no guest, and use each slice before the
        // memory changes again; the memory is accessible up to its length.
        unsafe { std::slice::from_raw_parts_mut(definition.base, definition.current_length) }
    }

    /// Writes `pages` pages of 4 KiB, `stride` pages apart, and grows the
    /// memory, then resets, three times: the memory is its image again each
    /// time, with whichever way of telling the written pages.
    fn dirty_and_reset(pages: usize, stride: usize, pagemap: Option<&Pagemap>) {
        dirty_and_reset_image(pages, stride, pagemap, false);
    }

    /// [`dirty_and_reset`], with the image kept as a copy (as without
    /// memfds) when `copied`.
    fn dirty_and_reset_image(pages: usize, stride: usize, pagemap: Option<&Pagemap>, copied: bool) {
        let (mut memory, definition) = memory(20, 40);
        let image: Vec<u8> = (0..20 * WASM_PAGE).map(|i| (i % 251) as u8).collect();
        bytes(&definition).copy_from_slice(&image);
        memory.region.capture().expect("an image");
        if copied {
            memory.region.state().image = Some(Image::Copied(image.clone().into()));
        }
        assert_eq!(bytes(&definition), &image[..], "capturing keeps the bytes");
        for round in 0..3 {
            let memory_bytes = bytes(&definition);
            for page in 0..pages {
                memory_bytes[page * stride * 4096 + round] ^= 0xff;
            }
            memory.grow(Pages(3)).expect("room to grow");
            bytes(&definition)[20 * WASM_PAGE + 5] = 1;
            memory.region.reset_with(pagemap).expect("a reset");
            assert_eq!(memory.size(), Pages(20), "the memory shrinks back");
            assert_eq!(bytes(&definition), &image[..], "round {round}, {pages} pages");
            memory.grow(Pages(1)).expect("room to grow");
            assert_eq!(bytes(&definition)[20 * WASM_PAGE + 5], 0, "grown pages start zeroed");
            memory.region.reset_with(pagemap).expect("a reset");
        }
    }

    #[test]
    fn a_reset_brings_back_every_page_a_run_wrote() {
        let mut ways = vec![None];
        match pagemap() {
            Some(found) => {
                for scan in [false, found.scan] {
                    let file = found.file.try_clone().expect("a second descriptor");
                    ways.push(Some(Pagemap { file, scan }));
                }
            }
            None => eprintln!("no usable /proc/self/pagemap here: only the path without it is tested"),
        }
        for pagemap in &ways {
            let pagemap = pagemap.as_ref();
            dirty_and_reset(1, 1, pagemap);
            dirty_and_reset(16, 1, pagemap);
            // More stretches than one scan returns.
            dirty_and_reset(150, 2, pagemap);
            // More pages than are kept resident: the rest are dropped.
            dirty_and_reset(KEEP_RESIDENT_BYTES / 4096 + 40, 1, pagemap);
        }
        dirty_and_reset_image(300, 1, None, true);
    }

    #[test]
    fn a_forked_child_does_not_use_the_parents_pagemap() {
        if pagemap().is_none() {
            eprintln!("no usable /proc/self/pagemap here: nothing to check");
            return;
        }
        // SAFETY: the child only reads an initialised `OnceLock` and an
        // atomic, then exits without running anything of the parent's.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            let code = if pagemap().is_none() { 0 } else { 1 };
            // SAFETY: ends the child at once, as a forked child of a
            // threaded process should.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child used the parent's pagemap");
        assert!(pagemap().is_some(), "the parent still does");
    }

    #[test]
    fn growth_stops_at_the_maximum_and_is_recorded() {
        let (mut memory, _definition) = memory(1, 2);
        crate::limits::clear_grow_refused();
        assert_eq!(memory.grow(Pages(1)).expect("within the maximum"), Pages(1));
        assert!(!crate::limits::grow_refused());
        assert!(memory.grow(Pages(1)).is_err(), "past the maximum");
        assert!(crate::limits::grow_refused());
    }
}
