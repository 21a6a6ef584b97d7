//! Reading and writing a guest's linear memory.

use scale_signature_http::raw::chunked_copy;
use wasmer::MemoryView;

/// Copies `len` bytes at `ptr` out of guest memory. (wasmer's
/// `copy_range_to_vec` zeroes a large buffer on every call.)
pub(crate) fn read_vec(view: &MemoryView<'_>, ptr: u32, len: u32) -> Result<Vec<u8>, wasmer::MemoryAccessError> {
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
pub(crate) unsafe fn write_guest(
    view: &MemoryView<'_>,
    ptr: u32,
    bytes: &[u8],
) -> Result<(), wasmer::MemoryAccessError> {
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
pub(crate) fn guest_bytes(memory: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    memory.get(ptr as usize..)?.get(..len as usize)
}

/// Whether `len` bytes at `ptr` lie inside the memory.
pub(crate) fn range_in(view: &MemoryView<'_>, ptr: u32, len: u32) -> bool {
    u64::from(ptr) + u64::from(len) <= view.data_size()
}
