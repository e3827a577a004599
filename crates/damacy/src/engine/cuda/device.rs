//! What the CUDA engine asks of a device: streams and events (through a `gpu-schedule`
//! backend, which also orders its pools), memory, copies, the kernels and the batched
//! zstd decoder. The engine's orchestration (planning → waves → submit → harvest →
//! delivery, error accounting, buffer recycling) is written once, generic over
//! [`Device`]; two devices implement it:
//! - `cuda::CudaDevice` (the `cuda` feature): a GPU, its NVRTC kernels and nvCOMP;
//! - [`sim::SimDevice`]: the host backend's threads as streams, host memory as device
//!   memory, and the kernels' and nvCOMP's host twins (`kernels::host`) as payloads. It
//!   runs everywhere, so CI exercises the engine's failure paths without a GPU
//!   (`Backend::Simulated`).

#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub(crate) mod sim;

use std::fmt::Debug;
use std::sync::Arc;

use kernels::{DeviceRange, ZstdBatch, ZstdFrames};
use zarr::OutDtype;

use super::stage::{GdsRead, StageMem};
use crate::config::Gds;
use crate::error::Result;

/// A `gpu-schedule` result.
pub(crate) type GsResult<T> = gpu_schedule::Result<T>;

/// One device as the CUDA engine uses it. Every method taking a stream only enqueues, in
/// that stream's order, as CUDA does; `sync_event` and `download` block.
pub(crate) trait Device: Send + Sync + Debug + Sized + 'static {
    /// The `gpu-schedule` backend whose streams and edges order the engine's pools.
    type Sched: gpu_schedule::Backend<Stream = Self::Stream>;
    /// An in-order queue of device work.
    type Stream: Send + Sync + Debug;
    /// A marker recorded into a stream.
    type Event: Send + Sync + Debug;
    /// Device memory; its address is what the kernels' descriptors hold.
    type DevMem: Clone + Send + Sync + Debug;
    /// Page-locked host memory the decode workers write and the device copies from.
    type PinMem: StageMem + Clone + 'static;

    /// The backend the scheduler and pools are built on.
    fn sched(&self) -> &Arc<Self::Sched>;

    /// Makes the device current on the calling thread.
    fn bind(&self) -> GsResult<()>;

    /// Allocates device memory (contents unspecified).
    fn alloc_device(&self, bytes: usize) -> GsResult<Self::DevMem>;

    /// Allocates zeroed pinned host memory.
    fn alloc_pinned(&self, bytes: usize) -> GsResult<Self::PinMem>;

    /// A device buffer's address and length.
    fn dev_range(mem: &Self::DevMem) -> DeviceRange;

    /// A new event, nothing recorded.
    fn new_event(&self) -> GsResult<Self::Event>;

    /// Records `ev` at the current end of `stream`.
    fn record(&self, ev: &Self::Event, stream: &Self::Stream) -> GsResult<()>;

    /// Makes `stream` wait for the last record of `ev`.
    fn wait_in(&self, ev: &Self::Event, stream: &Self::Stream) -> GsResult<()>;

    /// Blocks until the last record of `ev` has completed.
    fn sync_event(&self, ev: &Self::Event) -> GsResult<()>;

    /// The event's raw handle, as a caller of the device API sees it.
    fn event_raw(ev: &Self::Event) -> u64;

    /// The stream's raw handle, as a caller of the device API sees it.
    fn stream_raw(stream: &Self::Stream) -> u64;

    /// Makes `stream` wait for a raw event of the caller's.
    ///
    /// # Safety
    /// `event` must be a live event of this device's context.
    unsafe fn wait_raw_event(&self, stream: &Self::Stream, event: u64) -> GsResult<()>;

    /// Copies `len` bytes from `src` at `src_off` to `dst` at `dst_off`, in stream order.
    fn copy_range_to_device(
        &self,
        stream: &Self::Stream,
        dst: &Self::DevMem,
        dst_off: usize,
        src: &Self::PinMem,
        src_off: usize,
        len: usize,
    ) -> GsResult<()>;

    /// Copies `len` bytes from device `src` at `src_off` to pinned `dst` at `dst_off`.
    fn copy_range_to_pinned(
        &self,
        stream: &Self::Stream,
        dst: &Self::PinMem,
        dst_off: usize,
        src: &Self::DevMem,
        src_off: usize,
        len: usize,
    ) -> GsResult<()>;

    /// Uploads pageable `bytes` to `dst` at `dst_off` (copied before this returns).
    fn upload(
        &self,
        stream: &Self::Stream,
        dst: &Self::DevMem,
        dst_off: usize,
        bytes: &[u8],
    ) -> GsResult<()>;

    /// Copies device bytes to the host, synchronously (after whatever the caller waited
    /// for).
    fn download(&self, dst: &mut [u8], src: &Self::DevMem, src_off: usize) -> GsResult<()>;

    /// `Kernels::assemble`.
    ///
    /// # Safety
    /// As `kernels::Kernels::assemble`.
    unsafe fn assemble(
        &self,
        stream: &Self::Stream,
        out: OutDtype,
        dst: DeviceRange,
        descs: DeviceRange,
        count: u32,
    ) -> kernels::Result<()>;

    /// `Kernels::fill`.
    ///
    /// # Safety
    /// As `kernels::Kernels::fill`.
    unsafe fn fill(
        &self,
        stream: &Self::Stream,
        elem_size: u32,
        dst: DeviceRange,
        boxes: DeviceRange,
        count: u32,
    ) -> kernels::Result<()>;

    /// `Kernels::memcpy_batch`.
    ///
    /// # Safety
    /// As `kernels::Kernels::memcpy_batch`.
    unsafe fn memcpy_batch(
        &self,
        stream: &Self::Stream,
        ranges: DeviceRange,
        count: u32,
    ) -> kernels::Result<()>;

    /// `Kernels::status_reduce`.
    fn status_reduce(
        &self,
        stream: &Self::Stream,
        statuses: DeviceRange,
        actual: DeviceRange,
        expected: DeviceRange,
        count: u32,
        report: DeviceRange,
    ) -> kernels::Result<()>;

    /// GPUDirect Storage readers into each of `staging` (the wave slots' device staging),
    /// as `mode` asks: `None` for `off`, and for `auto` where cuFile has no native support.
    ///
    /// # Errors
    /// `GdsUnavailable` for `on` when cuFile cannot be used; `Gpu` when a buffer cannot be
    /// registered.
    fn open_gds(
        &self,
        mode: Gds,
        staging: &[Self::DevMem],
    ) -> Result<Option<Vec<Arc<dyn GdsRead>>>>;

    /// `Kernels::check_zstd_frames`: one verdict per frame, from its headers only.
    ///
    /// # Safety
    /// As `kernels::Kernels::check_zstd_frames`.
    unsafe fn check_frames(
        &self,
        stream: &Self::Stream,
        frames: &ZstdFrames,
        verdicts: DeviceRange,
    ) -> kernels::Result<()>;

    /// Chunks one decode call takes, `None` without a batched zstd decoder.
    fn decoder_capacity(&self) -> Option<usize>;

    /// Enqueues a batched zstd decode with decoder `decoder` (one per wave slot, each with
    /// its own temp memory); per-chunk failures land in the batch's statuses.
    ///
    /// # Safety
    /// As `kernels::nvcomp::ZstdDecoder::decode`; and one decoder's calls must be ordered
    /// (always enqueued on the same stream), since they share its temp memory.
    unsafe fn decode(
        &self,
        decoder: usize,
        stream: &Self::Stream,
        batch: &ZstdBatch,
    ) -> kernels::Result<()>;
}
