//! The real device: a GPU through `gpu-schedule`'s CUDA backend, the NVRTC-compiled
//! kernels and nvCOMP's batched zstd decoder.

use std::sync::Arc;

use gpu_schedule::{CudaBackend, CudaDeviceMem, CudaEventHandle, CudaPinnedMem, CudaStreamHandle};
use kernels::nvcomp::{NvcompLib, ZstdDecoder};
use kernels::{DeviceRange, Kernels, ZstdBatch};
use zarr::OutDtype;

use super::{Device, GsResult};
use crate::config::Config;
use crate::engine::cuda::core::Opened;
use crate::engine::cuda::sizing::choose;
use crate::engine::cuda::stage::StageMem;
use crate::engine::cuda::{MAX_GPU_STREAM, gpu_err, gs};
use crate::error::{Error, Result, Unavailable};

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
