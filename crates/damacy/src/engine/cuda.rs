//! The CUDA engine: the same coordinator, prefetcher and planner as the host engine, with
//! each batch executed on the GPU, wave by wave (DESIGN.md §2 "damacy").
//!
//! Three threads drive it, so that planning, reading and staging, and the device work of
//! different waves and batches overlap: the coordinator plans batch N+1 while the submit
//! thread keeps the decode workers busy with the reads of the next waves (up to one
//! fewer than the wave slots) and enqueues the device work of the oldest, and the
//! harvest thread waits for each wave's device work, reads its decode report and frees
//! its slot, and hands each batch out in order once its last wave finished.
//!
//! Per wave (the planner's unit of at most `max_chunks_per_wave` chunks; the engine picks
//! the largest count in `sizing::WAVE_CHUNKS` its budgets allow, as nvCOMP runs faster
//! the more chunks one call decodes), in one of the wave slots (`Config::gpu_wave_slots`,
//! or as many as `sizing` finds room for):
//! 1. the decode workers read each read op of the wave; zstd frames (plain zstd chunks,
//!    and the zstd streams of blosc-zstd chunks, split with `zarr::blosc::streams`) are
//!    checked on the host with [`kernels::check_zstd_frame`] (nvCOMP does not validate
//!    its input) and copied into pinned staging at aligned offsets; every other chunk
//!    (other codecs, a frame that fails the check, no nvCOMP) is decoded on the worker
//!    with `zarr::decode_chunk` straight into pinned memory at its arena offset;
//! 2. the `h2d` stream uploads the staging prefix, the CPU-decoded chunks and the nvCOMP
//!    metadata (written into the slot's pinned memory: every upload is asynchronous);
//! 3. the slot's own decode stream (after the uploads) decodes every frame with the
//!    slot's own nvCOMP decoder into the decompressed arena, copies raw blosc blocks with
//!    `memcpy_batch` and reduces the statuses: waves of different slots decode at once
//!    (one nvCOMP call of a few chunks takes about as long as one chunk's decode, ~9 ms
//!    on the H200, so small batches need several calls in flight); then the `compute`
//!    stream (after that decode) assembles every placement of the wave into the device
//!    batch buffer, in wave order;
//! 4. fill chunks are written by the `fill` kernel after the last wave.
//!
//! Wave slots cycle through a `gpu-schedule` pool (`wave_slots`, acquired by the host
//! role "stager", released by "harvester"): a slot is refilled only after the harvest
//! thread saw its previous wave finish on the device (its staging is pinned memory the
//! workers write) and read that wave's decode report. A batch is handed out after its
//! last wave finished, with a ready event recorded on `compute`. Device batch buffers
//! cycle through a `gpu-schedule` [`Pool`](gpu_schedule::Pool): acquired on `compute`,
//! released on `consumer` (after the caller's event, for
//! [`Tensor::release_event`](crate::batch::Tensor::release_event)), so a slot is
//! rewritten only after its release.
//!
//! Memory is allocated once, at construction (`core`), and checked against
//! `max_gpu_memory_bytes` and `max_pinned_host_bytes` before anything is allocated
//! (`sizing`).
//!
//! The parts, one file each:
//! - `sizing`: buffer sizes and chunks per wave from the budgets;
//! - `core`: the device, its streams, kernels and nvCOMP decoder, the pools of batch
//!   buffers and wave slots, and their allocation;
//! - `seam`: [`CudaEngine`], the engine as the pipeline sees it, with its threads;
//! - `route`: which arrays' chunks nvCOMP can decode, and the CPU's share of them;
//! - `submit`: the submit thread: reads ahead, dispatches waves, ends batches;
//! - `stage`: the decode workers' part of a wave: read, check frames, stage or decode;
//! - `enqueue`: one staged wave's device work, on `h2d` and `compute`;
//! - `harvest`: the harvest thread: waits for each wave, reads its decode report;
//! - `device_batch`: a batch living on the device, delivered at `pop`.
//!
//! The root holds what the parts share (constants, error mapping) and imports none of
//! them (`crate::backend` reaches `seam::CudaEngine` directly); a part imports the root
//! and the parts it builds on, never the reverse.

mod cache;
mod core;
pub(crate) mod device;
mod device_batch;
mod enqueue;
mod harvest;
mod route;
pub(crate) mod seam;
mod sizing;
mod stage;
mod submit;

use crate::error::{Error, GpuError, Result};

/// Names of the per-slot decode streams (a `gpu-schedule` stream is named statically),
/// one per possible wave slot.
const DECODE_STREAMS: [&str; crate::config::MAX_GPU_WAVE_SLOTS] = [
    "decode0", "decode1", "decode2", "decode3", "decode4", "decode5", "decode6", "decode7",
    "decode8", "decode9", "decode10", "decode11", "decode12", "decode13", "decode14", "decode15",
];
/// Extra staging bytes per chunk, room for aligning each blosc stream.
const STAGING_PAD: u64 = 1024;
/// Alignment of every chunk region in the arena and the staging buffer.
const REGION_ALIGN: u64 = 256;
/// Smallest per-wave staging or arena size the engine accepts.
const MIN_WAVE_BYTES: u64 = 8 << 20;
/// Largest decoded zstd stream sent to nvCOMP (larger ones are decoded on the CPU);
/// nvCOMP's temp buffer is sized for this. (nvCOMP 6's temp is about 3 bytes per byte of
/// `chunks × max_chunk_bytes`, measured on the H200: 6.6 GB for 2048 × 1 MiB.)
const MAX_GPU_STREAM: u64 = 256 << 10;
/// Placements or fill boxes per descriptor upload.
const DESC_CAP: usize = 16 << 10;
/// Bytes of one descriptor buffer (a wave slot's, or a fill buffer).
const DESC_BYTES: u64 = (DESC_CAP as u64) * 256;
/// Bytes of a batch buffer's descriptor pair for its batch's end (fill boxes and cache
/// hits; a placement takes 224 bytes): `default`'s cached batches need 1.3 MB. Larger
/// ends go on through pageable memory (`Stats::gpu_pageable_uploads`).
const END_DESC_BYTES: u64 = 2 << 20;
/// Device bytes per stream of nvCOMP metadata: 6 u64 arrays and an i32 array.
const META_PER_STREAM: u64 = 6 * 8 + 4;

/// A failed GPU call as the facade's error, naming the call.
fn gpu_err(call: &'static str, source: impl Into<GpuError>) -> Error {
    Error::Gpu { call, source: Box::new(source.into()) }
}

/// Maps a `gpu-schedule` error onto the facade's, naming the call.
fn gs<T>(call: &'static str, r: gpu_schedule::Result<T>) -> Result<T> {
    r.map_err(|e| gpu_err(call, e))
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a.max(1)) * a.max(1)
}

#[cfg(test)]
mod tests {
    use super::{gpu_err, gs};
    use crate::error::{Error, GpuError};

    #[test]
    fn gpu_failures_are_typed_and_name_the_call() {
        let driver = gpu_schedule::Error::CudaDriver {
            call: "cuEventSynchronize",
            code: "CUDA_ERROR_ILLEGAL_ADDRESS".into(),
        };
        match gs::<()>("waiting for a wave", Err(driver.clone())) {
            Err(Error::Gpu { call, source }) => {
                assert_eq!(call, "waiting for a wave");
                assert_eq!(*source, GpuError::Schedule(driver));
            }
            other => panic!("expected Gpu, got {other:?}"),
        }
        let nvcomp =
            kernels::Error::Nvcomp { call: "nvcompBatchedZstdDecompressAsync", status: 10 };
        match gpu_err("nvCOMP decode", nvcomp.clone()) {
            Error::Gpu { call, source } => {
                assert_eq!(call, "nvCOMP decode");
                assert_eq!(*source, GpuError::Kernels(nvcomp));
                let shown = Error::Gpu { call, source }.to_string();
                assert!(shown.starts_with("gpu: nvCOMP decode failed: nvCOMP "), "{shown}");
            }
            other => panic!("expected Gpu, got {other:?}"),
        }
    }
}
