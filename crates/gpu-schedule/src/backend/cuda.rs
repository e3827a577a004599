//! The CUDA backend on cudarc's driver API, loaded at run time: non-blocking streams,
//! blocking-sync events, counters in mapped page-locked memory driven by
//! `cuStreamWaitValue64`/`cuStreamWriteValue64`, device memory and page-locked host memory.

use std::ffi::c_void;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use cudarc::driver::{CudaContext, CudaStream as CuStream, DriverError, sys};

use super::{Backend, HostTask, StallMeter};
use crate::error::{Error, Result};
use crate::sync::{Arc, Condvar, DeviceSharedU64, Mutex, Ordering, lock};

/// Runs a driver call, turning both its error and a panic inside the binding (cudarc
/// panics when a symbol is missing) into typed errors.
fn guarded<T>(call: &'static str, f: impl FnOnce() -> Result<T, DriverError>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::CudaDriver { call, code: format!("{e:?}") }),
        Err(_) => Err(Error::CudaPanicked { call }),
    }
}

fn check(call: &'static str, r: sys::CUresult) -> Result<()> {
    r.result().map_err(|e| Error::CudaDriver { call, code: format!("{e:?}") })
}

/// Whether the CUDA driver library can be loaded on this machine.
pub fn driver_present() -> bool {
    // SAFETY: the probe only tries to dlopen the candidate library names and drops them.
    catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false)
}

/// The CUDA backend for one device.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    device_counters: bool,
}

impl fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.ctx.ordinal())
            .field("device_counters", &self.device_counters)
            .finish()
    }
}

impl CudaBackend {
    /// Opens device `ordinal` (its primary context).
    ///
    /// # Errors
    /// [`Error::CudaLibraryMissing`] when no driver is installed (never a panic);
    /// [`Error::CudaDriver`] when initialization or the device fails.
    pub fn new(ordinal: usize) -> Result<Self> {
        if !driver_present() {
            return Err(Error::CudaLibraryMissing);
        }
        let ctx = guarded("cuInit/cuDevicePrimaryCtxRetain", || CudaContext::new(ordinal))?;
        let attr = sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS;
        // An attribute the driver does not know reads as "unsupported": counters then
        // fall back to host rules and the scheduler runs at depth 1.
        let device_counters = guarded("cuDeviceGetAttribute", || ctx.attribute(attr))
            .map(|v| v != 0)
            .unwrap_or(false);
        Ok(Self { ctx, device_counters })
    }

    /// The cudarc context, for launching kernels on this backend's streams.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Makes this backend's context current on the calling thread (for calls made
    /// through [`CudaBackend::context`] directly).
    ///
    /// # Errors
    /// [`Error::CudaDriver`] or [`Error::CudaPanicked`] naming `cuCtxSetCurrent`.
    pub fn bind(&self) -> Result<()> {
        guarded("cuCtxSetCurrent", || self.ctx.bind_to_thread())
    }
}

/// A non-blocking stream plus the first error of its host tasks.
pub struct CudaStreamHandle {
    name: &'static str,
    stream: Arc<CuStream>,
    task_error: Arc<Mutex<Option<Error>>>,
}

impl fmt::Debug for CudaStreamHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaStreamHandle").field("name", &self.name).finish()
    }
}

impl CudaStreamHandle {
    /// The cudarc stream.
    pub fn stream(&self) -> &Arc<CuStream> {
        &self.stream
    }

    /// The raw `CUstream`, for kernel launches.
    pub fn cu_stream(&self) -> sys::CUstream {
        self.stream.cu_stream()
    }
}

/// An event created with blocking sync (host waits sleep instead of spinning) and no timing.
pub struct CudaEventHandle {
    event: sys::CUevent,
    ctx: Arc<CudaContext>,
}

// SAFETY: a CUevent is a driver handle usable from any thread once the context is bound,
// which every method here does first.
unsafe impl Send for CudaEventHandle {}
// SAFETY: as above; the driver synchronizes concurrent calls on one event.
unsafe impl Sync for CudaEventHandle {}

impl fmt::Debug for CudaEventHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CudaEventHandle")
    }
}

impl Drop for CudaEventHandle {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: the event was created by cuEventCreate and is destroyed once.
            let _ = unsafe { sys::cuEventDestroy_v2(self.event) };
        }
    }
}

impl CudaEventHandle {
    /// Blocks the calling thread until the event's latest record completed.
    ///
    /// # Errors
    /// `CudaDriver` when the driver call fails.
    pub fn synchronize(&self) -> Result<()> {
        guarded("cuCtxSetCurrent", || self.ctx.bind_to_thread())?;
        // SAFETY: a valid event; BLOCKING_SYNC makes this a sleep, not a spin.
        check("cuEventSynchronize", unsafe { sys::cuEventSynchronize(self.event) })
    }

    /// Records the event on `stream` (which must belong to the event's context).
    ///
    /// # Errors
    /// `CudaDriver` when the driver call fails.
    pub fn record(&self, stream: &CudaStreamHandle) -> Result<()> {
        guarded("cuCtxSetCurrent", || self.ctx.bind_to_thread())?;
        // SAFETY: both handles are live and belong to this context.
        check("cuEventRecord", unsafe { sys::cuEventRecord(self.event, stream.cu_stream()) })
    }

    /// Makes `stream` wait for the event's latest record.
    ///
    /// # Errors
    /// `CudaDriver` when the driver call fails.
    pub fn wait_in(&self, stream: &CudaStreamHandle) -> Result<()> {
        guarded("cuCtxSetCurrent", || self.ctx.bind_to_thread())?;
        // SAFETY: both handles are live and belong to this context.
        check("cuStreamWaitEvent", unsafe {
            sys::cuStreamWaitEvent(stream.cu_stream(), self.event, 0)
        })
    }

    /// Records the event on a stream made outside this crate: a consumer's `CUstream`, or
    /// the driver's special handles `CU_STREAM_LEGACY` (1) and `CU_STREAM_PER_THREAD` (2)
    /// (how the Python array API standard names a consumer's stream).
    ///
    /// # Safety
    /// `stream` must be 1, 2 or a live `CUstream` of the event's context.
    ///
    /// # Errors
    /// `CudaDriver` when the driver call fails.
    pub unsafe fn record_raw(&self, stream: u64) -> Result<()> {
        guarded("cuCtxSetCurrent", || self.ctx.bind_to_thread())?;
        // SAFETY: the event is live; the caller vouches for the stream.
        check("cuEventRecord", unsafe { sys::cuEventRecord(self.event, stream as sys::CUstream) })
    }

    /// The raw `CUevent`, for callers outside Rust (a training loop's own streams).
    pub fn raw(&self) -> u64 {
        self.event as u64
    }
}

/// A counter: one mapped page-locked `u64` that the host reads and writes directly and
/// streams wait on and write with 64-bit stream memory operations.
pub struct CudaCounter {
    name: &'static str,
    host: *mut u64,
    device: sys::CUdeviceptr,
    ctx: Arc<CudaContext>,
    /// Stream publishes not yet known to be complete, each with an event after the write,
    /// so a host wait can sleep on the event instead of polling the word.
    pending: Mutex<Vec<(u64, Arc<CudaEventHandle>)>>,
    changed: Condvar,
}

// SAFETY: the host word is only accessed through an atomic view, and the handles are
// driver objects usable from any thread with the context bound.
unsafe impl Send for CudaCounter {}
// SAFETY: as above.
unsafe impl Sync for CudaCounter {}

impl fmt::Debug for CudaCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaCounter")
            .field("name", &self.name)
            .field("value", &self.word().load(Ordering::Acquire))
            .finish()
    }
}

impl CudaCounter {
    fn word(&self) -> &DeviceSharedU64 {
        // SAFETY: `host` is a live, 8-byte aligned page-locked allocation owned by self
        // (page alignment exceeds u64's); all host access goes through this atomic view.
        unsafe { DeviceSharedU64::from_ptr(self.host) }
    }
}

impl Drop for CudaCounter {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated by cuMemHostAlloc in create_counter and freed once.
            let _ = unsafe { sys::cuMemFreeHost(self.host.cast()) };
        }
    }
}

/// Device memory owned by the backend; freed when the last clone drops.
#[derive(Clone)]
pub struct CudaDeviceMem(Arc<DeviceAlloc>);

struct DeviceAlloc {
    ptr: sys::CUdeviceptr,
    len: usize,
    ctx: Arc<CudaContext>,
}

impl Drop for DeviceAlloc {
    fn drop(&mut self) {
        if self.len > 0 && self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated by cuMemAlloc and freed once, after its last user dropped.
            let _ = unsafe { sys::cuMemFree_v2(self.ptr) };
        }
    }
}

impl fmt::Debug for CudaDeviceMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaDeviceMem").field("len", &self.0.len).finish()
    }
}

impl CudaDeviceMem {
    /// The device address (for kernel arguments). Valid while any clone lives.
    pub fn device_ptr(&self) -> sys::CUdeviceptr {
        self.0.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }
}

/// Page-locked host memory (portable, not write-combined, so the CPU reads it at full
/// speed); freed when the last clone drops.
#[derive(Clone)]
pub struct CudaPinnedMem(Arc<PinnedAlloc>);

struct PinnedAlloc {
    ptr: *mut u8,
    len: usize,
    /// Serializes CPU access through `read_pinned`/`write_pinned` so that shared and
    /// mutable slices never coexist; device access is ordered by pools and edges.
    cpu: Mutex<()>,
    ctx: Arc<CudaContext>,
}

// SAFETY: the pointer is owned by this allocation; CPU access is serialized by `cpu`.
unsafe impl Send for PinnedAlloc {}
// SAFETY: as above.
unsafe impl Sync for PinnedAlloc {}

impl Drop for PinnedAlloc {
    fn drop(&mut self) {
        if self.len > 0 && self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated by cuMemHostAlloc and freed once.
            let _ = unsafe { sys::cuMemFreeHost(self.ptr.cast()) };
        }
    }
}

impl fmt::Debug for CudaPinnedMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaPinnedMem").field("len", &self.0.len).finish()
    }
}

impl CudaPinnedMem {
    /// The host address (for copies issued elsewhere). Valid while any clone lives.
    pub fn as_ptr(&self) -> *mut u8 {
        self.0.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }
}

struct HostCall {
    task: HostTask,
    error: Arc<Mutex<Option<Error>>>,
    stream: &'static str,
}

unsafe extern "C" fn run_host_call(arg: *mut c_void) {
    // SAFETY: `arg` is the Box<HostCall> leaked by enqueue_host; the driver calls this
    // exactly once per launch.
    let call = unsafe { Box::from_raw(arg.cast::<HostCall>()) };
    let HostCall { task, error, stream } = *call;
    // A panic must not unwind into the driver.
    let outcome =
        catch_unwind(AssertUnwindSafe(task)).unwrap_or(Err(Error::StreamTaskPanicked { stream }));
    if let Err(e) = outcome {
        lock(&error).get_or_insert(e);
    }
}

fn fits(op: &'static str, needed: usize, len: usize) -> Result<()> {
    if needed > len { Err(Error::BufferTooSmall { op, needed, len }) } else { Ok(()) }
}

/// `off..off + len` must lie inside a buffer of `total` bytes.
fn range_in(op: &'static str, off: usize, len: usize, total: usize) -> Result<()> {
    fits(op, off.saturating_add(len), total)
}

/// Ranged copies and queries beyond the [`Backend`] trait, for an engine that stages
/// many pieces per buffer. Every range is checked against its buffer.
impl CudaBackend {
    /// Copies `len` bytes from `src[src_off..]` (page-locked) to `dst[dst_off..]` on
    /// `stream`. Both buffers must stay alive until the stream passes the copy (pools
    /// and the caller's synchronization ensure it, as for `copy_to_device`).
    ///
    /// # Errors
    /// `BufferTooSmall` for a range outside either buffer; `CudaDriver`.
    pub fn copy_range_to_device(
        &self,
        stream: &CudaStreamHandle,
        dst: &CudaDeviceMem,
        dst_off: usize,
        src: &CudaPinnedMem,
        src_off: usize,
        len: usize,
    ) -> Result<()> {
        range_in("copy_range_to_device (source)", src_off, len, src.0.len)?;
        range_in("copy_range_to_device (destination)", dst_off, len, dst.0.len)?;
        if len == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: both ranges checked above; lifetimes as documented.
        check("cuMemcpyHtoDAsync", unsafe {
            sys::cuMemcpyHtoDAsync_v2(
                dst.0.ptr + dst_off as u64,
                src.0.ptr.add(src_off).cast_const().cast(),
                len,
                stream.cu_stream(),
            )
        })
    }

    /// Copies `len` bytes from `src[src_off..]` to page-locked `dst[dst_off..]` on
    /// `stream`; read `dst` only after the stream passed the copy.
    ///
    /// # Errors
    /// `BufferTooSmall` for a range outside either buffer; `CudaDriver`.
    pub fn copy_range_to_pinned(
        &self,
        stream: &CudaStreamHandle,
        dst: &CudaPinnedMem,
        dst_off: usize,
        src: &CudaDeviceMem,
        src_off: usize,
        len: usize,
    ) -> Result<()> {
        range_in("copy_range_to_pinned (source)", src_off, len, src.0.len)?;
        range_in("copy_range_to_pinned (destination)", dst_off, len, dst.0.len)?;
        if len == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: both ranges checked above; lifetimes as documented.
        check("cuMemcpyDtoHAsync", unsafe {
            sys::cuMemcpyDtoHAsync_v2(
                dst.0.ptr.add(dst_off).cast(),
                src.0.ptr + src_off as u64,
                len,
                stream.cu_stream(),
            )
        })
    }

    /// Uploads ordinary (pageable) host bytes to `dst[dst_off..]`, in `stream` order. The
    /// driver stages pageable memory before returning, so `bytes` may be reused at once.
    ///
    /// # Errors
    /// `BufferTooSmall` for a range outside `dst`; `CudaDriver`.
    pub fn upload(
        &self,
        stream: &CudaStreamHandle,
        dst: &CudaDeviceMem,
        dst_off: usize,
        bytes: &[u8],
    ) -> Result<()> {
        range_in("upload", dst_off, bytes.len(), dst.0.len)?;
        if bytes.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: range checked; a pageable source is consumed before the call returns.
        check("cuMemcpyHtoDAsync", unsafe {
            sys::cuMemcpyHtoDAsync_v2(
                dst.0.ptr + dst_off as u64,
                bytes.as_ptr().cast(),
                bytes.len(),
                stream.cu_stream(),
            )
        })
    }

    /// Copies `dst.len()` bytes from `src[src_off..]` to `dst`, synchronously. Order it
    /// after the writes it must see (an event synchronized first).
    ///
    /// # Errors
    /// `BufferTooSmall` for a range outside `src`; `CudaDriver`.
    pub fn download(&self, dst: &mut [u8], src: &CudaDeviceMem, src_off: usize) -> Result<()> {
        range_in("download", src_off, dst.len(), src.0.len)?;
        if dst.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: range checked; `dst` is a live exclusive slice of the copied length.
        check("cuMemcpyDtoH", unsafe {
            sys::cuMemcpyDtoH_v2(dst.as_mut_ptr().cast(), src.0.ptr + src_off as u64, dst.len())
        })
    }

    /// Makes `stream` wait for an event created outside this crate.
    ///
    /// # Safety
    /// `event` must be a live `CUevent` of this backend's context.
    ///
    /// # Errors
    /// `CudaDriver` when the driver call fails.
    pub unsafe fn wait_raw_event(&self, stream: &CudaStreamHandle, event: u64) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller vouches for the event; the stream is live.
        check("cuStreamWaitEvent", unsafe {
            sys::cuStreamWaitEvent(stream.cu_stream(), event as sys::CUevent, 0)
        })
    }

    /// Makes a stream made outside this crate wait for an event made outside it, both raw
    /// handles (a DLPack consumer's stream and a batch's ready event); 1 and 2 are the
    /// driver's `CU_STREAM_LEGACY` and `CU_STREAM_PER_THREAD`.
    ///
    /// # Safety
    /// `stream` must be 1, 2 or a live `CUstream`, and `event` a live `CUevent`, of this
    /// backend's context.
    ///
    /// # Errors
    /// `CudaDriver` when the driver call fails.
    pub unsafe fn foreign_wait(&self, stream: u64, event: u64) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller vouches for both handles.
        check("cuStreamWaitEvent", unsafe {
            sys::cuStreamWaitEvent(stream as sys::CUstream, event as sys::CUevent, 0)
        })
    }

    /// Free and total device memory, in bytes (`cuMemGetInfo`).
    ///
    /// # Errors
    /// `CudaDriver` when the driver call fails.
    pub fn memory_info(&self) -> Result<(u64, u64)> {
        self.bind()?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: valid out-pointers, context bound.
        check("cuMemGetInfo", unsafe { sys::cuMemGetInfo_v2(&mut free, &mut total) })?;
        Ok((free as u64, total as u64))
    }
}

impl Backend for CudaBackend {
    type Stream = CudaStreamHandle;
    type Event = CudaEventHandle;
    type Counter = CudaCounter;
    type DeviceMem = CudaDeviceMem;
    type PinnedMem = CudaPinnedMem;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device_counters(&self) -> bool {
        self.device_counters
    }

    fn create_stream(&self, name: &'static str) -> Result<CudaStreamHandle> {
        let stream = guarded("cuStreamCreate", || self.ctx.new_stream())?;
        Ok(CudaStreamHandle { name, stream, task_error: Arc::new(Mutex::new(None)) })
    }

    fn synchronize(&self, stream: &CudaStreamHandle) -> Result<()> {
        guarded("cuStreamSynchronize", || stream.stream.synchronize())?;
        match lock(&stream.task_error).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn enqueue_host(&self, stream: &CudaStreamHandle, task: HostTask) -> Result<()> {
        self.bind()?;
        let call =
            Box::new(HostCall { task, error: Arc::clone(&stream.task_error), stream: stream.name });
        let arg = Box::into_raw(call).cast::<c_void>();
        // SAFETY: the trampoline takes ownership of `arg` when it runs; on failure the
        // driver never calls it and ownership comes back here.
        let r = unsafe { sys::cuLaunchHostFunc(stream.cu_stream(), Some(run_host_call), arg) };
        if let Err(e) = check("cuLaunchHostFunc", r) {
            // SAFETY: not launched, so still ours to free.
            drop(unsafe { Box::from_raw(arg.cast::<HostCall>()) });
            return Err(e);
        }
        Ok(())
    }

    fn create_event(&self) -> Result<CudaEventHandle> {
        self.bind()?;
        let flags = sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32
            | sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC as u32;
        let mut event: sys::CUevent = std::ptr::null_mut();
        // SAFETY: `event` is a valid out-pointer.
        check("cuEventCreate", unsafe { sys::cuEventCreate(&mut event, flags) })?;
        Ok(CudaEventHandle { event, ctx: Arc::clone(&self.ctx) })
    }

    fn record_event(&self, event: &CudaEventHandle, stream: &CudaStreamHandle) -> Result<()> {
        event.record(stream)
    }

    fn stream_wait_event(
        &self,
        stream: &CudaStreamHandle,
        event: &CudaEventHandle,
        meter: &Arc<StallMeter>,
    ) -> Result<()> {
        meter.count();
        event.wait_in(stream)
    }

    fn host_wait_event(&self, event: &CudaEventHandle) -> Result<()> {
        event.synchronize()
    }

    fn create_counter(&self, name: &'static str) -> Result<CudaCounter> {
        self.bind()?;
        let mut host: *mut c_void = std::ptr::null_mut();
        let flags = sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE;
        // SAFETY: `host` is a valid out-pointer; 8 bytes for one u64.
        check("cuMemHostAlloc", unsafe { sys::cuMemHostAlloc(&mut host, 8, flags) })?;
        let host = host.cast::<u64>();
        // SAFETY: freshly allocated, aligned, 8 bytes; no one else sees it yet.
        unsafe { host.write(0) };
        let mut device: sys::CUdeviceptr = 0;
        // SAFETY: `host` was allocated with DEVICEMAP; `device` is a valid out-pointer.
        let r = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut device, host.cast(), 0) };
        let counter = CudaCounter {
            name,
            host,
            device,
            ctx: Arc::clone(&self.ctx),
            pending: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        };
        check("cuMemHostGetDevicePointer", r)?;
        Ok(counter)
    }

    fn counter_value(&self, counter: &CudaCounter) -> u64 {
        counter.word().load(Ordering::Acquire)
    }

    fn publish_host(&self, counter: &CudaCounter, value: u64) -> Result<()> {
        let previous = counter.word().fetch_max(value, Ordering::AcqRel);
        if value < previous {
            return Err(Error::CounterBackwards {
                counter: counter.name,
                current: previous,
                published: value,
            });
        }
        drop(lock(&counter.pending));
        counter.changed.notify_all();
        Ok(())
    }

    fn publish_on_stream(
        &self,
        counter: &CudaCounter,
        value: u64,
        stream: &CudaStreamHandle,
    ) -> Result<()> {
        self.bind()?;
        let flags = sys::CUstreamWriteValue_flags::CU_STREAM_WRITE_VALUE_DEFAULT as u32;
        if self.device_counters {
            // SAFETY: the device address maps a live counter word.
            check("cuStreamWriteValue64", unsafe {
                sys::cuStreamWriteValue64_v2(stream.cu_stream(), counter.device, value, flags)
            })?;
        } else {
            // Without stream memory operations the stream publishes through a host task.
            let word = counter.host as usize;
            self.enqueue_host(
                stream,
                Box::new(move || {
                    // SAFETY: the counter outlives the streams that publish to it (teardown
                    // synchronizes streams before dropping edges).
                    unsafe { DeviceSharedU64::from_ptr(word as *mut u64) }
                        .fetch_max(value, Ordering::AcqRel);
                    Ok(())
                }),
            )?;
        }
        let event = Arc::new(self.create_event()?);
        self.record_event(&event, stream)?;
        lock(&counter.pending).push((value, event));
        counter.changed.notify_all();
        Ok(())
    }

    fn stream_wait_counter(
        &self,
        stream: &CudaStreamHandle,
        counter: &CudaCounter,
        value: u64,
        meter: &Arc<StallMeter>,
    ) -> Result<()> {
        if !self.device_counters {
            // A host rule: the enqueuing thread waits, then the stream needs no wait.
            let start = std::time::Instant::now();
            self.host_wait_counter(counter, value)?;
            meter.add(start.elapsed());
            return Ok(());
        }
        self.bind()?;
        meter.count();
        let flags = sys::CUstreamWaitValue_flags::CU_STREAM_WAIT_VALUE_GEQ as u32;
        // SAFETY: the device address maps a live counter word.
        check("cuStreamWaitValue64", unsafe {
            sys::cuStreamWaitValue64_v2(stream.cu_stream(), counter.device, value, flags)
        })
    }

    fn host_wait_counter(&self, counter: &CudaCounter, value: u64) -> Result<()> {
        loop {
            let mut pending = lock(&counter.pending);
            let current = counter.word().load(Ordering::Acquire);
            if current >= value {
                pending.retain(|(v, _)| *v > current);
                return Ok(());
            }
            match pending.iter().find(|(v, _)| *v >= value).map(|(_, e)| Arc::clone(e)) {
                Some(event) => {
                    drop(pending);
                    event.synchronize()?;
                    // The write completed before the event; the word now shows it.
                    return Ok(());
                }
                None => {
                    // Nobody has submitted the publish yet: sleep until a publish arrives.
                    drop(
                        counter
                            .changed
                            .wait(pending)
                            .unwrap_or_else(std::sync::PoisonError::into_inner),
                    );
                }
            }
        }
    }

    fn alloc_device(&self, bytes: usize) -> Result<CudaDeviceMem> {
        self.bind()?;
        let mut ptr: sys::CUdeviceptr = 0;
        if bytes > 0 {
            // SAFETY: `ptr` is a valid out-pointer.
            check("cuMemAlloc", unsafe { sys::cuMemAlloc_v2(&mut ptr, bytes) })?;
        }
        Ok(CudaDeviceMem(Arc::new(DeviceAlloc { ptr, len: bytes, ctx: Arc::clone(&self.ctx) })))
    }

    fn alloc_pinned(&self, bytes: usize) -> Result<CudaPinnedMem> {
        self.bind()?;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        if bytes > 0 {
            // Portable, and deliberately not WRITECOMBINED: the CPU reads these buffers.
            // SAFETY: `ptr` is a valid out-pointer.
            check("cuMemHostAlloc", unsafe {
                sys::cuMemHostAlloc(&mut ptr, bytes, sys::CU_MEMHOSTALLOC_PORTABLE)
            })?;
            // SAFETY: a fresh allocation of `bytes` bytes.
            unsafe { std::ptr::write_bytes(ptr.cast::<u8>(), 0, bytes) };
        }
        Ok(CudaPinnedMem(Arc::new(PinnedAlloc {
            ptr: ptr.cast(),
            len: bytes,
            cpu: Mutex::new(()),
            ctx: Arc::clone(&self.ctx),
        })))
    }

    fn device_len(&self, mem: &CudaDeviceMem) -> usize {
        mem.0.len
    }

    fn pinned_len(&self, mem: &CudaPinnedMem) -> usize {
        mem.0.len
    }

    fn fill_u32(&self, stream: &CudaStreamHandle, dst: &CudaDeviceMem, value: u32) -> Result<()> {
        self.bind()?;
        let words = dst.0.len / 4;
        if words == 0 {
            return Ok(());
        }
        // SAFETY: `words * 4` bytes lie inside the allocation.
        check("cuMemsetD32Async", unsafe {
            sys::cuMemsetD32Async(dst.0.ptr, value, words, stream.cu_stream())
        })
    }

    fn copy_to_pinned(
        &self,
        stream: &CudaStreamHandle,
        dst: &CudaPinnedMem,
        src: &CudaDeviceMem,
    ) -> Result<()> {
        fits("copy_to_pinned", src.0.len, dst.0.len)?;
        if src.0.len == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: lengths checked above; both allocations outlive the copy (the caller
        // keeps them until the stream is synchronized, as pools do).
        check("cuMemcpyDtoHAsync", unsafe {
            sys::cuMemcpyDtoHAsync_v2(dst.0.ptr.cast(), src.0.ptr, src.0.len, stream.cu_stream())
        })
    }

    fn copy_to_device(
        &self,
        stream: &CudaStreamHandle,
        dst: &CudaDeviceMem,
        src: &CudaPinnedMem,
    ) -> Result<()> {
        fits("copy_to_device", src.0.len, dst.0.len)?;
        if src.0.len == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: as for copy_to_pinned.
        check("cuMemcpyHtoDAsync", unsafe {
            sys::cuMemcpyHtoDAsync_v2(
                dst.0.ptr,
                src.0.ptr.cast_const().cast(),
                src.0.len,
                stream.cu_stream(),
            )
        })
    }

    fn read_pinned<R>(&self, mem: &CudaPinnedMem, f: impl FnOnce(&[u8]) -> R) -> R {
        let _cpu = lock(&mem.0.cpu);
        if mem.0.len == 0 {
            return f(&[]);
        }
        // SAFETY: a live allocation of `len` bytes; CPU access is serialized by `cpu`.
        f(unsafe { std::slice::from_raw_parts(mem.0.ptr, mem.0.len) })
    }

    fn write_pinned<R>(&self, mem: &CudaPinnedMem, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let _cpu = lock(&mem.0.cpu);
        if mem.0.len == 0 {
            return f(&mut []);
        }
        // SAFETY: a live allocation of `len` bytes; CPU access is serialized by `cpu`, so
        // this is the only slice over it.
        f(unsafe { std::slice::from_raw_parts_mut(mem.0.ptr, mem.0.len) })
    }
}
