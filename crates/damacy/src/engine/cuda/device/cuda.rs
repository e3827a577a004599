//! The real device: a GPU through `gpu-schedule`'s CUDA backend, the NVRTC-compiled
//! kernels and nvCOMP's batched zstd decoder.

use std::sync::Arc;

use gpu_schedule::{CudaBackend, CudaDeviceMem, CudaEventHandle, CudaPinnedMem, CudaStreamHandle};
use kernels::cufile::{CufileLib, Driver, FileHandle, RegisteredBuffer};
use kernels::nvcomp::{NvcompLib, ZstdDecoder};
use kernels::{DeviceRange, Kernels, ZstdBatch, ZstdFrames};
use zarr::OutDtype;

use super::{Device, GsResult};
use crate::config::{Config, Gds};
use crate::engine::cuda::core::Opened;
use crate::engine::cuda::sizing::choose;
use crate::engine::cuda::stage::{GdsFailed, GdsRead, StageMem};
use crate::engine::cuda::{MAX_GPU_STREAM, gpu_err, gs};
use crate::error::{Error, GdsUnavailable, Result, Unavailable};

/// A GPU with its kernels and, when nvCOMP loaded, a decoder per wave slot.
#[derive(Debug)]
pub(crate) struct CudaDevice {
    pub(crate) backend: Arc<CudaBackend>,
    pub(crate) kernels: Arc<Kernels>,
    /// One per wave slot (each owns its temp buffer); empty without nvCOMP.
    pub(crate) decoders: Vec<ZstdDecoder>,
}

impl CudaDevice {
    /// Opens device `device`: its kernels, nvCOMP when it loads (and
    /// `DAMACY_NVCOMP` does not turn it off), and the buffer sizes the budgets allow.
    ///
    /// # Errors
    /// `BackendUnavailable` without a driver or device, or when the kernels do not
    /// compile; `Budget` when a budget is too small; `Gpu` when nvCOMP fails to size or
    /// allocate its decoder.
    pub(in crate::engine::cuda) fn open(cfg: &Config, device: usize) -> Result<Opened<Self>> {
        if !gpu_schedule::driver_present() {
            return Err(Error::BackendUnavailable { reason: Unavailable::NoDriver });
        }
        let backend =
            Arc::new(CudaBackend::new(device).map_err(|_| Error::BackendUnavailable {
                reason: Unavailable::NoDevice { device },
            })?);
        let kernels = Kernels::for_backend(&backend).map_err(|_| Error::BackendUnavailable {
            reason: Unavailable::KernelsDidNotCompile { device },
        })?;
        let lib = if kernels::nvcomp::nvcomp_disabled() { None } else { NvcompLib::global().ok() };
        let align = match &lib {
            Some(l) => {
                gs("binding the device", backend.bind())?;
                l.alignments().map_err(|e| gpu_err("nvCOMP alignments", e))?
            }
            None => Default::default(),
        };
        let temp = |chunks: u64| match &lib {
            Some(l) => l
                .temp_size(chunks as usize, MAX_GPU_STREAM as usize)
                .map(|t| t as u64)
                .map_err(|e| gpu_err("nvCOMP temp size", e)),
            None => Ok(0),
        };
        let (sizing, temp) = choose(cfg, &temp)?;
        let mut decoders = Vec::new();
        if let Some(l) = lib {
            for _ in 0..sizing.waves {
                decoders.push(
                    ZstdDecoder::new(
                        Arc::clone(&l),
                        &backend,
                        sizing.chunks as usize,
                        MAX_GPU_STREAM as usize,
                    )
                    .map_err(|e| gpu_err("nvCOMP decoder", e))?,
                );
            }
        }
        Ok(Opened {
            dev: Self { backend, kernels, decoders },
            sizing,
            temp,
            in_align: align.input as u64,
            out_align: align.output as u64,
        })
    }
}

impl StageMem for CudaPinnedMem {
    fn len(&self) -> usize {
        CudaPinnedMem::len(self)
    }

    fn as_ptr(&self) -> *mut u8 {
        CudaPinnedMem::as_ptr(self)
    }
}

impl Device for CudaDevice {
    type Sched = CudaBackend;
    type Stream = CudaStreamHandle;
    type Event = CudaEventHandle;
    type DevMem = CudaDeviceMem;
    type PinMem = CudaPinnedMem;

    fn sched(&self) -> &Arc<CudaBackend> {
        &self.backend
    }

    fn bind(&self) -> GsResult<()> {
        self.backend.bind()
    }

    fn alloc_device(&self, bytes: usize) -> GsResult<CudaDeviceMem> {
        gpu_schedule::Backend::alloc_device(&*self.backend, bytes)
    }

    fn alloc_pinned(&self, bytes: usize) -> GsResult<CudaPinnedMem> {
        gpu_schedule::Backend::alloc_pinned(&*self.backend, bytes)
    }

    fn dev_range(mem: &CudaDeviceMem) -> DeviceRange {
        DeviceRange::from(mem)
    }

    fn new_event(&self) -> GsResult<CudaEventHandle> {
        gpu_schedule::Backend::create_event(&*self.backend)
    }

    fn record(&self, ev: &CudaEventHandle, stream: &CudaStreamHandle) -> GsResult<()> {
        ev.record(stream)
    }

    fn wait_in(&self, ev: &CudaEventHandle, stream: &CudaStreamHandle) -> GsResult<()> {
        ev.wait_in(stream)
    }

    fn sync_event(&self, ev: &CudaEventHandle) -> GsResult<()> {
        ev.synchronize()
    }

    fn event_raw(ev: &CudaEventHandle) -> u64 {
        ev.raw()
    }

    fn stream_raw(stream: &CudaStreamHandle) -> u64 {
        stream.cu_stream() as u64
    }

    unsafe fn wait_raw_event(&self, stream: &CudaStreamHandle, event: u64) -> GsResult<()> {
        // SAFETY: the caller's contract.
        unsafe { self.backend.wait_raw_event(stream, event) }
    }

    fn copy_range_to_device(
        &self,
        stream: &CudaStreamHandle,
        dst: &CudaDeviceMem,
        dst_off: usize,
        src: &CudaPinnedMem,
        src_off: usize,
        len: usize,
    ) -> GsResult<()> {
        self.backend.copy_range_to_device(stream, dst, dst_off, src, src_off, len)
    }

    fn copy_range_to_pinned(
        &self,
        stream: &CudaStreamHandle,
        dst: &CudaPinnedMem,
        dst_off: usize,
        src: &CudaDeviceMem,
        src_off: usize,
        len: usize,
    ) -> GsResult<()> {
        self.backend.copy_range_to_pinned(stream, dst, dst_off, src, src_off, len)
    }

    fn upload(
        &self,
        stream: &CudaStreamHandle,
        dst: &CudaDeviceMem,
        dst_off: usize,
        bytes: &[u8],
    ) -> GsResult<()> {
        self.backend.upload(stream, dst, dst_off, bytes)
    }

    fn download(&self, dst: &mut [u8], src: &CudaDeviceMem, src_off: usize) -> GsResult<()> {
        self.backend.download(dst, src, src_off)
    }

    unsafe fn assemble(
        &self,
        stream: &CudaStreamHandle,
        out: OutDtype,
        dst: DeviceRange,
        descs: DeviceRange,
        count: u32,
    ) -> kernels::Result<()> {
        // SAFETY: the caller's contract.
        unsafe { self.kernels.assemble(stream, out, dst, descs, count) }
    }

    unsafe fn fill(
        &self,
        stream: &CudaStreamHandle,
        elem_size: u32,
        dst: DeviceRange,
        boxes: DeviceRange,
        count: u32,
    ) -> kernels::Result<()> {
        // SAFETY: the caller's contract.
        unsafe { self.kernels.fill(stream, elem_size, dst, boxes, count) }
    }

    unsafe fn memcpy_batch(
        &self,
        stream: &CudaStreamHandle,
        ranges: DeviceRange,
        count: u32,
    ) -> kernels::Result<()> {
        // SAFETY: the caller's contract.
        unsafe { self.kernels.memcpy_batch(stream, ranges, count) }
    }

    fn status_reduce(
        &self,
        stream: &CudaStreamHandle,
        statuses: DeviceRange,
        actual: DeviceRange,
        expected: DeviceRange,
        count: u32,
        report: DeviceRange,
    ) -> kernels::Result<()> {
        self.kernels.status_reduce(stream, statuses, actual, expected, count, report)
    }

    fn open_gds(
        &self,
        mode: Gds,
        staging: &[CudaDeviceMem],
    ) -> Result<Option<Vec<Arc<dyn GdsRead>>>> {
        // `auto` without nvidia-fs loaded: nothing to gain, and libcufile is not even
        // loaded (its driver would start in compat mode and write `cufile.log` into the
        // working directory).
        let nvfs = std::path::Path::new("/proc/driver/nvidia-fs").exists();
        if mode == Gds::Off || (mode == Gds::Auto && !nvfs) {
            return Ok(None);
        }
        let on = mode == Gds::On;
        let unavailable = |e| Error::GdsUnavailable { reason: GdsUnavailable::Cufile(e) };
        let driver = match CufileLib::global().and_then(|lib| Driver::open(&lib)) {
            Ok(d) => d,
            Err(e) if on => return Err(unavailable(e)),
            Err(_) => return Ok(None),
        };
        let props = match driver.properties() {
            Ok(p) => p,
            Err(e) if on => return Err(unavailable(e)),
            Err(_) => return Ok(None),
        };
        // nvidia-fs loaded and serving some file system: reads go by DMA (files open with
        // O_DIRECT). Otherwise cuFile's compat mode bounces through its own host buffer,
        // which only `on` asks for.
        let native = props.nvfs_version != (0, 0) && props.fs_flags != 0;
        if !native && !on {
            return Ok(None);
        }
        let files = Arc::new(GdsFiles {
            driver: driver.clone(),
            direct: native,
            open: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let mut readers: Vec<Arc<dyn GdsRead>> = Vec::with_capacity(staging.len());
        for mem in staging {
            let buf = RegisteredBuffer::register(&driver, &self.backend, mem.clone())
                .map_err(|e| gpu_err("cuFileBufRegister", e))?;
            readers.push(Arc::new(CudaGds { buf, files: Arc::clone(&files) }));
        }
        Ok(Some(readers))
    }

    unsafe fn check_frames(
        &self,
        stream: &CudaStreamHandle,
        frames: &ZstdFrames,
        verdicts: DeviceRange,
    ) -> kernels::Result<()> {
        // SAFETY: the caller's contract.
        unsafe { self.kernels.check_zstd_frames(stream, frames, verdicts) }
    }

    fn decoder_capacity(&self) -> Option<usize> {
        self.decoders.first().map(|d| d.capacity().0)
    }

    unsafe fn decode(
        &self,
        decoder: usize,
        stream: &CudaStreamHandle,
        batch: &ZstdBatch,
    ) -> kernels::Result<()> {
        match self.decoders.get(decoder) {
            // SAFETY: the caller's contract.
            Some(d) => unsafe { d.decode(stream, batch) },
            None => Err(kernels::Error::NvcompMissing { searched: Vec::new() }),
        }
    }
}

/// The files GDS reads, registered with cuFile on first use and kept (up to
/// [`GDS_FILES`]) for later reads; shared by the wave slots' readers.
#[derive(Debug)]
struct GdsFiles {
    driver: Driver,
    /// Open files with `O_DIRECT` (native GDS needs it; compat mode reads either way).
    direct: bool,
    open: std::sync::Mutex<std::collections::HashMap<String, Arc<FileHandle>>>,
}

/// Registered files kept at most (each holds a file descriptor open); past it the table
/// starts over (reads in flight keep their handles alive until they end).
const GDS_FILES: usize = 256;

impl GdsFiles {
    fn handle(&self, path: &str) -> std::result::Result<Arc<FileHandle>, GdsFailed> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = open.get(path) {
            return Ok(Arc::clone(h));
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true);
        if self.direct {
            use std::os::unix::fs::OpenOptionsExt;
            opts.custom_flags(libc_o_direct());
        }
        let file = opts.open(path).map_err(|_| GdsFailed)?;
        let h = Arc::new(FileHandle::register(&self.driver, file).map_err(|_| GdsFailed)?);
        if open.len() >= GDS_FILES {
            open.clear();
        }
        open.insert(path.to_owned(), Arc::clone(&h));
        Ok(h)
    }
}

/// `O_DIRECT` on Linux (x86-64 and aarch64 differ).
fn libc_o_direct() -> i32 {
    if cfg!(target_arch = "aarch64") { 0o200000 } else { 0o40000 }
}

/// One wave slot's GDS reader: its device staging, registered with cuFile.
#[derive(Debug)]
struct CudaGds {
    buf: RegisteredBuffer,
    files: Arc<GdsFiles>,
}

impl GdsRead for CudaGds {
    fn read(
        &self,
        path: &str,
        offset: u64,
        len: usize,
        dst_off: u64,
    ) -> std::result::Result<(), GdsFailed> {
        let file = self.files.handle(path)?;
        self.buf.read_from(&file, offset, len, dst_off).map_err(|_| GdsFailed)
    }
}
