//! The simulated device: the CUDA engine's orchestration on the host, with nothing
//! simulated away but the GPU itself. Streams are the `gpu-schedule` host backend's
//! (a thread each, running work in order, events and waits across streams as on a GPU);
//! device and pinned memory are host allocations whose addresses the kernels'
//! descriptors hold; every kernel and nvCOMP's decode run as their host twins
//! (`kernels::host`), enqueued in stream order. A launch's arguments are checked when it
//! is enqueued, as the CUDA wrappers check them, so that errors surface where they would
//! on a GPU.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use gpu_schedule::{Backend as _, HostBackend, HostEvent, HostStream, StallMeter};
use kernels::{DeviceRange, ZstdBatch, ZstdFrames};
use zarr::OutDtype;

use super::{Device, GsResult};
use crate::config::{Config, Gds};
use crate::engine::cuda::core::Opened;
use crate::engine::cuda::sizing::choose;
use crate::engine::cuda::stage::{GdsFailed, GdsRead, StageMem};
use crate::error::Result;
use crate::fault::{Fault, Faults};

/// Alignment of every simulated allocation (`cuMemAlloc` aligns to 256 bytes).
const ALIGN: usize = 256;

/// A simulated device: host streams and memory, the kernels' host twins.
#[derive(Debug)]
pub(crate) struct SimDevice {
    backend: Arc<HostBackend>,
    /// Chunks one decode call takes; `None` without a decoder (`DAMACY_NVCOMP=off`, as on
    /// a GPU).
    decode_chunks: Option<usize>,
    meter: Arc<StallMeter>,
    /// The pipeline's armed faults (`DecodeRendezvous` acts here).
    faults: Arc<Faults>,
    /// Decode payloads that arrived at the rendezvous so far.
    met: Arc<(Mutex<u64>, Condvar)>,
}

/// How long a decode payload waits at the rendezvous for its partner before it fails.
const RENDEZVOUS_LIMIT: Duration = Duration::from_secs(60);

/// The `DecodeRendezvous` fault's meeting: the odd arrival waits for the next one.
fn rendezvous(met: &(Mutex<u64>, Condvar)) -> kernels::Result<()> {
    let (lock, cv) = met;
    let mut n = lock.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    let me = *n;
    cv.notify_all();
    if me % 2 == 0 {
        return Ok(());
    }
    let (n, timeout) =
        cv.wait_timeout_while(n, RENDEZVOUS_LIMIT, |n| *n == me).unwrap_or_else(|e| e.into_inner());
    drop(n);
    if timeout.timed_out() {
        // The only way to tell the test: a failed decode call, as nvCOMP's would be.
        return Err(kernels::Error::Nvcomp { call: "decode rendezvous (injected)", status: -1 });
    }
    Ok(())
}

/// The alignment the simulated decoder asks of compressed inputs and decoded outputs,
/// so that the staging's alignment rules run as they do for nvCOMP.
const SIM_ALIGN: u64 = 8;

impl SimDevice {
    /// Opens a simulated device sized by the budgets as a GPU would be (its decoder
    /// needs no temp memory), with a decoder unless `DAMACY_NVCOMP` turns nvCOMP off.
    ///
    /// # Errors
    /// `Budget` when a budget is too small.
    pub(in crate::engine::cuda) fn open(cfg: &Config, faults: Arc<Faults>) -> Result<Opened<Self>> {
        let (sizing, temp) = choose(cfg, &|_| Ok(0))?;
        let dev = Self {
            backend: Arc::new(HostBackend::new()),
            decode_chunks: (!kernels::search::nvcomp_disabled()).then_some(sizing.chunks as usize),
            meter: Arc::new(StallMeter::default()),
            faults,
            met: Arc::new((Mutex::new(0), Condvar::new())),
        };
        Ok(Opened { dev, sizing, temp, in_align: SIM_ALIGN, out_align: SIM_ALIGN })
    }

    /// Runs `work` in stream order; a failure is kept by the stream, as a failed kernel's
    /// would be.
    fn enqueue(
        &self,
        stream: &HostStream,
        call: &'static str,
        work: impl FnOnce() -> kernels::Result<()> + Send + 'static,
    ) -> GsResult<()> {
        let task = move || {
            work().map_err(|e| gpu_schedule::Error::CudaDriver { call, code: e.to_string() })
        };
        self.backend.enqueue_host(stream, Box::new(task))
    }
}

impl SimDevice {
    /// Copies `len` bytes between two simulated buffers (device and pinned memory are
    /// alike here), in stream order, after checking both ranges now.
    fn copy(
        &self,
        stream: &HostStream,
        call: &'static str,
        (dst, dst_off): (&SimMem, usize),
        (src, src_off): (&SimMem, usize),
        len: usize,
    ) -> GsResult<()> {
        in_bounds(call, src_off, len, src.0.len)?;
        in_bounds(call, dst_off, len, dst.0.len)?;
        let (s, d) = (src.addr() + src_off as u64, dst.addr() + dst_off as u64);
        self.enqueue(stream, call, copy_task(s, d, len))
    }
}

/// Simulated device or pinned memory: one zeroed host allocation, shared by its clones,
/// freed with the last.
#[derive(Debug, Clone)]
pub(crate) struct SimMem(Arc<SimAlloc>);

#[derive(Debug)]
struct SimAlloc {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the allocation is plain bytes; who may touch them when is ordered by the
// engine's streams, events and pools, as for device memory.
unsafe impl Send for SimAlloc {}
// SAFETY: as above.
unsafe impl Sync for SimAlloc {}

impl SimMem {
    fn zeroed(len: usize) -> GsResult<Self> {
        let too_large = || gpu_schedule::Error::CudaDriver {
            call: "cuMemAlloc",
            code: "CUDA_ERROR_OUT_OF_MEMORY".into(),
        };
        let layout = Layout::from_size_align(len.max(1), ALIGN).map_err(|_| too_large())?;
        // SAFETY: the layout has a non-zero size.
        let ptr =
            NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or_else(too_large)?;
        Ok(Self(Arc::new(SimAlloc { ptr, len })))
    }

    fn addr(&self) -> u64 {
        self.0.ptr.as_ptr() as u64
    }
}

impl Drop for SimAlloc {
    fn drop(&mut self) {
        if let Ok(layout) = Layout::from_size_align(self.len.max(1), ALIGN) {
            // SAFETY: allocated with this layout in `SimMem::zeroed`.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

impl StageMem for SimMem {
    fn len(&self) -> usize {
        self.0.len
    }

    fn as_ptr(&self) -> *mut u8 {
        self.0.ptr.as_ptr()
    }
}

/// Checks that `len` bytes at `off` lie inside a buffer of `cap` bytes.
fn in_bounds(op: &'static str, off: usize, len: usize, cap: usize) -> GsResult<()> {
    match off.checked_add(len) {
        Some(end) if end <= cap => Ok(()),
        _ => Err(gpu_schedule::Error::BufferTooSmall {
            op,
            needed: off.saturating_add(len),
            len: cap,
        }),
    }
}

/// A raw copy of `len` bytes, in stream order.
fn copy_task(src: u64, dst: u64, len: usize) -> impl FnOnce() -> kernels::Result<()> + Send {
    move || {
        // SAFETY: both ranges were checked against their live buffers when enqueued; the
        // engine keeps them alive and unwritten by others until the stream passes this.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, len) };
        Ok(())
    }
}

impl Device for SimDevice {
    type Sched = HostBackend;
    type Stream = HostStream;
    type Event = HostEvent;
    type DevMem = SimMem;
    type PinMem = SimMem;

    fn sched(&self) -> &Arc<HostBackend> {
        &self.backend
    }

    fn bind(&self) -> GsResult<()> {
        Ok(())
    }

    fn alloc_device(&self, bytes: usize) -> GsResult<SimMem> {
        SimMem::zeroed(bytes)
    }

    fn alloc_pinned(&self, bytes: usize) -> GsResult<SimMem> {
        SimMem::zeroed(bytes)
    }

    fn dev_range(mem: &SimMem) -> DeviceRange {
        // SAFETY: a live allocation of its length.
        unsafe { DeviceRange::from_raw(mem.addr(), mem.0.len as u64) }
    }

    fn new_event(&self) -> GsResult<HostEvent> {
        self.backend.create_event()
    }

    fn record(&self, ev: &HostEvent, stream: &HostStream) -> GsResult<()> {
        self.backend.record_event(ev, stream)
    }

    fn wait_in(&self, ev: &HostEvent, stream: &HostStream) -> GsResult<()> {
        self.backend.stream_wait_event(stream, ev, &self.meter)
    }

    fn sync_event(&self, ev: &HostEvent) -> GsResult<()> {
        self.backend.host_wait_event(ev)
    }

    fn event_raw(ev: &HostEvent) -> u64 {
        std::ptr::from_ref(ev) as u64
    }

    fn stream_raw(stream: &HostStream) -> u64 {
        std::ptr::from_ref(stream) as u64
    }

    /// The simulated device has no events of a caller's: nothing to wait for.
    unsafe fn wait_raw_event(&self, _stream: &HostStream, _event: u64) -> GsResult<()> {
        Ok(())
    }

    fn copy_range_to_device(
        &self,
        stream: &HostStream,
        dst: &SimMem,
        dst_off: usize,
        src: &SimMem,
        src_off: usize,
        len: usize,
    ) -> GsResult<()> {
        self.copy(stream, "cuMemcpyHtoDAsync", (dst, dst_off), (src, src_off), len)
    }

    fn copy_range_to_pinned(
        &self,
        stream: &HostStream,
        dst: &SimMem,
        dst_off: usize,
        src: &SimMem,
        src_off: usize,
        len: usize,
    ) -> GsResult<()> {
        self.copy(stream, "cuMemcpyDtoHAsync", (dst, dst_off), (src, src_off), len)
    }

    fn upload(
        &self,
        stream: &HostStream,
        dst: &SimMem,
        dst_off: usize,
        bytes: &[u8],
    ) -> GsResult<()> {
        in_bounds("upload", dst_off, bytes.len(), dst.0.len)?;
        // Pageable memory is copied before the call returns, as the driver does.
        let owned = bytes.to_vec();
        let d = dst.addr() + dst_off as u64;
        let keep = dst.clone();
        self.enqueue(stream, "cuMemcpyHtoDAsync", move || {
            let _alive = keep;
            copy_task(owned.as_ptr() as u64, d, owned.len())()
        })
    }

    fn download(&self, dst: &mut [u8], src: &SimMem, src_off: usize) -> GsResult<()> {
        in_bounds("download", src_off, dst.len(), src.0.len)?;
        // SAFETY: in bounds (checked); the caller waited for the writes it reads.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr().add(src_off).cast_const(),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        Ok(())
    }

    unsafe fn assemble(
        &self,
        stream: &HostStream,
        out: OutDtype,
        dst: DeviceRange,
        descs: DeviceRange,
        count: u32,
    ) -> kernels::Result<()> {
        kernels::host::check_assemble(out, dst, descs, count)?;
        // SAFETY: the caller's contract, in stream order.
        let run = move || unsafe { kernels::host::assemble(out, dst, descs, count) };
        Ok(self.enqueue(stream, "damacy_assemble", run)?)
    }

    unsafe fn fill(
        &self,
        stream: &HostStream,
        elem_size: u32,
        dst: DeviceRange,
        boxes: DeviceRange,
        count: u32,
    ) -> kernels::Result<()> {
        kernels::host::check_fill(elem_size, dst, boxes, count)?;
        // SAFETY: the caller's contract, in stream order.
        let run = move || unsafe { kernels::host::fill(elem_size, dst, boxes, count) };
        Ok(self.enqueue(stream, "damacy_fill", run)?)
    }

    unsafe fn memcpy_batch(
        &self,
        stream: &HostStream,
        ranges: DeviceRange,
        count: u32,
    ) -> kernels::Result<()> {
        kernels::host::check_memcpy_batch(ranges, count)?;
        // SAFETY: the caller's contract, in stream order.
        let run = move || unsafe { kernels::host::memcpy_batch(ranges, count) };
        Ok(self.enqueue(stream, "damacy_memcpy", run)?)
    }

    fn status_reduce(
        &self,
        stream: &HostStream,
        statuses: DeviceRange,
        actual: DeviceRange,
        expected: DeviceRange,
        count: u32,
        report: DeviceRange,
    ) -> kernels::Result<()> {
        kernels::host::check_status_reduce(statuses, actual, expected, count, report)?;
        // SAFETY: ranges inside the engine's live metadata buffer (checked), in stream
        // order.
        let run = move || unsafe {
            kernels::host::status_reduce(statuses, actual, expected, count, report)
        };
        Ok(self.enqueue(stream, "damacy_status_reduce", run)?)
    }

    fn open_gds(&self, mode: Gds, staging: &[SimMem]) -> Result<Option<Vec<Arc<dyn GdsRead>>>> {
        // The simulated device has no native GDS support: only `on` (compat mode on a
        // GPU) reads with it.
        if mode != Gds::On {
            return Ok(None);
        }
        let readers = staging.iter().map(|mem| {
            let r: Arc<dyn GdsRead> =
                Arc::new(SimGds { mem: mem.clone(), faults: Arc::clone(&self.faults) });
            r
        });
        Ok(Some(readers.collect()))
    }

    unsafe fn check_frames(
        &self,
        stream: &HostStream,
        frames: &ZstdFrames,
        verdicts: DeviceRange,
    ) -> kernels::Result<()> {
        kernels::host::check_frame_check(frames, verdicts)?;
        let frames = *frames;
        // SAFETY: the caller's contract, in stream order.
        let run = move || unsafe { kernels::host::check_zstd_frames(&frames, verdicts) };
        Ok(self.enqueue(stream, "damacy_zstd_frame_check", run)?)
    }

    fn decoder_capacity(&self) -> Option<usize> {
        self.decode_chunks
    }

    unsafe fn decode(
        &self,
        _decoder: usize,
        stream: &HostStream,
        batch: &ZstdBatch,
    ) -> kernels::Result<()> {
        // The host twin keeps no state between calls: every decoder is the same.
        let limit = self.decode_chunks.unwrap_or(0);
        if batch.chunks > limit {
            return Err(kernels::Error::BatchTooLarge {
                chunks: batch.chunks,
                max_chunk_bytes: batch.max_chunk_bytes,
                limit_chunks: limit,
                limit_chunk_bytes: batch.max_chunk_bytes,
            });
        }
        kernels::host::check_zstd_decode(batch)?;
        let batch = *batch;
        let meet = self.faults.fire(Fault::DecodeRendezvous).then(|| Arc::clone(&self.met));
        let run = move || {
            if let Some(met) = meet {
                rendezvous(&met)?;
            }
            // SAFETY: the caller's contract, in stream order.
            unsafe { kernels::host::zstd_decode(&batch) }
        };
        Ok(self.enqueue(stream, "nvcompBatchedZstdDecompressAsync", run)?)
    }
}

/// The simulated device's GPUDirect Storage: a positioned read of the file into the
/// simulated device memory of a wave slot's staging.
#[derive(Debug)]
struct SimGds {
    mem: SimMem,
    /// `GdsRead` fails reads here.
    faults: Arc<Faults>,
}

impl GdsRead for SimGds {
    fn read(
        &self,
        path: &str,
        offset: u64,
        len: usize,
        dst_off: u64,
    ) -> std::result::Result<(), GdsFailed> {
        use std::os::unix::fs::FileExt;
        if self.faults.fire(Fault::GdsRead) {
            return Err(GdsFailed);
        }
        let end =
            usize::try_from(dst_off).ok().and_then(|o| o.checked_add(len)).ok_or(GdsFailed)?;
        if end > self.mem.0.len {
            return Err(GdsFailed);
        }
        let file = std::fs::File::open(path).map_err(|_| GdsFailed)?;
        // SAFETY: in bounds (checked); the region belongs to the chunk this worker reads,
        // and the simulated device reads it only after every job of the wave finished.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(self.mem.0.ptr.as_ptr().add(end - len), len) };
        file.read_exact_at(dst, offset).map_err(|_| GdsFailed)
    }
}
