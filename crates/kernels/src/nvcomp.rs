//! The nvCOMP binding: batched zstd decompression through a `dlopen`ed `libnvcomp.so`
//! (nvCOMP 5 or 6; signatures from `nvcomp/zstd.h` of `nvidia-libnvcomp-cu13` 6.0.0.12).
//!
//! Three levels, as the house style asks: [`raw`] holds the C types and function
//! pointer types; [`NvcompLib`] loads the library (searching as [`crate::search`] says) and
//! wraps each call into a `Result`; [`ZstdDecoder`] owns a temp buffer sized for a maximum
//! batch and decodes batches on a stream.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use cudarc::driver::CudaContext;
use gpu_schedule::{Backend, CudaBackend, CudaDeviceMem, CudaStreamHandle};

pub use crate::desc::ZstdBatch;
use crate::error::{Error, Result};
use crate::module::guarded;
pub use crate::search::nvcomp_disabled;
use crate::search::{Candidate, SearchInputs, candidates, load_first};
use crate::sync::{Arc, OnceLock};

/// The C ABI of the entry points used.
pub mod raw {
    use std::ffi::c_void;

    /// `nvcompStatus_t` (a C enum: `int`).
    pub type Status = i32;
    /// `cudaStream_t`, which is the driver's `CUstream`.
    pub type Stream = cudarc::driver::sys::CUstream;

    /// `nvcompBatchedZstdDecompressOpts_t`: a backend selector and 60 reserved bytes that
    /// must be zero.
    #[derive(Debug, Clone, Copy)]
    #[repr(C)]
    pub struct DecompressOpts {
        /// `nvcompDecompressBackend_t`: 0 default, 1 hardware, 2 CUDA.
        pub backend: i32,
        /// Must be zero.
        pub reserved: [u8; 60],
    }

    impl DecompressOpts {
        /// `nvcompBatchedZstdDecompressDefaultOpts`.
        pub const DEFAULT: Self = Self { backend: 0, reserved: [0; 60] };
    }

    /// `nvcompAlignmentRequirements_t`.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct AlignmentRequirements {
        /// Alignment of each compressed input.
        pub input: usize,
        /// Alignment of each output.
        pub output: usize,
        /// Alignment of the temp buffer.
        pub temp: usize,
    }

    /// `nvcompBatchedZstdDecompressGetTempSize`.
    pub type GetTempSize = unsafe extern "C" fn(
        num_chunks: usize,
        max_uncompressed_chunk_bytes: usize,
        opts: DecompressOpts,
        temp_bytes: *mut usize,
        max_total_uncompressed_bytes: usize,
        stream: Stream,
    ) -> Status;

    /// `nvcompBatchedZstdDecompressGetRequiredAlignments`.
    pub type GetRequiredAlignments =
        unsafe extern "C" fn(opts: DecompressOpts, out: *mut AlignmentRequirements) -> Status;

    /// `nvcompBatchedZstdDecompressAsync`.
    pub type DecompressAsync = unsafe extern "C" fn(
        device_compressed_chunk_ptrs: *const *const c_void,
        device_compressed_chunk_bytes: *const usize,
        device_uncompressed_buffer_bytes: *const usize,
        device_uncompressed_chunk_bytes: *mut usize,
        num_chunks: usize,
        device_temp_ptr: *mut c_void,
        temp_bytes: usize,
        device_uncompressed_chunk_ptrs: *const *mut c_void,
        opts: DecompressOpts,
        device_statuses: *mut Status,
        stream: Stream,
    ) -> Status;

    /// Symbol names, as looked up.
    pub const GET_TEMP_SIZE: &str = "nvcompBatchedZstdDecompressGetTempSize";
    /// See [`GetRequiredAlignments`].
    pub const GET_ALIGNMENTS: &str = "nvcompBatchedZstdDecompressGetRequiredAlignments";
    /// See [`DecompressAsync`].
    pub const DECOMPRESS_ASYNC: &str = "nvcompBatchedZstdDecompressAsync";
}

/// A loaded nvCOMP library and the entry points this crate uses.
pub struct NvcompLib {
    path: PathBuf,
    get_temp_size: raw::GetTempSize,
    get_alignments: raw::GetRequiredAlignments,
    decompress_async: raw::DecompressAsync,
    // Last: the function pointers above must not outlive it (fields drop in order).
    _lib: libloading::Library,
}

impl std::fmt::Debug for NvcompLib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvcompLib").field("path", &self.path).finish()
    }
}

fn symbol<T: Copy>(lib: &libloading::Library, path: &Path, name: &'static str) -> Result<T> {
    // SAFETY: `T` is the function pointer type declared in `raw` for this very symbol,
    // taken from nvCOMP's header.
    unsafe { lib.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|_| Error::NvcompSymbol { library: path.to_path_buf(), symbol: name })
}

fn status(call: &'static str, s: raw::Status) -> Result<()> {
    if s == 0 { Ok(()) } else { Err(Error::Nvcomp { call, status: s }) }
}

impl NvcompLib {
    /// Loads the first library found along [`candidates`]`(inputs)`.
    ///
    /// # Errors
    /// [`Error::NvcompMissing`] listing every candidate when none loads;
    /// [`Error::NvcompSymbol`] when the library found lacks an entry point.
    pub fn open(inputs: &SearchInputs) -> Result<Self> {
        let list = candidates(inputs);
        let Some((lib, path)) = load_first(&list) else {
            return Err(Error::NvcompMissing {
                searched: list.iter().map(Candidate::as_path).collect(),
            });
        };
        Ok(Self {
            get_temp_size: symbol(&lib, &path, raw::GET_TEMP_SIZE)?,
            get_alignments: symbol(&lib, &path, raw::GET_ALIGNMENTS)?,
            decompress_async: symbol(&lib, &path, raw::DECOMPRESS_ASYNC)?,
            path,
            _lib: lib,
        })
    }

    /// The process-wide library, searched for once with [`SearchInputs::from_env`].
    ///
    /// # Errors
    /// As [`NvcompLib::open`] (the first outcome is kept).
    pub fn global() -> Result<Arc<Self>> {
        static LIB: OnceLock<Result<Arc<NvcompLib>>> = OnceLock::new();
        LIB.get_or_init(|| Self::open(&SearchInputs::from_env()).map(Arc::new)).clone()
    }

    /// The file (or soname) that was loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Temp bytes needed to decode `chunks` chunks of at most `max_chunk_bytes` each.
    ///
    /// # Errors
    /// [`Error::Nvcomp`] on a failing status; [`Error::Overflow`] when the batch's total
    /// overflows.
    pub fn temp_size(&self, chunks: usize, max_chunk_bytes: usize) -> Result<usize> {
        let total = chunks
            .checked_mul(max_chunk_bytes)
            .ok_or(Error::Overflow { index: 0, what: "nvCOMP batch bytes" })?;
        let mut temp = 0usize;
        // SAFETY: plain values and a valid out-pointer; the call enqueues nothing.
        let s = unsafe {
            (self.get_temp_size)(
                chunks,
                max_chunk_bytes,
                raw::DecompressOpts::DEFAULT,
                &mut temp,
                total,
                std::ptr::null_mut(),
            )
        };
        status(raw::GET_TEMP_SIZE, s)?;
        Ok(temp)
    }

    /// The alignments nvCOMP requires of inputs, outputs and the temp buffer.
    ///
    /// # Errors
    /// [`Error::Nvcomp`] on a failing status.
    pub fn alignments(&self) -> Result<raw::AlignmentRequirements> {
        let mut a = raw::AlignmentRequirements::default();
        // SAFETY: a valid out-pointer.
        let s = unsafe { (self.get_alignments)(raw::DecompressOpts::DEFAULT, &mut a) };
        status(raw::GET_ALIGNMENTS, s)?;
        Ok(a)
    }

    /// Enqueues a batched decode (the `Result` layer of `nvcompBatchedZstdDecompressAsync`).
    ///
    /// # Errors
    /// [`Error::Nvcomp`] when the launch is refused.
    ///
    /// # Safety
    /// Every pointer must satisfy `nvcompBatchedZstdDecompressAsync`'s contract for
    /// `chunks` chunks, stay valid until the stream reaches the work, and the context of
    /// `stream` must be current on this thread.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn decompress_async(
        &self,
        comp_ptrs: u64,
        comp_bytes: u64,
        out_capacity: u64,
        out_actual: u64,
        chunks: usize,
        temp: u64,
        temp_bytes: usize,
        out_ptrs: u64,
        statuses: u64,
        stream: raw::Stream,
    ) -> Result<()> {
        // SAFETY: forwarded contract.
        let s = unsafe {
            (self.decompress_async)(
                comp_ptrs as *const *const c_void,
                comp_bytes as *const usize,
                out_capacity as *const usize,
                out_actual as *mut usize,
                chunks,
                temp as *mut c_void,
                temp_bytes,
                out_ptrs as *const *mut c_void,
                raw::DecompressOpts::DEFAULT,
                statuses as *mut raw::Status,
                stream,
            )
        };
        status(raw::DECOMPRESS_ASYNC, s)
    }
}

/// A batched zstd decoder for one device, with a temp buffer sized at construction for
/// `max_chunks` chunks of at most `max_chunk_bytes` decoded bytes.
#[derive(Debug)]
pub struct ZstdDecoder {
    lib: Arc<NvcompLib>,
    ctx: Arc<CudaContext>,
    temp: CudaDeviceMem,
    temp_bytes: usize,
    max_chunks: usize,
    max_chunk_bytes: usize,
}

impl ZstdDecoder {
    /// Sizes and allocates the temp buffer.
    ///
    /// # Errors
    /// [`Error::Nvcomp`] from the sizing call; [`Error::Schedule`] when the allocation
    /// fails.
    pub fn new(
        lib: Arc<NvcompLib>,
        backend: &CudaBackend,
        max_chunks: usize,
        max_chunk_bytes: usize,
    ) -> Result<Self> {
        guarded("nvcomp", "cuCtxSetCurrent", || backend.context().bind_to_thread())?;
        let temp_bytes = lib.temp_size(max_chunks, max_chunk_bytes)?;
        // cuMemAlloc aligns to 256 bytes, beyond nvCOMP's temp alignment.
        let temp = backend.alloc_device(temp_bytes)?;
        Ok(Self {
            lib,
            ctx: Arc::clone(backend.context()),
            temp,
            temp_bytes,
            max_chunks,
            max_chunk_bytes,
        })
    }

    /// Bytes of device memory the decoder holds.
    pub fn temp_bytes(&self) -> usize {
        self.temp_bytes
    }

    /// The maximum batch: (chunks, decoded bytes per chunk).
    pub fn capacity(&self) -> (usize, usize) {
        (self.max_chunks, self.max_chunk_bytes)
    }

    /// Enqueues the decode of `batch` on `stream`. Per-chunk failures are reported in
    /// `batch.statuses` and `batch.out_actual` (reduce them with
    /// [`crate::Kernels::status_reduce`]), not as an `Err`.
    ///
    /// # Errors
    /// [`Error::BatchTooLarge`] beyond the decoder's capacity; [`Error::BufferTooSmall`]
    /// when an array holds fewer than `chunks` entries; [`Error::Nvcomp`] when nvCOMP
    /// refuses the launch.
    ///
    /// # Safety
    /// The pointer arrays must hold `chunks` valid device pointers: compressed frames of
    /// the given sizes aligned as [`NvcompLib::alignments`] says, and output buffers of
    /// the given capacities (each at most `batch.max_chunk_bytes`); all of it valid, and
    /// the outputs not used by others, until the decode completes on `stream`.
    pub unsafe fn decode(&self, stream: &CudaStreamHandle, batch: &ZstdBatch) -> Result<()> {
        if batch.chunks > self.max_chunks || batch.max_chunk_bytes > self.max_chunk_bytes {
            return Err(Error::BatchTooLarge {
                chunks: batch.chunks,
                max_chunk_bytes: batch.max_chunk_bytes,
                limit_chunks: self.max_chunks,
                limit_chunk_bytes: self.max_chunk_bytes,
            });
        }
        crate::host::check_zstd_decode(batch)?;
        if batch.chunks == 0 {
            return Ok(());
        }
        guarded("nvcomp", "cuCtxSetCurrent", || self.ctx.bind_to_thread())?;
        // SAFETY: array lengths checked above, the temp buffer was sized for this batch
        // size, pointer contents are the caller's contract, and the context is current.
        unsafe {
            self.lib.decompress_async(
                batch.comp_ptrs.ptr(),
                batch.comp_bytes.ptr(),
                batch.out_capacity.ptr(),
                batch.out_actual.ptr(),
                batch.chunks,
                self.temp.device_ptr(),
                self.temp_bytes,
                batch.out_ptrs.ptr(),
                batch.statuses.ptr(),
                stream.cu_stream(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn off_and_zero_disable_nvcomp_anything_else_keeps_it() {
        for v in ["off", "OFF", "Off", "0"] {
            assert!(crate::search::disabled_by(Some(v)), "{v}");
        }
        for v in [None, Some("on"), Some("1"), Some(""), Some("no")] {
            assert!(!crate::search::disabled_by(v), "{v:?}");
        }
    }
}
