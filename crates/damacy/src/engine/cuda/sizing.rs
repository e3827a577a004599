//! Sizing the CUDA engine's buffers from the memory budgets, before anything is
//! allocated.

use planner::PlanLimits;

use super::{
    DESC_BYTES, MAX_GPU_STREAM, META_PER_STREAM, MIN_WAVE_BYTES, REGION_ALIGN, STAGING_PAD, WAVES,
};
use crate::config::Config;
use crate::error::{Error, Result};

/// Chunks per wave the engine tries, largest first: nvCOMP's batched zstd runs faster the
/// more chunks one call decodes (measured on the H200: 11.8 GB/s at 512, 34.7 at 2048,
/// 53.6 at 8192), at a temp buffer growing with the count.
const WAVE_CHUNKS: [u64; 6] = [8192, 4096, 2048, 1024, 512, 256];

/// Per-wave sizes derived from the budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sizing {
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
    pub(super) fn limits(&self, cfg: &Config) -> PlanLimits {
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
pub(super) fn meta_bytes(streams: u64) -> u64 {
    streams * META_PER_STREAM + streams * 24 + 64
}

/// Sizes the engine's buffers for waves of at most `chunks` chunks from the
/// configuration, before anything is allocated.
///
/// # Errors
/// `Budget` naming `max_gpu_memory_bytes` or `max_pinned_host_bytes` and the minimum
/// that would do (nvCOMP's temp buffer, `temp`, is counted against the GPU budget).
fn size(cfg: &Config, temp: u64, chunks: u64) -> Result<Sizing> {
    let streams = chunks * 4;
    let waves = WAVES as u64;
    let over = |knob| Error::ConfigOverflow { knob };
    let batch_bytes = cfg
        .batch_elements()?
        .checked_mul(cfg.dtype.max_size() as u64)
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

/// The largest wave whose buffers fit the budgets with bytes enough to fill it (128 KiB
/// per chunk on average), with the decoder's temp bytes for it (`temp(chunks)`: nvCOMP's,
/// 0 without nvCOMP or on the simulated device).
///
/// # Errors
/// Otherwise the smallest candidate's error, which names the least budget that would do;
/// `temp`'s error (nvCOMP cannot size its temp buffer).
pub(super) fn choose(cfg: &Config, temp: &dyn Fn(u64) -> Result<u64>) -> Result<(Sizing, u64)> {
    let mut smallest_err = None;
    for (i, &chunks) in WAVE_CHUNKS.iter().enumerate() {
        let temp = temp(chunks)?;
        match size(cfg, temp, chunks) {
            Ok(s) if s.decompressed >= chunks * (128 << 10) || i + 1 == WAVE_CHUNKS.len() => {
                return Ok((s, temp));
            }
            Ok(_) => {}
            Err(e) => smallest_err = Some(e),
        }
    }
    Err(smallest_err.unwrap_or(Error::Closed))
}
