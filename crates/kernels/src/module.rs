//! The compiled kernel module of one device and its typed launch wrappers.
//!
//! `kernels.cu` is compiled by NVRTC for `compute_XY` of the device's compute capability
//! (PTX, which the driver turns into machine code for exactly that device when the module
//! loads), once per process and device: [`Kernels::for_backend`] caches the result in a
//! process-wide map keyed by device ordinal and context. Every launch binds the context,
//! checks the buffers it can check, launches with `cuLaunchKernel` and turns a failure into
//! [`Error::Driver`] naming the kernel and the call.

use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use cudarc::driver::{CudaContext, CudaFunction, DriverError, sys};
use cudarc::nvrtc::{CompileError, CompileOptions, compile_ptx_with_opts};
use gpu_schedule::{CudaBackend, CudaStreamHandle};
use zarr::OutDtype;

use crate::desc::{DeviceRange, ShuffleSpec, ZstdFrames, need};
use crate::error::{Error, Result};
use crate::host::{
    FRAME_CHECK, assemble_kernel, check_assemble, check_fill, check_frame_check,
    check_memcpy_batch, check_status_reduce,
};
use crate::sync::{Arc, Mutex, OnceLock, PoisonError};
use crate::{ENTRY_POINTS, KERNELS_CU};

/// Threads per block of every kernel.
const BLOCK: u32 = 256;
/// Grid limit for grid-stride kernels (enough blocks to fill any current GPU many times).
const MAX_GRID: u32 = 1 << 16;

pub(crate) fn guarded<T>(
    kernel: &'static str,
    call: &'static str,
    f: impl FnOnce() -> Result<T, DriverError>,
) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Driver { kernel, call, code: format!("{e:?}") }),
        Err(_) => Err(Error::Panicked { kernel, call }),
    }
}

pub(crate) fn check(kernel: &'static str, call: &'static str, r: sys::CUresult) -> Result<()> {
    r.result().map_err(|e| Error::Driver { kernel, call, code: format!("{e:?}") })
}

/// The kernels of one device, compiled and loaded.
pub struct Kernels {
    ctx: Arc<CudaContext>,
    arch: String,
    functions: Vec<CudaFunction>,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels")
            .field("ordinal", &self.ctx.ordinal())
            .field("arch", &self.arch)
            .finish()
    }
}

type Cache = Mutex<HashMap<(usize, usize), Arc<Kernels>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn grid_for(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(MAX_GRID).clamp(1, MAX_GRID)
}

impl Kernels {
    /// The compiled kernels of `backend`'s device, compiling them on first use in this
    /// process.
    ///
    /// # Errors
    /// [`Error::Driver`] when the device cannot be queried or the module not loaded;
    /// [`Error::Compile`] when NVRTC rejects the source; [`Error::Panicked`] when NVRTC's
    /// library is missing (cudarc panics on a missing library; the panic is caught).
    pub fn for_backend(backend: &CudaBackend) -> Result<Arc<Self>> {
        Self::for_context(backend.context())
    }

    /// As [`Kernels::for_backend`], for a cudarc context.
    ///
    /// # Errors
    /// As [`Kernels::for_backend`].
    pub fn for_context(ctx: &Arc<CudaContext>) -> Result<Arc<Self>> {
        let key = (ctx.ordinal(), ctx.cu_ctx() as usize);
        // Held across the compile on purpose: a second caller for the same device must
        // wait for the first compile rather than start its own (it happens once).
        let mut map = cache().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = map.get(&key) {
            return Ok(Arc::clone(k));
        }
        let k = Arc::new(Self::compile(ctx)?);
        map.insert(key, Arc::clone(&k));
        Ok(k)
    }

    fn compile(ctx: &Arc<CudaContext>) -> Result<Self> {
        let (major, minor) = guarded("module", "cuDeviceGetAttribute(compute capability)", || {
            ctx.compute_capability()
        })?;
        let arch = arch_option(major, minor);
        let opts = CompileOptions {
            options: vec![arch.clone(), "--std=c++17".into()],
            name: Some("kernels.cu".into()),
            ..Default::default()
        };
        let ptx = match catch_unwind(AssertUnwindSafe(|| compile_ptx_with_opts(KERNELS_CU, opts))) {
            Ok(Ok(ptx)) => ptx,
            Ok(Err(CompileError::CompileError { log, .. })) => {
                return Err(Error::Compile { arch, log: log.to_string_lossy().into_owned() });
            }
            Ok(Err(e)) => return Err(Error::Compile { arch, log: format!("{e:?}") }),
            Err(_) => {
                return Err(Error::Panicked { kernel: "module", call: "nvrtcCompileProgram" });
            }
        };
        let module = guarded("module", "cuModuleLoadData", || ctx.load_module(ptx))?;
        let mut functions = Vec::with_capacity(ENTRY_POINTS.len());
        for name in ENTRY_POINTS {
            functions.push(guarded(name, "cuModuleGetFunction", || module.load_function(name))?);
        }
        Ok(Self { ctx: Arc::clone(ctx), arch, functions })
    }

    /// The `--gpu-architecture` the module was compiled for.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    fn function(&self, name: &'static str) -> &CudaFunction {
        let i = ENTRY_POINTS.iter().position(|&n| n == name).unwrap_or(0);
        &self.functions[i]
    }

    /// Launches `name` with `params` (pointers to each argument's value).
    ///
    /// # Safety
    /// `params` must match the kernel's signature in `kernels.cu`, and every device
    /// address among the arguments must be valid for what the kernel does with it.
    unsafe fn launch(
        &self,
        name: &'static str,
        stream: &CudaStreamHandle,
        grid: u32,
        params: &mut [*mut c_void],
    ) -> Result<()> {
        guarded(name, "cuCtxSetCurrent", || self.ctx.bind_to_thread())?;
        let f = self.function(name).cu_function();
        // SAFETY: the caller vouches for the arguments; the function belongs to this
        // context, which is current; the stream is a live stream of the same context.
        let r = unsafe {
            sys::cuLaunchKernel(
                f,
                grid,
                1,
                1,
                BLOCK,
                1,
                1,
                0,
                stream.cu_stream(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        check(name, "cuLaunchKernel", r)
    }

    /// Gathers and casts `count` packed placements from `descs` into `dst` (kind `out`).
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when `descs` holds fewer than `count` descriptors;
    /// [`Error::Misaligned`] when `dst` is not aligned for `out`; [`Error::Driver`] when
    /// the launch fails.
    ///
    /// # Safety
    /// `descs` must hold `count` descriptors made by [`crate::pack_placements`] for kind
    /// `out` and an output of at most `dst.len() / element size` elements; each
    /// descriptor's `src` must name device memory holding its whole chunk; all of it must
    /// stay valid, and `dst` unread by others, until the launch completes on `stream`.
    pub unsafe fn assemble(
        &self,
        stream: &CudaStreamHandle,
        out: OutDtype,
        dst: DeviceRange,
        descs: DeviceRange,
        count: u32,
    ) -> Result<()> {
        let name = assemble_kernel(out);
        check_assemble(out, dst, descs, count)?;
        if count == 0 {
            return Ok(());
        }
        let (mut p, mut n, mut o) = (descs.ptr(), count, dst.ptr());
        let mut params = [
            (&raw mut p).cast::<c_void>(),
            (&raw mut n).cast::<c_void>(),
            (&raw mut o).cast::<c_void>(),
        ];
        // SAFETY: (const Placement*, u32, u8*) as in kernels.cu; validity per the contract.
        unsafe { self.launch(name, stream, grid_for(u64::from(count)), &mut params) }
    }

    /// Writes each packed fill box's value (`elem_size` bytes) into `dst`.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when `boxes` holds fewer than `count` boxes;
    /// [`Error::BadBox`] for an element size other than 1, 2, 4, 8; [`Error::Misaligned`];
    /// [`Error::Driver`].
    ///
    /// # Safety
    /// `boxes` must hold `count` boxes made by [`crate::pack_fills`] for an output of at
    /// most `dst.len() / elem_size` elements, valid until the launch completes.
    pub unsafe fn fill(
        &self,
        stream: &CudaStreamHandle,
        elem_size: u32,
        dst: DeviceRange,
        boxes: DeviceRange,
        count: u32,
    ) -> Result<()> {
        let name = "damacy_fill";
        check_fill(elem_size, dst, boxes, count)?;
        if count == 0 {
            return Ok(());
        }
        let (mut b, mut n, mut e, mut o) = (boxes.ptr(), count, elem_size, dst.ptr());
        let mut params = [
            (&raw mut b).cast::<c_void>(),
            (&raw mut n).cast::<c_void>(),
            (&raw mut e).cast::<c_void>(),
            (&raw mut o).cast::<c_void>(),
        ];
        // SAFETY: (const FillBox*, u32, u32, u8*) as in kernels.cu; validity per contract.
        unsafe { self.launch(name, stream, grid_for(u64::from(count)), &mut params) }
    }

    /// Undoes a blosc shuffle over a whole chunk of `nbytes` bytes: `src` (shuffled) →
    /// `dst`. (The assemble kernel does the same on the fly; this pass is for consumers
    /// that need the plain bytes.)
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when either range is shorter than `nbytes`;
    /// [`Error::BadShuffle`] for a typesize or blocksize of 0; [`Error::Driver`].
    pub fn unshuffle(
        &self,
        stream: &CudaStreamHandle,
        src: DeviceRange,
        dst: DeviceRange,
        nbytes: u64,
        spec: ShuffleSpec,
    ) -> Result<()> {
        let name = "damacy_unshuffle";
        need(name, "source", src, nbytes)?;
        need(name, "destination", dst, nbytes)?;
        if spec.typesize == 0 || spec.blocksize == 0 {
            return Err(Error::BadShuffle {
                index: 0,
                typesize: spec.typesize,
                blocksize: spec.blocksize,
            });
        }
        if nbytes == 0 {
            return Ok(());
        }
        let (mut s, mut d, mut n, mut sh, mut ts, mut bs) =
            (src.ptr(), dst.ptr(), nbytes, spec.shuffle as u32, spec.typesize, spec.blocksize);
        let mut params = [
            (&raw mut s).cast::<c_void>(),
            (&raw mut d).cast::<c_void>(),
            (&raw mut n).cast::<c_void>(),
            (&raw mut sh).cast::<c_void>(),
            (&raw mut ts).cast::<c_void>(),
            (&raw mut bs).cast::<c_void>(),
        ];
        let grid = grid_for(nbytes.div_ceil(u64::from(BLOCK)));
        // SAFETY: (const u8*, u8*, u64, u32, u32, u64) as in kernels.cu; both ranges hold
        // `nbytes` (checked), and DeviceRange values name live memory by construction.
        unsafe { self.launch(name, stream, grid, &mut params) }
    }

    /// Copies `count` raw ranges (described in device memory) in one launch.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when `ranges` holds fewer than `count`; [`Error::Driver`].
    ///
    /// # Safety
    /// Every range's source and destination must be valid device memory of its length,
    /// destinations must not overlap sources or each other, until the launch completes.
    pub unsafe fn memcpy_batch(
        &self,
        stream: &CudaStreamHandle,
        ranges: DeviceRange,
        count: u32,
    ) -> Result<()> {
        let name = "damacy_memcpy";
        check_memcpy_batch(ranges, count)?;
        if count == 0 {
            return Ok(());
        }
        let (mut r, mut n) = (ranges.ptr(), count);
        let mut params = [(&raw mut r).cast::<c_void>(), (&raw mut n).cast::<c_void>()];
        // SAFETY: (const CopyRange*, u32) as in kernels.cu; validity per the contract.
        unsafe { self.launch(name, stream, grid_for(u64::from(count)), &mut params) }
    }

    /// Reduces a decode batch's per-chunk results: chunk `i` fails when `statuses[i]`
    /// (an `i32`, nvCOMP's `nvcompStatus_t`) is not 0 or `actual[i] != expected[i]`
    /// (`u64` sizes). Writes [`crate::DecodeReport::BYTES`] bytes to `report` (reset first, on
    /// the same stream); read them back with [`crate::DecodeReport::from_bytes`].
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when an array is shorter than `count` entries or the
    /// report shorter than 8 bytes; [`Error::Driver`].
    pub fn status_reduce(
        &self,
        stream: &CudaStreamHandle,
        statuses: DeviceRange,
        actual: DeviceRange,
        expected: DeviceRange,
        count: u32,
        report: DeviceRange,
    ) -> Result<()> {
        let name = "damacy_status_reduce";
        check_status_reduce(statuses, actual, expected, count, report)?;
        guarded(name, "cuCtxSetCurrent", || self.ctx.bind_to_thread())?;
        // SAFETY: the report holds two aligned u32 words (checked above).
        check(name, "cuMemsetD32Async", unsafe {
            sys::cuMemsetD32Async(report.ptr(), u32::MAX, 1, stream.cu_stream())
        })?;
        // SAFETY: as above, the second word.
        check(name, "cuMemsetD32Async", unsafe {
            sys::cuMemsetD32Async(report.ptr() + 4, 0, 1, stream.cu_stream())
        })?;
        if count == 0 {
            return Ok(());
        }
        let (mut s, mut a, mut e, mut n, mut r) =
            (statuses.ptr(), actual.ptr(), expected.ptr(), count, report.ptr());
        let mut params = [
            (&raw mut s).cast::<c_void>(),
            (&raw mut a).cast::<c_void>(),
            (&raw mut e).cast::<c_void>(),
            (&raw mut n).cast::<c_void>(),
            (&raw mut r).cast::<c_void>(),
        ];
        let grid = grid_for(u64::from(count).div_ceil(u64::from(BLOCK)));
        // SAFETY: (const i32*, const u64*, const u64*, u32, u32*) as in kernels.cu; all
        // lengths checked above.
        unsafe { self.launch(name, stream, grid, &mut params) }
    }
}

impl Kernels {
    /// Checks `frames.count` zstd frames on `stream`, writing one [`crate::FrameVerdict`] per
    /// frame into `verdicts` (24 bytes each): exactly what [`crate::check_zstd_frame`]
    /// reports for the frame (its host twin is [`crate::host::check_zstd_frames`]). Read
    /// the verdicts back after the stream reached the check ([`crate::FrameVerdict::from_bytes`],
    /// then [`crate::FrameVerdict::result`] for the host's error). The kernel reads each frame's
    /// headers only, never past its compressed size, and writes nothing but the verdicts,
    /// so it can run before nvCOMP on frames the host never saw.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when an array holds fewer than `count` entries;
    /// [`Error::Misaligned`] for verdicts not 8-byte aligned; [`Error::Driver`].
    ///
    /// # Safety
    /// Each of the first `count` entries of `frames.comp_ptrs` must be the address of
    /// device memory readable for the matching `comp_bytes` entry, and every array and
    /// `verdicts` must stay valid (and `verdicts` unread by others) until the check
    /// completes on `stream`.
    pub unsafe fn check_zstd_frames(
        &self,
        stream: &CudaStreamHandle,
        frames: &ZstdFrames,
        verdicts: DeviceRange,
    ) -> Result<()> {
        check_frame_check(frames, verdicts)?;
        if frames.count == 0 {
            return Ok(());
        }
        let (mut p, mut b, mut e, mut n, mut v) = (
            frames.comp_ptrs.ptr(),
            frames.comp_bytes.ptr(),
            frames.expected.ptr(),
            frames.count,
            verdicts.ptr(),
        );
        let mut params = [
            (&raw mut p).cast::<c_void>(),
            (&raw mut b).cast::<c_void>(),
            (&raw mut e).cast::<c_void>(),
            (&raw mut n).cast::<c_void>(),
            (&raw mut v).cast::<c_void>(),
        ];
        let grid = grid_for(u64::from(frames.count).div_ceil(u64::from(BLOCK)));
        // SAFETY: (const u64*, const u64*, const u64*, u32, FrameVerdict*) as in
        // kernels.cu; array lengths checked above, frame memory per the contract.
        unsafe { self.launch(FRAME_CHECK, stream, grid, &mut params) }
    }
}

/// The NVRTC architecture option for compute capability `major.minor`.
pub(crate) fn arch_option(major: i32, minor: i32) -> String {
    format!("--gpu-architecture=compute_{major}{minor}")
}
