//! The CUDA engine: the same coordinator, prefetcher and planner as the host engine, with
//! each batch executed on the GPU, wave by wave (DESIGN.md §2 "damacy").
//!
//! Three threads drive it, so that planning, reading and staging, and the device work of
//! different waves and batches overlap: the coordinator plans batch N+1 while the submit
//! thread keeps the decode workers busy with the reads of the next waves (up to
//! [`AHEAD`]) and enqueues the device work of the oldest, and the harvest thread waits
//! for each wave's device work, reads its decode report and frees its slot, and hands
//! each batch out in order once its last wave finished.
//!
//! Per wave (the planner's unit of at most `max_chunks_per_wave` chunks; the engine picks
//! the largest count in [`WAVE_CHUNKS`] its budgets allow, as nvCOMP runs faster the more
//! chunks one call decodes), in one of [`WAVES`] wave slots:
//! 1. the decode workers read each read op of the wave; zstd frames (plain zstd chunks,
//!    and the zstd streams of blosc-zstd chunks, split with `zarr::blosc::streams`) are
//!    checked on the host with [`kernels::check_zstd_frame`] (nvCOMP does not validate
//!    its input) and copied into pinned staging at aligned offsets; every other chunk
//!    (other codecs, a frame that fails the check, no nvCOMP) is decoded on the worker
//!    with `zarr::decode_chunk` straight into pinned memory at its arena offset;
//! 2. the `h2d` stream uploads the staging prefix, the CPU-decoded chunks and the nvCOMP
//!    metadata (written into the slot's pinned memory: every upload is asynchronous);
//! 3. the `compute` stream decodes every frame with nvCOMP's batched zstd into the
//!    decompressed arena, copies raw blosc blocks with `memcpy_batch`, reduces the
//!    statuses, and assembles every placement of the wave into the device batch buffer;
//! 4. fill chunks are written by the `fill` kernel after the last wave.
//!
//! Wave slots cycle through a `gpu-schedule` pool (`wave_slots`, acquired by the host
//! role "stager", released by "harvester"): a slot is refilled only after the harvest
//! thread saw its previous wave finish on the device (its staging is pinned memory the
//! workers write) and read that wave's decode report. A batch is handed out after its
//! last wave finished, with a ready event recorded on `compute`. Device batch buffers cycle through a `gpu-schedule` [`Pool`]:
//! acquired on `compute`, released on `consumer` (after the caller's event, for
//! [`DeviceBatch::release_event`]), so a slot is rewritten only after its release.
//!
//! Memory is allocated once, here, and checked against `max_gpu_memory_bytes` and
//! `max_pinned_host_bytes` before anything is allocated.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use gpu_schedule::{
    Backend as _, CudaBackend, CudaDeviceMem, CudaEventHandle, CudaPinnedMem, CudaStreamHandle,
    EdgeTable, Endpoint, Lease, Pool, PoolSpec, Scheduler, SchedulerConfig, Stream,
};
use kernels::nvcomp::{NvcompLib, ZstdBatch, ZstdDecoder, nvcomp_disabled};
use kernels::{
    CopyRange, DecodeReport, DeviceRange, FillSpec, Kernels, OutKind, Placement, Shuffle,
    ShuffleSpec, SrcDtype,
};
use planner::{ArrayEntry, BatchPlan, ChunkSource, PlanLimits};
use zarr::{ChunkRepr, DataType};

use crate::config::{Config, OutDtype};
use crate::error::{Error, Result, SampleError};
use crate::stats::StatCounters;

/// Wave slots: the device works on one while the workers fill the others.
const WAVES: usize = 3;
/// Waves whose reads are with the workers while the submit thread waits for the oldest
/// (fewer than `WAVES`, so that one slot is always the device's).
const AHEAD: usize = 2;
/// Extra staging bytes per chunk, room for aligning each blosc stream.
const STAGING_PAD: u64 = 1024;
/// Alignment of every chunk region in the arena and the staging buffer.
const REGION_ALIGN: u64 = 256;
/// Smallest per-wave staging or arena size the engine accepts.
pub const MIN_WAVE_BYTES: u64 = 8 << 20;
/// Largest decoded zstd stream sent to nvCOMP (larger ones are decoded on the CPU);
/// nvCOMP's temp buffer is sized for this. (nvCOMP 6's temp is about 3 bytes per byte of
/// `chunks × max_chunk_bytes`, measured on the H200: 6.6 GB for 2048 × 1 MiB.)
const MAX_GPU_STREAM: u64 = 256 << 10;
/// Placements or fill boxes per descriptor upload.
const DESC_CAP: usize = 16 << 10;
/// Bytes of one descriptor buffer (a wave slot's, or a fill buffer).
const DESC_BYTES: u64 = (DESC_CAP as u64) * 256;
/// Device bytes per stream of nvCOMP metadata: 6 u64 arrays and an i32 array.
const META_PER_STREAM: u64 = 6 * 8 + 4;

fn gpu_err(what: &'static str, detail: impl std::fmt::Debug) -> Error {
    Error::Gpu { what, detail: format!("{detail:?}") }
}

/// A new event of the engine's device (blocking sync, no timing).
fn new_event(backend: &CudaBackend) -> Result<CudaEventHandle> {
    backend.create_event().map_err(|e| gpu_err("cuEventCreate", e))
}

/// Maps a `gpu-schedule` error onto the facade's, naming the call.
fn gs<T>(what: &'static str, r: gpu_schedule::Result<T>) -> Result<T> {
    r.map_err(|e| gpu_err(what, e))
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a.max(1)) * a.max(1)
}

/// How the chunks of an array can be decoded on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `bytes` (native order) then `zstd`.
    Zstd,
    /// `bytes` (native order) then `blosc` with the zstd compressor.
    BloscZstd,
    /// Anything else: CPU decode, upload of the decoded bytes.
    Cpu,
}

/// The GPU route of a chunk codec chain.
pub(crate) fn route(chain: &zarr::CodecChain) -> Route {
    use zarr::codec::{ArrayToBytes, BloscCname, BytesToBytes, Endian};
    if !chain.array_to_array.is_empty() {
        return Route::Cpu;
    }
    match chain.array_to_bytes {
        ArrayToBytes::Bytes { endian: None } => {}
        ArrayToBytes::Bytes { endian: Some(e) } if e == Endian::NATIVE => {}
        _ => return Route::Cpu,
    }
    match chain.bytes_to_bytes.as_slice() {
        [BytesToBytes::Zstd { .. }] => Route::Zstd,
        [BytesToBytes::Blosc { cname: BloscCname::Zstd, .. }] => Route::BloscZstd,
        _ => Route::Cpu,
    }
}

/// The kernels' code for a zarr data type.
pub(crate) fn src_dtype(d: DataType) -> SrcDtype {
    match d {
        DataType::Bool => SrcDtype::Bool,
        DataType::Int8 => SrcDtype::I8,
        DataType::Int16 => SrcDtype::I16,
        DataType::Int32 => SrcDtype::I32,
        DataType::Int64 => SrcDtype::I64,
        DataType::UInt8 => SrcDtype::U8,
        DataType::UInt16 => SrcDtype::U16,
        DataType::UInt32 => SrcDtype::U32,
        DataType::UInt64 => SrcDtype::U64,
        DataType::Float16 => SrcDtype::F16,
        DataType::BFloat16 => SrcDtype::Bf16,
        DataType::Float32 => SrcDtype::F32,
        DataType::Float64 => SrcDtype::F64,
    }
}

pub(crate) fn out_kind(d: OutDtype) -> OutKind {
    match d {
        OutDtype::F32 => OutKind::F32,
        OutDtype::Bf16 => OutKind::Bf16,
        OutDtype::F16 => OutKind::F16,
        OutDtype::Native => OutKind::Native,
    }
}

/// Bytes of one output element at most (Native may be 8 bytes wide).
pub(crate) fn max_out_size(d: OutDtype) -> u64 {
    match d {
        OutDtype::F32 => 4,
        OutDtype::Bf16 | OutDtype::F16 => 2,
        OutDtype::Native => 8,
    }
}

/// Per-wave sizes derived from the budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sizing {
    /// Bytes of one device batch buffer.
    pub batch_bytes: u64,
    /// Compressed bytes staged per wave (planner limit).
    pub staging: u64,
    /// Decompressed bytes per wave (planner limit).
    pub decompressed: u64,
    /// Chunks per wave (planner limit).
    pub chunks: u64,
    /// Streams per wave sent to nvCOMP (more go to the CPU).
    pub streams: u64,
    /// Device bytes committed, without nvCOMP's temp buffer.
    pub device_bytes: u64,
    /// Pinned bytes committed.
    pub pinned_bytes: u64,
}

impl Sizing {
    /// The planner limits for this sizing.
    pub(crate) fn limits(&self, cfg: &Config) -> PlanLimits {
        PlanLimits {
            max_read_op_bytes: cfg.max_read_op_bytes.min(self.staging),
            max_chunks_per_wave: self.chunks,
            max_staging_bytes_per_wave: self.staging,
            max_decompressed_bytes_per_wave: self.decompressed,
            max_chunk_decompressed_bytes: cfg.max_chunk_decompressed_bytes.min(self.decompressed),
            merge_gap_bytes: cfg.merge_gap_bytes,
        }
    }
}

/// Device bytes of one wave slot's nvCOMP metadata for `streams` streams: 6 u64 arrays
/// and an i32 array per stream, a raw copy range per stream, and the report.
fn meta_bytes(streams: u64) -> u64 {
    streams * META_PER_STREAM + streams * 24 + 64
}

/// Sizes the engine's buffers for waves of at most `chunks` chunks from the
/// configuration, before anything is allocated.
///
/// # Errors
/// `Budget` naming `max_gpu_memory_bytes` or `max_pinned_host_bytes` and the minimum
/// that would do (nvCOMP's temp buffer, `temp`, is counted against the GPU budget).
pub(crate) fn size(cfg: &Config, temp: u64, chunks: u64) -> Result<Sizing> {
    let streams = chunks * 4;
    let waves = WAVES as u64;
    let over = |knob| Error::ConfigOverflow { knob };
    let batch_bytes = cfg
        .batch_elements()?
        .checked_mul(max_out_size(cfg.dtype))
        .ok_or(over("sample_shape"))?
        .max(8);
    let batches =
        batch_bytes.checked_mul(cfg.batches_in_flight as u64).ok_or(over("batches_in_flight"))?;
    let pad_staging = chunks * (STAGING_PAD + REGION_ALIGN);
    let pad_arena = chunks * REGION_ALIGN;
    // Per slot: metadata and descriptors on both sides; two fill descriptor buffers.
    let per_slot_fixed = meta_bytes(streams) + DESC_BYTES;
    let fixed = temp + waves * (per_slot_fixed + pad_staging + pad_arena) + 2 * DESC_BYTES;
    // Each wave slot holds a device staging copy and an arena of the same sizes.
    let min_gpu = batches + fixed + waves * 2 * MIN_WAVE_BYTES;
    if cfg.max_gpu_memory_bytes < min_gpu {
        return Err(Error::Budget {
            knob: "max_gpu_memory_bytes",
            needed: min_gpu,
            limit: cfg.max_gpu_memory_bytes,
        });
    }
    let pinned_fixed = waves * (per_slot_fixed + 64 + pad_staging + pad_arena);
    let min_pinned = pinned_fixed + waves * 2 * MIN_WAVE_BYTES;
    if cfg.max_pinned_host_bytes < min_pinned {
        return Err(Error::Budget {
            knob: "max_pinned_host_bytes",
            needed: min_pinned,
            limit: cfg.max_pinned_host_bytes,
        });
    }
    let gpu_per = (cfg.max_gpu_memory_bytes - batches - fixed) / (2 * waves);
    let pin_per = (cfg.max_pinned_host_bytes - pinned_fixed) / (2 * waves);
    // More bytes than `chunks` chunks of nvCOMP's largest stream would not be used.
    let per = gpu_per.min(pin_per).min((chunks * MAX_GPU_STREAM).max(MIN_WAVE_BYTES));
    let per = per / REGION_ALIGN * REGION_ALIGN;
    let (staging, decompressed) = (per, per);
    let device_bytes = batches + fixed - temp + waves * (staging + decompressed);
    let pinned_bytes = pinned_fixed + waves * (staging + decompressed);
    Ok(Sizing { batch_bytes, staging, decompressed, chunks, streams, device_bytes, pinned_bytes })
}

/// One wave slot's buffers: host-written pinned memory, its device copies, and the events
/// that order their reuse. Cycled through the `wave_slots` pool.
pub(crate) struct WaveBufs {
    staging: CudaPinnedMem,
    decoded: CudaPinnedMem,
    d_staging: CudaDeviceMem,
    arena: CudaDeviceMem,
    meta: CudaDeviceMem,
    /// Host side of `meta` (nvCOMP pointer arrays, raw copy ranges), copied on `h2d`.
    meta_host: CudaPinnedMem,
    /// Assemble and fill descriptors, host and device side.
    descs: CudaDeviceMem,
    descs_host: CudaPinnedMem,
    report: CudaPinnedMem,
    h2d_done: CudaEventHandle,
    done: CudaEventHandle,
}

type WaveLease = Lease<CudaBackend, WaveBufs>;
type BatchLease = Lease<CudaBackend, CudaDeviceMem>;

/// What the host needs to turn a wave's decode report into errors.
struct Harvest {
    /// Per nvCOMP stream: the wave-local chunk it belongs to.
    stream_chunk: Vec<u32>,
    /// Per wave-local chunk: (file key, chunk coords, plan samples).
    chunks: Vec<(Arc<str>, Vec<u64>, Vec<usize>)>,
    /// Offsets of the statuses and sizes arrays in `meta`.
    statuses_off: u64,
    actual_off: u64,
    expected_off: u64,
}

/// A batch handed to the submit thread: the plan's context and the caller's payload.
pub(crate) enum Submit<M, P> {
    Run {
        id: u64,
        ctx: BatchCtx,
        meta: M,
    },
    /// Something to hand back in order, untouched (a batch that failed before planning).
    Pass(P),
}

/// What the harvest thread hands out, in submission order.
pub(crate) enum Harvested<M, P> {
    /// Complete on the device; `errors` name plan samples.
    Ran {
        meta: M,
        lease: BatchLease,
        errors: Vec<(usize, SampleError)>,
    },
    /// The device state of this batch is unknown (a driver failure), or teardown.
    Failed {
        error: Error,
    },
    Pass(P),
}

/// Messages from the submit thread to the harvest thread, in order.
enum ToHarvest<M, P> {
    Wave { slot: WaveLease, harvest: Option<Harvest>, errors: Vec<(usize, SampleError)> },
    End { meta: M, lease: BatchLease },
    Failed { meta: M, error: Error },
    Pass(P),
}

/// The CUDA engine of one pipeline.
pub(crate) struct Engine {
    backend: Arc<CudaBackend>,
    kernels: Arc<Kernels>,
    decoder: Option<ZstdDecoder>,
    in_align: u64,
    out_align: u64,
    sched: Scheduler<CudaBackend>,
    batches: Pool<CudaBackend, CudaDeviceMem>,
    waves: Pool<CudaBackend, WaveBufs>,
    /// Per batch buffer: held (acquired and not released); and the closed flag.
    held: Mutex<(Vec<bool>, bool)>,
    held_cv: Condvar,
    /// Per wave slot: free for the submit thread to take.
    wave_free: Mutex<Vec<bool>>,
    wave_cv: Condvar,
    ready: Vec<CudaEventHandle>,
    /// Descriptors of fills applied at `pop` (`OnError::Fill`), on `compute`.
    descs: CudaDeviceMem,
    /// Descriptors of the submit thread's fill chunks, on `compute`.
    end_descs: CudaDeviceMem,
    /// Per mille of GPU-decodable chunks the workers decode instead (`DAMACY_CPU_SHARE`,
    /// default 0). Measured on the H200 (`default`, 16 threads): 100, 200 and 300 per
    /// mille cut throughput from 12.1 to 9.4, 7.6 and 5.8 Gvox/s, since a wave goes to
    /// the device only once its slowest CPU decode is done (docs/PERFORMANCE.md).
    cpu_share: u32,
    pub(crate) sizing: Sizing,
    pub(crate) committed: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("nvcomp", &self.decoder.is_some())
            .field("sizing", &self.sizing)
            .finish_non_exhaustive()
    }
}

/// Chunks per wave the engine tries, largest first: nvCOMP's batched zstd runs faster the
/// more chunks one call decodes (measured on the H200: 11.8 GB/s at 512, 34.7 at 2048,
/// 53.6 at 8192), at a temp buffer growing with the count.
const WAVE_CHUNKS: [u64; 6] = [8192, 4096, 2048, 1024, 512, 256];

impl Engine {
    /// Opens device `device` and allocates everything.
    ///
    /// # Errors
    /// `BackendUnavailable` without a driver or device, or when the kernels do not
    /// compile; `Budget` when a budget is too small; `Gpu` when an allocation fails.
    pub(crate) fn new(cfg: &Config, device: usize) -> Result<Self> {
        if !gpu_schedule::driver_present() {
            return Err(Error::BackendUnavailable { reason: "no CUDA driver on this machine" });
        }
        let backend =
            Arc::new(CudaBackend::new(device).map_err(|_| Error::BackendUnavailable {
                reason: "the CUDA device could not be opened (no such device index?)",
            })?);
        let kernels = Kernels::for_backend(&backend).map_err(|_| Error::BackendUnavailable {
            reason: "the CUDA kernels could not be compiled (is libnvrtc installed?)",
        })?;
        let lib = if nvcomp_disabled() { None } else { NvcompLib::global().ok() };
        let align = match &lib {
            Some(l) => {
                backend.context().bind_to_thread().map_err(|e| gpu_err("cuCtxSetCurrent", e))?;
                l.alignments().map_err(|e| gpu_err("nvCOMP alignments", e))?
            }
            None => Default::default(),
        };
        // The largest wave whose buffers fit the budgets with bytes enough to fill it
        // (128 KiB per chunk on average); otherwise the smallest candidate's error, which
        // names the least budget that would do.
        let mut chosen = None;
        let mut smallest_err = None;
        for (i, &chunks) in WAVE_CHUNKS.iter().enumerate() {
            let temp = match &lib {
                Some(l) => l
                    .temp_size(chunks as usize, MAX_GPU_STREAM as usize)
                    .map_err(|e| gpu_err("nvCOMP temp size", e))? as u64,
                None => 0,
            };
            match size(cfg, temp, chunks) {
                Ok(s) if s.decompressed >= chunks * (128 << 10) || i + 1 == WAVE_CHUNKS.len() => {
                    chosen = Some((s, temp));
                    break;
                }
                Ok(_) => {}
                Err(e) => smallest_err = Some(e),
            }
        }
        let Some((sizing, temp)) = chosen else {
            return Err(smallest_err.unwrap_or(Error::Closed));
        };
        let chunks = sizing.chunks as usize;
        let decoder = match lib {
            Some(l) => Some(
                ZstdDecoder::new(l, &backend, chunks, MAX_GPU_STREAM as usize)
                    .map_err(|e| gpu_err("nvCOMP decoder", e))?,
            ),
            None => None,
        };
        let sched = Scheduler::new(
            Arc::clone(&backend),
            &SchedulerConfig {
                streams: vec!["h2d", "compute", "consumer"],
                movers: 1,
                orderable_on_device: true,
            },
        )
        .map_err(|e| gpu_err("scheduler", e))?;
        let n = cfg.batches_in_flight;
        let table = Arc::new(
            EdgeTable::new(Arc::clone(&backend), n.max(WAVES))
                .map_err(|e| gpu_err("edge table", e))?,
        );
        let mut bufs = Vec::with_capacity(n);
        for _ in 0..n {
            bufs.push(
                backend
                    .alloc_device(sizing.batch_bytes as usize)
                    .map_err(|e| gpu_err("device batch buffer", e))?,
            );
        }
        let batches = Pool::new(
            &table,
            PoolSpec {
                name: "device_batches",
                acquirer: Endpoint::Stream("compute"),
                releaser: Endpoint::Stream("consumer"),
            },
            bufs,
        )
        .map_err(|e| gpu_err("device batch pool", e))?;
        let ready = (0..n).map(|_| new_event(&backend)).collect::<Result<Vec<_>>>()?;
        let pad_staging = sizing.chunks * (STAGING_PAD + REGION_ALIGN);
        let pad_arena = sizing.chunks * REGION_ALIGN;
        let meta_bytes = meta_bytes(sizing.streams) as usize;
        let mut slots = Vec::with_capacity(WAVES);
        for _ in 0..WAVES {
            let st = (sizing.staging + pad_staging) as usize;
            let ar = (sizing.decompressed + pad_arena) as usize;
            let pinned = |len, what| backend.alloc_pinned(len).map_err(|e| gpu_err(what, e));
            let device = |len, what| backend.alloc_device(len).map_err(|e| gpu_err(what, e));
            slots.push(WaveBufs {
                staging: pinned(st, "pinned staging")?,
                decoded: pinned(ar, "pinned decoded")?,
                d_staging: device(st, "device staging")?,
                arena: device(ar, "device arena")?,
                meta: device(meta_bytes, "device metadata")?,
                meta_host: pinned(meta_bytes, "pinned metadata")?,
                descs: device(DESC_BYTES as usize, "device descriptors")?,
                descs_host: pinned(DESC_BYTES as usize, "pinned descriptors")?,
                report: pinned(64, "pinned report")?,
                h2d_done: new_event(&backend)?,
                done: new_event(&backend)?,
            });
        }
        // The submit thread fills a slot's pinned memory; the harvest thread gives it back
        // once the device finished with it and its report was read.
        let waves = Pool::new(
            &table,
            PoolSpec {
                name: "wave_slots",
                acquirer: Endpoint::Host("stager"),
                releaser: Endpoint::Host("harvester"),
            },
            slots,
        )
        .map_err(|e| gpu_err("wave slot pool", e))?;
        let descs = backend
            .alloc_device(DESC_BYTES as usize)
            .map_err(|e| gpu_err("descriptor buffer", e))?;
        let end_descs = backend
            .alloc_device(DESC_BYTES as usize)
            .map_err(|e| gpu_err("descriptor buffer", e))?;
        let committed = sizing.device_bytes + temp;
        let fixed_share = std::env::var("DAMACY_CPU_SHARE")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .map(|v| v.min(1000));
        Ok(Self {
            backend,
            kernels,
            decoder,
            in_align: (align.input as u64).max(1),
            out_align: (align.output as u64).max(1),
            sched,
            batches,
            waves,
            held: Mutex::new((vec![false; n], false)),
            held_cv: Condvar::new(),
            wave_free: Mutex::new(vec![true; WAVES]),
            wave_cv: Condvar::new(),
            ready,
            descs,
            end_descs,
            cpu_share: fixed_share.unwrap_or(0),
            sizing,
            committed,
        })
    }

    /// The CPU's current decode share, per mille.
    pub(crate) fn cpu_share(&self) -> u64 {
        u64::from(self.cpu_share)
    }

    /// Whether nvCOMP decodes on this engine.
    #[allow(dead_code)]
    pub(crate) fn has_nvcomp(&self) -> bool {
        self.decoder.is_some()
    }

    fn stream(&self, name: &'static str) -> Result<&Stream<CudaBackend>> {
        self.sched.stream(name).map_err(|e| gpu_err("stream", e))
    }

    fn cu(&self, name: &'static str) -> Result<&CudaStreamHandle> {
        Ok(self.stream(name)?.raw())
    }

    fn bind(&self) -> Result<()> {
        self.backend.context().bind_to_thread().map_err(|e| gpu_err("cuCtxSetCurrent", e))
    }

    fn closed(&self) -> bool {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Leases a released device batch buffer on `compute`, any free one starting at
    /// `id % n` (a caller holding an old batch must not stall the others). Waits for one
    /// when `block`; otherwise `None` when all are held.
    ///
    /// # Errors
    /// `Closed` on teardown; `Gpu` when the pool refuses.
    fn acquire(&self, id: u64, block: bool) -> Result<Option<BatchLease>> {
        let n = self.batches.slots();
        let slot = {
            let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if h.1 {
                    return Err(Error::Closed);
                }
                let first = (id % n as u64) as usize;
                if let Some(s) = (0..n).map(|k| (first + k) % n).find(|&s| !h.0[s]) {
                    h.0[s] = true;
                    break s;
                }
                if !block {
                    return Ok(None);
                }
                h = self.held_cv.wait(h).unwrap_or_else(|e| e.into_inner());
            }
        };
        self.batches
            .acquire(slot, self.stream("compute")?)
            .map(Some)
            .map_err(|e| gpu_err("pool acquire", e))
    }

    /// Takes a free wave slot; waits for one when `block`, otherwise `None` if none is.
    fn acquire_wave(&self, block: bool) -> Result<Option<WaveLease>> {
        let slot = {
            let mut f = self.wave_free.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if self.closed() {
                    return Err(Error::Closed);
                }
                if let Some(s) = f.iter().position(|&free| free) {
                    f[s] = false;
                    break s;
                }
                if !block {
                    return Ok(None);
                }
                f = self.wave_cv.wait(f).unwrap_or_else(|e| e.into_inner());
            }
        };
        // Free in `wave_free` means released in the pool: this does not block.
        self.waves.acquire_blocking(slot, "stager").map(Some).map_err(|e| gpu_err("wave slot", e))
    }

    fn release_wave(&self, lease: WaveLease) {
        let slot = lease.slot();
        // A refusal would mean a bookkeeping bug; the slot is freed either way so that
        // nothing waits forever (its next acquire reports the pool's error).
        let _ = self.waves.release_host(lease, "harvester");
        let mut f = self.wave_free.lock().unwrap_or_else(|e| e.into_inner());
        f[slot] = true;
        self.wave_cv.notify_all();
    }

    /// Returns a device batch buffer on `consumer`, after `after` (a raw event) if given.
    fn release(&self, lease: BatchLease, after: Option<u64>) -> Result<()> {
        let slot = lease.slot();
        self.bind()?;
        let consumer = self.stream("consumer")?;
        let mut outcome = Ok(());
        if let Some(ev) = after {
            // SAFETY: the caller vouches that `ev` is a live event of this context.
            outcome =
                gs("cuStreamWaitEvent", unsafe { self.backend.wait_raw_event(consumer.raw(), ev) });
        }
        // The consumer must also be ordered after the batch's own writes.
        if outcome.is_ok() {
            outcome = gs("cuStreamWaitEvent", self.ready[slot].wait_in(consumer.raw()));
        }
        let released =
            self.batches.release(lease, consumer).map_err(|e| gpu_err("pool release", e));
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        h.0[slot] = false;
        self.held_cv.notify_all();
        outcome.and(released)
    }

    /// Teardown: wakes waiting acquires.
    pub(crate) fn close(&self) {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        h.1 = true;
        self.held_cv.notify_all();
        drop(h);
        let _f = self.wave_free.lock().unwrap_or_else(|e| e.into_inner());
        self.wave_cv.notify_all();
    }

    /// Fills whole samples of a delivered batch with one value each (`OnError::Fill`),
    /// then re-records its ready event and waits for it. Nothing to do without fills: the
    /// submit thread recorded the event after the batch's last write.
    pub(crate) fn finish(
        &self,
        lease: &BatchLease,
        fills: &[(usize, Vec<u8>)],
        sample_shape: &[u64],
        out_elems: u64,
    ) -> Result<()> {
        if fills.is_empty() {
            return Ok(());
        }
        self.bind()?;
        let compute = self.cu("compute")?;
        let whole = vec![0u64; sample_shape.len()];
        for (pos, value) in fills {
            let spec = FillSpec {
                sample: *pos as u64,
                sample_shape,
                in_sample_lo: &whole,
                extent: sample_shape,
            };
            self.fill_boxes(lease.buffer(), &[spec], value, out_elems, &self.descs)?;
        }
        gs("cuEventRecord", self.ready[lease.slot()].record(compute))?;
        gs("cuEventSynchronize", self.ready[lease.slot()].synchronize())
    }

    /// Uploads one descriptor piece and calls `launch` with its device range, on
    /// `compute`: through the wave slot's pinned buffer while it has room (an asynchronous
    /// copy), else from pageable memory into the slot's device buffer (the driver copies
    /// it before returning; the launch reading it is ordered after, on the same stream).
    fn with_descs(
        &self,
        w: &WaveBufs,
        used: &mut u64,
        packed: &[u8],
        launch: impl FnOnce(DeviceRange) -> Result<()>,
    ) -> Result<()> {
        let compute = self.cu("compute")?;
        let len = packed.len() as u64;
        if *used + len <= w.descs_host.len() as u64 {
            let at = *used as usize;
            // SAFETY: the slot is leased by this thread; the device read its previous
            // contents before the slot was released (harvested after `done`).
            unsafe { std::slice::from_raw_parts_mut(w.descs_host.as_ptr().add(at), packed.len()) }
                .copy_from_slice(packed);
            gs(
                "descriptor upload",
                self.backend.copy_range_to_device(
                    compute,
                    &w.descs,
                    at,
                    &w.descs_host,
                    at,
                    packed.len(),
                ),
            )?;
            *used = align_up(*used + len, REGION_ALIGN);
            // SAFETY: inside the slot's descriptor allocation.
            return launch(unsafe { DeviceRange::from_raw(w.descs.device_ptr() + at as u64, len) });
        }
        let dst = &w.descs;
        gs("upload", self.backend.upload(compute, dst, 0, packed))?;
        // SAFETY: a live allocation of this engine, written just before on this stream.
        launch(unsafe { DeviceRange::from_raw(dst.device_ptr(), dst.len() as u64) })
    }

    /// Fills boxes of `dst` with `value` on `compute`, the descriptors uploaded from
    /// pageable memory into `descs` (the driver copies them before returning; the
    /// launch that reads them is ordered after the copy on the same stream).
    fn fill_boxes(
        &self,
        dst: &CudaDeviceMem,
        specs: &[FillSpec<'_>],
        value: &[u8],
        out_elems: u64,
        descs: &CudaDeviceMem,
    ) -> Result<()> {
        let compute = self.cu("compute")?;
        for piece in specs.chunks(DESC_CAP) {
            let packed = kernels::pack_fills(piece, value, out_elems)
                .map_err(|e| gpu_err("pack fills", e))?;
            gs("upload", self.backend.upload(compute, descs, 0, bytemuck::cast_slice(&packed)))?;
            // SAFETY: live allocations of this engine.
            let (d, b) = unsafe {
                (
                    DeviceRange::from_raw(dst.device_ptr(), dst.len() as u64),
                    DeviceRange::from_raw(descs.device_ptr(), descs.len() as u64),
                )
            };
            // SAFETY: boxes packed for this output size; the descriptor upload precedes
            // the launch on the same stream.
            unsafe { self.kernels.fill(compute, value.len() as u32, d, b, packed.len() as u32) }
                .map_err(|e| gpu_err("fill", e))?;
        }
        Ok(())
    }

    /// Copies a finished batch back to the host (synchronous).
    pub(crate) fn download(&self, lease: &BatchLease, bytes: usize) -> Result<Vec<u8>> {
        // The ready event orders the batch's writes before this synchronous copy.
        gs("cuEventSynchronize", self.ready[lease.slot()].synchronize())?;
        let mut out = vec![0u8; bytes];
        gs("download", self.backend.download(&mut out, lease.buffer(), 0))?;
        Ok(out)
    }

    /// Waits for a wave to finish on the device and turns its report into errors.
    fn harvest(
        &self,
        w: &WaveBufs,
        h: &Harvest,
        errors: &mut Vec<(usize, SampleError)>,
    ) -> Result<()> {
        gs("cuEventSynchronize", w.done.synchronize())?;
        let report = self.backend.read_pinned(&w.report, |b| {
            let mut r = [0u8; 8];
            r.copy_from_slice(&b[..8]);
            DecodeReport::from_bytes(r)
        });
        if report.failures == 0 || h.stream_chunk.is_empty() {
            return Ok(());
        }
        let n = h.stream_chunk.len();
        // Inside the metadata allocation (offsets from `submit_wave`); the wave finished.
        let get = |off: u64, len: usize| -> Result<Vec<u8>> {
            let mut v = vec![0u8; len];
            gs("download", self.backend.download(&mut v, &w.meta, off as usize))?;
            Ok(v)
        };
        let st = get(h.statuses_off, n * 4)?;
        let act = get(h.actual_off, n * 8)?;
        let exp = get(h.expected_off, n * 8)?;
        let mut failed_chunks = Vec::new();
        for i in 0..n {
            let s = i32::from_ne_bytes(st[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]));
            let a = u64::from_ne_bytes(act[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            let e = u64::from_ne_bytes(exp[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            if s != 0 || a != e {
                let c = h.stream_chunk[i] as usize;
                if !failed_chunks.contains(&c) {
                    failed_chunks.push(c);
                    if let Some((key, coords, samples)) = h.chunks.get(c) {
                        let err = SampleError::Decode {
                            path: PathBuf::from(&**key),
                            chunk: coords.clone(),
                            source: zarr::Error::Decompress {
                                codec: "zstd (nvCOMP)",
                                message: format!("status {s}, decoded {a} of {e} bytes"),
                            },
                        };
                        errors.extend(samples.iter().map(|&p| (p, err.clone())));
                    }
                }
            }
        }
        // nvCOMP may write past the output of a corrupt frame that passed the host
        // check, into other chunks of this wave (seen on the H200): every sample drawing
        // on this wave is suspect, not only the failed chunk's. It is reported, never
        // delivered as good data (`OnError::Fill` fills it).
        if let Some(&first) = failed_chunks.first()
            && let Some((key, coords, _)) = h.chunks.get(first)
        {
            let err = SampleError::Decode {
                path: PathBuf::from(&**key),
                chunk: coords.clone(),
                source: zarr::Error::Decompress {
                    codec: "zstd (nvCOMP)",
                    message: "a corrupt chunk in the same device wave may have overwritten \
                              this sample's data"
                        .into(),
                },
            };
            for (_, _, samples) in &h.chunks {
                errors.extend(samples.iter().map(|&p| (p, err.clone())));
            }
        }
        Ok(())
    }

    /// The harvest thread: waits for each submitted wave in order, reads its report,
    /// frees its slot, and hands out each batch once its last wave finished.
    pub(crate) fn harvest_loop<M, P>(
        &self,
        rx: &crossbeam_channel::Receiver<ToHarvestMsg<M, P>>,
        stats: &StatCounters,
        emit: &dyn Fn(Harvested<M, P>),
    ) {
        // A failure here fails every wait below, which report it.
        let _ = self.bind();
        let mut errors: Vec<(usize, SampleError)> = Vec::new();
        let mut failure: Option<Error> = None;
        while let Ok(ToHarvestMsg(msg)) = rx.recv() {
            match msg {
                ToHarvest::Wave { slot, harvest, errors: host_errors } => {
                    errors.extend(host_errors);
                    let t = Instant::now();
                    let w = slot.buffer();
                    let outcome = match &harvest {
                        Some(h) => self.harvest(w, h, &mut errors),
                        // Nothing was submitted after the failure: the slot's last device
                        // use is still covered by its `done` event.
                        None => gs("cuEventSynchronize", w.done.synchronize()),
                    };
                    stats.gpu_wait_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    if let Err(e) = outcome {
                        failure.get_or_insert(e);
                    }
                    self.release_wave(slot);
                }
                ToHarvest::End { meta, lease } => {
                    let t = Instant::now();
                    let ready = gs("cuEventSynchronize", self.ready[lease.slot()].synchronize());
                    stats.gpu_wait_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    let errs = std::mem::take(&mut errors);
                    match failure.take().or(ready.err()) {
                        None => emit(Harvested::Ran { meta, lease, errors: errs }),
                        Some(error) => {
                            // The device state of this batch is unknown: keep its buffer
                            // out of circulation until teardown.
                            std::mem::forget(lease);
                            drop(meta);
                            emit(Harvested::Failed { error });
                        }
                    }
                }
                ToHarvest::Failed { meta, error } => {
                    errors.clear();
                    failure = None;
                    drop(meta);
                    emit(Harvested::Failed { error });
                }
                ToHarvest::Pass(p) => emit(Harvested::Pass(p)),
            }
        }
    }

    /// The submit thread: takes planned batches in order, keeps up to `AHEAD` waves'
    /// reads with the decode workers while it submits the oldest wave's device work, and
    /// tells the harvest thread about every wave and batch, in order.
    pub(crate) fn submit_loop<M, P>(
        &self,
        rx: &crossbeam_channel::Receiver<Submit<M, P>>,
        jobs: &crossbeam_channel::Sender<crate::pipeline::Job>,
        out: &crossbeam_channel::Sender<ToHarvestMsg<M, P>>,
        stats: &StatCounters,
    ) {
        let _ = self.bind();
        let send = |m: ToHarvest<M, P>| {
            let _ = out.send(ToHarvestMsg(m));
        };
        let mut queue: VecDeque<Ahead<M, P>> = VecDeque::new();
        let mut cur: Option<Current<M>> = None;
        let mut input_open = true;
        // A batch whose device work failed: its later waves are only drained.
        let mut poisoned: Option<(u64, Error)> = None;
        loop {
            // Top up: dispatch reads of upcoming waves while the oldest is outstanding.
            loop {
                let waves_ahead = queue.iter().filter(|a| matches!(a, Ahead::Wave { .. })).count();
                if waves_ahead >= AHEAD {
                    break;
                }
                let block = queue.is_empty();
                if cur.is_none() {
                    if !input_open {
                        break;
                    }
                    let item = if block {
                        rx.recv().map_err(|_| crossbeam_channel::TryRecvError::Disconnected)
                    } else {
                        rx.try_recv()
                    };
                    match item {
                        Ok(Submit::Pass(p)) => queue.push_back(Ahead::Pass(p)),
                        Ok(Submit::Run { id, ctx, meta }) => {
                            cur = Some(Current { id, ctx, meta, lease: None, next: 0 });
                        }
                        Err(crossbeam_channel::TryRecvError::Empty) => break,
                        Err(crossbeam_channel::TryRecvError::Disconnected) => {
                            input_open = false;
                            break;
                        }
                    }
                    continue;
                }
                let Some(c) = cur.as_mut() else { break };
                if c.lease.is_none() {
                    match self.acquire(c.id, block) {
                        Ok(Some(l)) => c.lease = Some(l),
                        Ok(None) => break,
                        Err(error) => {
                            if let Some(c) = cur.take() {
                                queue.push_back(Ahead::Failed { meta: c.meta, error });
                            }
                            continue;
                        }
                    }
                }
                if c.next < c.ctx.plan.waves.len() {
                    let t = Instant::now();
                    let got = self.acquire_wave(block);
                    stats
                        .wave_slot_wait_ns
                        .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    let slot = match got {
                        Ok(Some(s)) => s,
                        Ok(None) => break,
                        Err(error) => {
                            // Teardown: the batch's buffer goes back with it.
                            if let Some(c) = cur.take() {
                                if let Some(l) = c.lease {
                                    let _ = self.release(l, None);
                                }
                                queue.push_back(Ahead::Failed { meta: c.meta, error });
                            }
                            continue;
                        }
                    };
                    let k = c.next;
                    c.next += 1;
                    let out = c
                        .lease
                        .as_ref()
                        .map_or((0, 0), |l| (l.buffer().device_ptr(), l.buffer().len() as u64));
                    match self.dispatch(&c.ctx, k, out, slot, jobs) {
                        Ok(wave) => queue.push_back(Ahead::Wave { id: c.id, wave }),
                        Err((slot, error)) => {
                            self.release_wave(slot);
                            poisoned.get_or_insert((c.id, error));
                        }
                    }
                }
                if c.next >= c.ctx.plan.waves.len()
                    && let Some(c) = cur.take()
                {
                    // The lease was taken above, before any wave was dispatched.
                    queue.push_back(match c.lease {
                        Some(lease) => Ahead::End { id: c.id, ctx: c.ctx, meta: c.meta, lease },
                        None => Ahead::Failed { meta: c.meta, error: Error::Closed },
                    });
                }
            }
            // Submit the oldest.
            let Some(front) = queue.pop_front() else {
                if !input_open && cur.is_none() {
                    break;
                }
                continue;
            };
            match front {
                Ahead::Pass(p) => send(ToHarvest::Pass(p)),
                Ahead::Failed { meta, error } => send(ToHarvest::Failed { meta, error }),
                Ahead::Wave { id, wave } => {
                    let t = Instant::now();
                    wave.work.wait();
                    stats
                        .wave_jobs_wait_ns
                        .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    let mut state = std::mem::take(
                        &mut *wave.work.state.lock().unwrap_or_else(|e| e.into_inner()),
                    );
                    let host_errors = std::mem::take(&mut state.errors);
                    let slot = wave.slot;
                    let harvest = match &poisoned {
                        Some((pid, _)) if *pid == id => None,
                        _ => match self.submit_wave(
                            &wave.work,
                            wave.k,
                            wave.out,
                            &state,
                            slot.buffer(),
                            stats,
                        ) {
                            Ok(h) => Some(h),
                            Err(e) => {
                                // What was enqueued is covered by `done` if it records.
                                if let Ok(c) = self.cu("compute") {
                                    let _ = slot.buffer().done.record(c);
                                }
                                poisoned = Some((id, e));
                                None
                            }
                        },
                    };
                    send(ToHarvest::Wave { slot, harvest, errors: host_errors });
                }
                Ahead::End { id, ctx, meta, lease } => {
                    let outcome = if poisoned.as_ref().is_some_and(|p| p.0 == id) {
                        Err(poisoned.take().map_or(Error::Closed, |p| p.1))
                    } else {
                        self.end_batch(&ctx, &lease, stats)
                    };
                    match outcome {
                        Ok(()) => send(ToHarvest::End { meta, lease }),
                        Err(error) => {
                            // The device state of this batch is unknown: keep its buffer
                            // out of circulation until teardown.
                            std::mem::forget(lease);
                            send(ToHarvest::Failed { meta, error });
                        }
                    }
                }
            }
        }
    }

    /// Lays out wave `k` of a batch in a wave slot and hands its read ops to the workers.
    fn dispatch(
        &self,
        ctx: &BatchCtx,
        k: usize,
        out: (u64, u64),
        slot: WaveLease,
        jobs: &crossbeam_channel::Sender<crate::pipeline::Job>,
    ) -> std::result::Result<Dispatched, (WaveLease, Error)> {
        let plan = &ctx.plan;
        let Some(wave) = plan.waves.get(k) else {
            return Err((slot, Error::Closed));
        };
        let w = slot.buffer();
        // Region layout of every chunk of the wave.
        let mut regions = Vec::with_capacity(wave.chunks.len());
        let (mut st, mut ar) = (0u64, 0u64);
        let (st_cap, ar_cap) = (w.staging.len() as u64, w.arena.len() as u64);
        for chunk in plan.chunks.get(wave.chunks.clone()).unwrap_or(&[]) {
            let ChunkSource::Copy { compressed_len, decompressed_len, .. } = chunk.source else {
                regions.push(None);
                continue;
            };
            let st_len = compressed_len.saturating_add(STAGING_PAD);
            let fits = st + st_len <= st_cap && ar + decompressed_len <= ar_cap;
            regions.push(fits.then_some(Region { staging: st, staging_len: st_len, arena: ar }));
            if fits {
                st = align_up(st + st_len, REGION_ALIGN);
                ar = align_up(ar + decompressed_len, REGION_ALIGN);
            }
        }
        let work = Arc::new(WaveWork {
            ctx: ctx.clone(),
            chunks0: wave.chunks.start,
            regions,
            staging_used: st.min(st_cap),
            cpu_share: self.cpu_share,
            staging: w.staging.clone(),
            decoded: w.decoded.clone(),
            gpu: self.decoder.is_some(),
            in_align: self.in_align,
            out_align: self.out_align,
            state: Mutex::new(WaveState {
                chunk_state: vec![ChunkState::Failed; wave.chunks.len()],
                ..WaveState::default()
            }),
            remaining: AtomicUsize::new(wave.reads.len()),
            done: (Mutex::new(wave.reads.is_empty()), Condvar::new()),
        });
        for r in wave.reads.clone() {
            if jobs.send(crate::pipeline::Job::Cuda(Arc::clone(&work), r)).is_err() {
                // No worker is left to run this or any job: nothing writes the slot.
                return Err((slot, Error::Closed));
            }
        }
        Ok(Dispatched { work, slot, k, out })
    }

    /// Enqueues a staged wave's device work: uploads on `h2d`; nvCOMP decode, raw block
    /// copies, the status reduction and the assembly on `compute`; records `done`.
    fn submit_wave(
        &self,
        work: &WaveWork,
        k: usize,
        out: (u64, u64),
        state: &WaveState,
        w: &WaveBufs,
        stats: &StatCounters,
    ) -> Result<Harvest> {
        let ctx = &work.ctx;
        let plan = &ctx.plan;
        let Some(wave) = plan.waves.get(k) else {
            return Err(gpu_err("staging a wave", "wave index out of range"));
        };
        let t = Instant::now();
        let h2d = self.cu("h2d")?;
        let compute = self.cu("compute")?;
        let staging_used = work.staging_used as usize;
        if staging_used > 0 && (!state.streams.is_empty() || !state.raws.is_empty()) {
            // The workers finished writing the pinned side (joined by the caller).
            gs(
                "staging upload",
                self.backend.copy_range_to_device(
                    h2d,
                    &w.d_staging,
                    0,
                    &w.staging,
                    0,
                    staging_used,
                ),
            )?;
        }
        // CPU-decoded chunks, merged into runs.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (i, cs) in state.chunk_state.iter().enumerate() {
            if let (ChunkState::Cpu, Some(r)) = (cs, work.regions[i]) {
                let len = plan.chunks[wave.chunks.start + i].decompressed_len();
                match runs.last_mut() {
                    Some(last) if align_up(last.0 + last.1, REGION_ALIGN) == r.arena => {
                        last.1 = r.arena + len - last.0;
                    }
                    _ => runs.push((r.arena, len)),
                }
            }
        }
        for (off, len) in &runs {
            // Both buffers share the arena layout.
            let (o, l) = (*off as usize, *len as usize);
            gs(
                "decoded upload",
                self.backend.copy_range_to_device(h2d, &w.arena, o, &w.decoded, o, l),
            )?;
        }
        // nvCOMP metadata: [comp ptrs][comp bytes][capacity][out ptrs][actual][expected]
        // [statuses][copy ranges][report].
        let n = state.streams.len();
        if n as u64 > self.sizing.streams || state.raws.len() as u64 > self.sizing.streams {
            // The metadata buffers were sized for `streams` entries of each kind.
            return Err(Error::Gpu {
                what: "staging a wave",
                detail: format!(
                    "{n} zstd streams and {} raw blocks exceed the {} per wave the engine \
                     was sized for",
                    state.raws.len(),
                    self.sizing.streams
                ),
            });
        }
        let n8 = n as u64 * 8;
        let (o_cp, o_cb, o_cap, o_op, o_act, o_exp) = (0, n8, 2 * n8, 3 * n8, 4 * n8, 5 * n8);
        let o_st = 6 * n8;
        let o_raw = align_up(o_st + n as u64 * 4, 8);
        let o_rep = align_up(o_raw + state.raws.len() as u64 * 24, 8);
        if o_rep + 8 > w.meta_host.len() as u64 {
            return Err(gpu_err("staging a wave", "metadata larger than its buffer"));
        }
        let base = w.meta.device_ptr();
        let dst0 = w.d_staging.device_ptr();
        let ar0 = w.arena.device_ptr();
        let mut max_len = 0u64;
        {
            // SAFETY: the slot is leased by this thread and its previous device use
            // finished before it was released (harvested after `done`); in bounds
            // (checked above).
            let meta =
                unsafe { std::slice::from_raw_parts_mut(w.meta_host.as_ptr(), o_rep as usize) };
            for (i, f) in state.streams.iter().enumerate() {
                let mut put = |off: u64, v: u64| {
                    let at = off as usize + i * 8;
                    meta[at..at + 8].copy_from_slice(&v.to_ne_bytes());
                };
                put(o_cp, dst0 + f.comp_off);
                put(o_cb, f.comp_len);
                put(o_cap, f.len);
                put(o_op, ar0 + f.out_off);
                put(o_exp, f.len);
                max_len = max_len.max(f.len);
            }
            let ranges: Vec<CopyRange> = state
                .raws
                .iter()
                .map(|r| CopyRange { src: dst0 + r.comp_off, dst: ar0 + r.out_off, len: r.len })
                .collect();
            meta[o_raw as usize..o_raw as usize + ranges.len() * 24]
                .copy_from_slice(bytemuck::cast_slice(&ranges));
        }
        gs(
            "metadata upload",
            self.backend.copy_range_to_device(h2d, &w.meta, 0, &w.meta_host, 0, o_rep as usize),
        )?;
        gs("cuEventRecord", w.h2d_done.record(h2d))?;
        gs("cuStreamWaitEvent", w.h2d_done.wait_in(compute))?;
        let r = |off: u64, len: u64| {
            // SAFETY: inside this slot's metadata allocation, whose size covers
            // `streams` entries (checked above).
            unsafe { DeviceRange::from_raw(base + off, len) }
        };
        if let Some(dec) = &self.decoder {
            let cap = dec.capacity().0;
            let mut i = 0;
            while i < n {
                let m = (n - i).min(cap);
                let at = i as u64 * 8;
                let batch = ZstdBatch {
                    chunks: m,
                    max_chunk_bytes: max_len as usize,
                    comp_ptrs: r(o_cp + at, m as u64 * 8),
                    comp_bytes: r(o_cb + at, m as u64 * 8),
                    out_capacity: r(o_cap + at, m as u64 * 8),
                    out_ptrs: r(o_op + at, m as u64 * 8),
                    out_actual: r(o_act + at, m as u64 * 8),
                    statuses: r(o_st + i as u64 * 4, m as u64 * 4),
                };
                // SAFETY: frames were checked on the host and staged whole; outputs are
                // disjoint arena regions of the given capacity.
                unsafe { dec.decode(compute, &batch) }.map_err(|e| gpu_err("nvCOMP decode", e))?;
                i += m;
            }
        }
        if !state.raws.is_empty() {
            // SAFETY: raw streams staged whole, destinations disjoint arena ranges.
            unsafe {
                self.kernels.memcpy_batch(
                    compute,
                    r(o_raw, state.raws.len() as u64 * 24),
                    state.raws.len() as u32,
                )
            }
            .map_err(|e| gpu_err("memcpy_batch", e))?;
        }
        self.kernels
            .status_reduce(
                compute,
                r(o_st, n as u64 * 4),
                r(o_act, n8),
                r(o_exp, n8),
                n as u32,
                r(o_rep, 8),
            )
            .map_err(|e| gpu_err("status_reduce", e))?;
        // Read by the host only after `done`.
        gs(
            "report download",
            self.backend.copy_range_to_pinned(compute, &w.report, 0, &w.meta, o_rep as usize, 8),
        )?;
        // Assemble.
        let mut keep = Vec::new();
        for (i, cs) in state.chunk_state.iter().enumerate() {
            let shuffle = match cs {
                ChunkState::Failed => continue,
                ChunkState::Cpu => ShuffleSpec::default(),
                ChunkState::Gpu(spec) => *spec,
            };
            let Some(reg) = work.regions[i] else { continue };
            let chunk = &plan.chunks[wave.chunks.start + i];
            let Some(facts) = ctx.facts.get(chunk.array.index()) else { continue };
            for p in &chunk.placements {
                keep.push((
                    ar0 + reg.arena,
                    src_dtype(facts.0.data_type),
                    shuffle,
                    chunk.array.index(),
                    p.in_chunk.lo.clone(),
                    ctx.positions[p.sample] as u64,
                    p.in_sample.lo.clone(),
                    p.in_chunk.shape(),
                ));
            }
        }
        let places: Vec<Placement<'_>> = keep
            .iter()
            .map(|k| Placement {
                src: k.0,
                src_dtype: k.1,
                shuffle: k.2,
                chunk_shape: &ctx.facts[k.3].0.shape,
                in_chunk_lo: &k.4,
                sample: k.5,
                sample_shape: &ctx.sample_shape,
                in_sample_lo: &k.6,
                extent: &k.7,
            })
            .collect();
        let kind = out_kind(ctx.out_dtype);
        let mut used = 0u64;
        for piece in places.chunks(DESC_CAP) {
            let packed = kernels::pack_placements(piece, kind, ctx.out_elems)
                .map_err(|e| gpu_err("pack placements", e))?;
            self.with_descs(w, &mut used, bytemuck::cast_slice(&packed), |b| {
                // SAFETY: the leased batch buffer, held until the batch is handed out.
                let d = unsafe { DeviceRange::from_raw(out.0, out.1) };
                // SAFETY: sources are arena regions written earlier on this stream
                // (decode, memcpy) or on `h2d` (ordered by `h2d_done`); descriptors
                // validated by packing and copied before the launch on this stream.
                unsafe { self.kernels.assemble(compute, kind, d, b, packed.len() as u32) }
                    .map_err(|e| gpu_err("assemble", e))
            })?;
        }
        gs("cuEventRecord", w.done.record(compute))?;
        stats.h2d_bytes.fetch_add(
            staging_used as u64 + runs.iter().map(|r| r.1).sum::<u64>(),
            Ordering::Relaxed,
        );
        stats.gpu_submit_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let mut chunks_meta = Vec::with_capacity(wave.chunks.len());
        for chunk in plan.chunks.get(wave.chunks.clone()).unwrap_or(&[]) {
            let key = match chunk.source {
                ChunkSource::Copy { read, .. } => plan
                    .reads
                    .get(read)
                    .and_then(|op| plan.files.get(op.file))
                    .map(|f| Arc::clone(&f.key))
                    .unwrap_or_else(|| Arc::from("")),
                ChunkSource::Fill { .. } => Arc::from(""),
            };
            chunks_meta.push((
                key,
                chunk.chunk.clone(),
                chunk.placements.iter().map(|p| p.sample).collect(),
            ));
        }
        Ok(Harvest {
            stream_chunk: state.streams.iter().map(|f| f.chunk as u32).collect(),
            chunks: chunks_meta,
            statuses_off: o_st,
            actual_off: o_act,
            expected_off: o_exp,
        })
    }

    /// A batch's last device work: its fill chunks (grouped by array, one value per
    /// launch), then the ready event.
    fn end_batch(&self, ctx: &BatchCtx, lease: &BatchLease, stats: &StatCounters) -> Result<()> {
        let plan = &ctx.plan;
        let compute = self.cu("compute")?;
        for (a, facts) in ctx.facts.iter().enumerate() {
            let mut specs = Vec::new();
            for chunk in plan.chunks.get(plan.fills.clone()).unwrap_or(&[]) {
                if chunk.array.index() != a {
                    continue;
                }
                for p in &chunk.placements {
                    specs.push((
                        ctx.positions[p.sample] as u64,
                        p.in_sample.lo.clone(),
                        p.in_sample.shape(),
                    ));
                }
            }
            if specs.is_empty() {
                continue;
            }
            let fs: Vec<FillSpec<'_>> = specs
                .iter()
                .map(|(s, lo, ext)| FillSpec {
                    sample: *s,
                    sample_shape: &ctx.sample_shape,
                    in_sample_lo: lo,
                    extent: ext,
                })
                .collect();
            let t = Instant::now();
            self.fill_boxes(lease.buffer(), &fs, &facts.1, ctx.out_elems, &self.end_descs)?;
            stats.assemble_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        gs("cuEventRecord", self.ready[lease.slot()].record(compute))
    }
}

/// A message to the harvest thread (opaque outside this module).
pub(crate) struct ToHarvestMsg<M, P>(ToHarvest<M, P>);

/// A wave whose reads are with the workers.
struct Dispatched {
    work: Arc<WaveWork>,
    slot: WaveLease,
    k: usize,
    /// The batch buffer's device address and length (its lease is held until `End`).
    out: (u64, u64),
}

/// The submit thread's queue, in submission order.
enum Ahead<M, P> {
    Wave { id: u64, wave: Dispatched },
    End { id: u64, ctx: BatchCtx, meta: M, lease: BatchLease },
    Failed { meta: M, error: Error },
    Pass(P),
}

/// The batch whose waves are being dispatched.
struct Current<M> {
    id: u64,
    ctx: BatchCtx,
    meta: M,
    lease: Option<BatchLease>,
    /// The next wave to dispatch.
    next: usize,
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Nothing may still run on buffers about to be freed.
        let _ = self.sched.synchronize_all();
    }
}

/// Per-batch facts shared by the wave jobs.
#[derive(Debug, Clone)]
pub(crate) struct BatchCtx {
    pub arrays: Arc<Vec<ArrayEntry>>,
    /// Per array: chunk representation and the fill value cast to the output.
    pub facts: Arc<Vec<(ChunkRepr, Vec<u8>)>>,
    pub routes: Arc<Vec<Route>>,
    pub plan: Arc<BatchPlan>,
    pub positions: Arc<Vec<usize>>,
    pub sample_shape: Vec<u64>,
    pub out_dtype: OutDtype,
    pub out_elems: u64,
}

#[derive(Debug, Clone, Copy)]
struct Region {
    staging: u64,
    staging_len: u64,
    arena: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Failed,
    Cpu,
    Gpu(ShuffleSpec),
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    chunk: usize,
    comp_off: u64,
    comp_len: u64,
    out_off: u64,
    len: u64,
}

#[derive(Debug, Clone, Copy)]
struct Raw {
    comp_off: u64,
    out_off: u64,
    len: u64,
}

#[derive(Debug, Default)]
struct WaveState {
    chunk_state: Vec<ChunkState>,
    streams: Vec<Frame>,
    raws: Vec<Raw>,
    errors: Vec<(usize, SampleError)>,
}

/// One wave's jobs: a read op each.
#[derive(Debug)]
pub(crate) struct WaveWork {
    ctx: BatchCtx,
    chunks0: usize,
    regions: Vec<Option<Region>>,
    /// Bytes of `staging` the regions span (what is uploaded).
    staging_used: u64,
    /// Per mille of the GPU-decodable chunks decoded by the workers instead.
    cpu_share: u32,
    staging: CudaPinnedMem,
    decoded: CudaPinnedMem,
    gpu: bool,
    in_align: u64,
    out_align: u64,
    state: Mutex<WaveState>,
    remaining: AtomicUsize,
    done: (Mutex<bool>, Condvar),
}

impl WaveWork {
    fn wait(&self) {
        let mut d = self.done.0.lock().unwrap_or_else(|e| e.into_inner());
        while !*d {
            d = self.done.1.wait(d).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn finish_job(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.done.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.done.1.notify_all();
        }
    }

    /// Whether wave-local chunk `li` goes to the CPU under the wave's share (a fixed
    /// scatter of the indices, so the CPU's chunks spread over the wave's files).
    fn cpu_takes(&self, li: usize) -> bool {
        self.cpu_share > 0
            && (li as u64).wrapping_mul(0x9E37_79B9) % 1000 < u64::from(self.cpu_share)
    }

    /// A mutable view of `len` pinned bytes at `off` of `mem`.
    ///
    /// # Safety
    /// Chunk regions are disjoint and each is written by the one job owning its read op;
    /// the device reads them only after every job finished.
    #[allow(clippy::mut_from_ref)]
    unsafe fn pinned(mem: &CudaPinnedMem, off: u64, len: u64) -> Option<&mut [u8]> {
        let end = off.checked_add(len)?;
        if end > mem.len() as u64 {
            return None;
        }
        // SAFETY: in bounds (checked); exclusivity per the contract above.
        Some(unsafe {
            std::slice::from_raw_parts_mut(mem.as_ptr().add(off as usize), len as usize)
        })
    }

    /// Runs read op `r`: read, check and stage frames, or decode on the CPU.
    pub(crate) fn run(
        &self,
        r: usize,
        store: &dyn store::Store,
        buf: &mut Vec<u8>,
        stats: &StatCounters,
    ) {
        self.run_inner(r, store, buf, stats);
        self.finish_job();
    }

    fn run_inner(
        &self,
        r: usize,
        store: &dyn store::Store,
        buf: &mut Vec<u8>,
        stats: &StatCounters,
    ) {
        let plan = &self.ctx.plan;
        let (Some(op), Some(group)) = (plan.reads.get(r), plan.group(r)) else { return };
        let Some(file) = plan.files.get(op.file) else { return };
        let mut local = WaveState::default();
        let fail_all = |local: &mut WaveState, err: SampleError| {
            for c in group {
                local.errors.extend(c.placements.iter().map(|p| (p.sample, err.clone())));
            }
        };
        let Ok(len) = usize::try_from(op.len) else {
            fail_all(
                &mut local,
                SampleError::Format(zarr::Error::Overflow { what: "read length" }),
            );
            self.merge(local, &[]);
            return;
        };
        buf.resize(len, 0);
        let t = Instant::now();
        let read = store.read_exact(&file.key, op.offset, &mut buf[..len]);
        stats.io_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if let Err(e) = read {
            fail_all(&mut local, SampleError::Store(e));
            self.merge(local, &[]);
            return;
        }
        let mut states = Vec::with_capacity(group.len());
        for (j, chunk) in group.iter().enumerate() {
            let gi = op.chunks.start + j;
            let li = gi.wrapping_sub(self.chunks0);
            let ChunkSource::Copy { offset_in_read, compressed_len, decompressed_len, .. } =
                chunk.source
            else {
                continue;
            };
            let a = chunk.array.index();
            let (Some(entry), Some(facts), Some(route)) =
                (self.ctx.arrays.get(a), self.ctx.facts.get(a), self.ctx.routes.get(a))
            else {
                continue;
            };
            let decode_err = |source| SampleError::Decode {
                path: PathBuf::from(&*file.key),
                chunk: chunk.chunk.clone(),
                source,
            };
            let Some(reg) = self.regions.get(li).copied().flatten() else {
                let err = SampleError::Unsupported {
                    path: PathBuf::from(&*file.key),
                    what: "a chunk larger than the CUDA engine's wave buffers",
                };
                local.errors.extend(chunk.placements.iter().map(|p| (p.sample, err.clone())));
                states.push((li, ChunkState::Failed));
                continue;
            };
            let lo = offset_in_read as usize;
            let Some(src) = buf.get(lo..lo.saturating_add(compressed_len as usize)) else {
                continue;
            };
            let t = Instant::now();
            let staged = if self.gpu && !self.cpu_takes(li) {
                match route {
                    Route::Zstd => self.stage_zstd(li, reg, src, decompressed_len, &mut local),
                    Route::BloscZstd => {
                        self.stage_blosc(li, reg, src, decompressed_len, &mut local)
                    }
                    Route::Cpu => None,
                }
            } else {
                None
            };
            let state = match staged {
                Some(spec) => ChunkState::Gpu(spec),
                None => {
                    // SAFETY: this chunk's arena region, owned by this job.
                    let out = unsafe { Self::pinned(&self.decoded, reg.arena, decompressed_len) };
                    let decoded = match out {
                        Some(out) => zarr::decode_chunk(entry.chunk_codecs(), &facts.0, src, out),
                        None => Err(zarr::Error::Overflow { what: "arena region" }),
                    };
                    match decoded {
                        Ok(()) => ChunkState::Cpu,
                        Err(e) => {
                            let err = decode_err(e);
                            local
                                .errors
                                .extend(chunk.placements.iter().map(|p| (p.sample, err.clone())));
                            ChunkState::Failed
                        }
                    }
                }
            };
            stats.decode_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            states.push((li, state));
        }
        self.merge(local, &states);
    }

    fn merge(&self, local: WaveState, states: &[(usize, ChunkState)]) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for &(li, s) in states {
            if let Some(slot) = st.chunk_state.get_mut(li) {
                *slot = s;
            }
        }
        st.streams.extend(local.streams);
        st.raws.extend(local.raws);
        st.errors.extend(local.errors);
    }

    /// Stages a plain zstd chunk; `None` sends it to the CPU.
    fn stage_zstd(
        &self,
        li: usize,
        reg: Region,
        src: &[u8],
        dlen: u64,
        local: &mut WaveState,
    ) -> Option<ShuffleSpec> {
        if dlen > MAX_GPU_STREAM || kernels::check_zstd_frame(src, dlen).is_err() {
            return None;
        }
        let off = align_up(reg.staging, self.in_align);
        if off + src.len() as u64 > reg.staging + reg.staging_len {
            return None;
        }
        // SAFETY: inside this chunk's staging region, owned by this job.
        unsafe { Self::pinned(&self.staging, off, src.len() as u64) }?.copy_from_slice(src);
        local.streams.push(Frame {
            chunk: li,
            comp_off: off,
            comp_len: src.len() as u64,
            out_off: reg.arena,
            len: dlen,
        });
        Some(ShuffleSpec::default())
    }

    /// Stages the streams of a blosc-zstd chunk; `None` sends it to the CPU.
    fn stage_blosc(
        &self,
        li: usize,
        reg: Region,
        src: &[u8],
        dlen: u64,
        local: &mut WaveState,
    ) -> Option<ShuffleSpec> {
        use zarr::blosc;
        let lay = blosc::layout(src).ok()?;
        if lay.nbytes as u64 != dlen || (!lay.memcpyed && lay.compressor != blosc::Compressor::Zstd)
        {
            return None;
        }
        let streams = blosc::streams(src).ok()?;
        let mut frames = Vec::with_capacity(streams.len());
        let mut raws = Vec::new();
        let mut at = reg.staging;
        let end = reg.staging + reg.staging_len;
        let mut copies = Vec::with_capacity(streams.len());
        for s in &streams {
            let out_off = reg.arena + (s.block * lay.blocksize + s.offset) as u64;
            let bytes = src.get(s.src.clone())?;
            let off = align_up(at, self.in_align);
            if off + bytes.len() as u64 > end {
                return None;
            }
            if s.raw {
                raws.push(Raw { comp_off: off, out_off, len: s.len as u64 });
            } else {
                if s.len as u64 > MAX_GPU_STREAM
                    || !out_off.is_multiple_of(self.out_align)
                    || kernels::check_zstd_frame(bytes, s.len as u64).is_err()
                {
                    return None;
                }
                frames.push(Frame {
                    chunk: li,
                    comp_off: off,
                    comp_len: bytes.len() as u64,
                    out_off,
                    len: s.len as u64,
                });
            }
            copies.push((off, bytes));
            at = off + bytes.len() as u64;
        }
        for (off, bytes) in copies {
            // SAFETY: inside this chunk's staging region (checked), owned by this job.
            unsafe { Self::pinned(&self.staging, off, bytes.len() as u64) }?.copy_from_slice(bytes);
        }
        local.streams.extend(frames);
        local.raws.extend(raws);
        let shuffle = match lay.shuffle {
            blosc::Shuffle::None => Shuffle::None,
            blosc::Shuffle::Byte => Shuffle::Byte,
            blosc::Shuffle::Bit => Shuffle::Bit,
        };
        Some(if shuffle == Shuffle::None {
            ShuffleSpec::default()
        } else {
            ShuffleSpec { shuffle, typesize: lay.typesize as u32, blocksize: lay.blocksize as u64 }
        })
    }
}

/// A batch living in device memory.
pub struct DeviceBatch {
    pub(crate) engine: Arc<Engine>,
    pub(crate) lease: Option<Lease<CudaBackend, CudaDeviceMem>>,
    pub(crate) bytes: usize,
}

impl std::fmt::Debug for DeviceBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBatch").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl DeviceBatch {
    /// The device address of the tensor.
    pub fn device_ptr(&self) -> Option<u64> {
        self.lease.as_ref().map(|l| l.buffer().device_ptr())
    }

    /// The raw `CUevent` recorded after the batch's last write.
    pub fn ready_event(&self) -> Option<u64> {
        self.lease.as_ref().map(|l| self.engine.ready[l.slot()].raw())
    }

    /// The raw `CUstream` the batch was written on.
    pub fn ready_stream(&self) -> Option<u64> {
        self.engine.cu("compute").ok().map(|s| s.cu_stream() as u64)
    }

    /// Returns the buffer once `event` (a raw `CUevent` of the same context, recorded by
    /// the consumer after its last use) has completed on the device; no host sync.
    ///
    /// # Errors
    /// `Gpu` when the driver refuses the wait.
    pub fn release_event(mut self, event: u64) -> Result<()> {
        match self.lease.take() {
            Some(l) => self.engine.release(l, Some(event)),
            None => Ok(()),
        }
    }

    /// A synchronous copy of the tensor to the host.
    ///
    /// # Errors
    /// `Gpu` when the copy fails.
    pub fn to_host(&self) -> Result<Vec<u8>> {
        match &self.lease {
            Some(l) => self.engine.download(l, self.bytes),
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for DeviceBatch {
    fn drop(&mut self) {
        if let Some(l) = self.lease.take() {
            let _ = self.engine.release(l, None);
        }
    }
}

/// GPU memory in use on the current device (`total - free` of `cuMemGetInfo`), for tests.
///
/// # Errors
/// `Gpu` when the driver call fails.
pub fn device_memory_used(device: usize) -> Result<u64> {
    let b = CudaBackend::new(device).map_err(|e| gpu_err("open device", e))?;
    let (free, total) = gs("cuMemGetInfo", b.memory_info())?;
    Ok(total.saturating_sub(free))
}
