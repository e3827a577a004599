//! Small synchronous helpers to move bytes between host vectors and device memory (tests,
//! descriptor uploads at setup). Hot paths use pinned memory and streams instead.

use gpu_schedule::{Backend, CudaBackend, CudaDeviceMem};

use cudarc::driver::sys;

use crate::desc::DeviceRange;
use crate::error::{Error, Result};
use crate::module::{check, guarded};

/// Allocates device memory holding a copy of `bytes` (at least one byte is allocated so
/// the range has an address).
///
/// # Errors
/// [`Error::Schedule`] when the allocation fails; [`Error::Driver`] when the copy fails.
pub fn upload(backend: &CudaBackend, bytes: &[u8]) -> Result<CudaDeviceMem> {
    let mem = backend.alloc_device(bytes.len().max(1))?;
    if !bytes.is_empty() {
        guarded("upload", "cuCtxSetCurrent", || backend.context().bind_to_thread())?;
        // SAFETY: `mem` holds at least `bytes.len()` bytes; the host slice is live for
        // the synchronous copy.
        check("upload", "cuMemcpyHtoD", unsafe {
            sys::cuMemcpyHtoD_v2(mem.device_ptr(), bytes.as_ptr().cast(), bytes.len())
        })?;
    }
    Ok(mem)
}

/// Copies `range` back into a vector. Synchronous with respect to the legacy default
/// stream only: synchronize the streams that write `range` first.
///
/// # Errors
/// [`Error::Driver`] when the copy fails.
pub fn download(backend: &CudaBackend, range: DeviceRange) -> Result<Vec<u8>> {
    let len = usize::try_from(range.len())
        .map_err(|_| Error::Overflow { index: 0, what: "download length" })?;
    let mut out = vec![0u8; len];
    if len > 0 {
        guarded("download", "cuCtxSetCurrent", || backend.context().bind_to_thread())?;
        // SAFETY: `out` holds `len` bytes; the range names live device memory of `len`
        // bytes by construction.
        check("download", "cuMemcpyDtoH", unsafe {
            sys::cuMemcpyDtoH_v2(out.as_mut_ptr().cast(), range.ptr(), len)
        })?;
    }
    Ok(out)
}
