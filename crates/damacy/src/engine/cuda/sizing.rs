//! Sizing the CUDA engine's buffers from the memory budgets, before anything is
//! allocated.

use planner::PlanLimits;

use super::{
    DESC_BYTES, END_DESC_BYTES, MAX_GPU_STREAM, META_PER_STREAM, MIN_WAVE_BYTES, REGION_ALIGN,
    STAGING_PAD,
};
use crate::config::{Config, SMALL_BATCH_BUFFERS};
use crate::error::{Error, Result};

/// Chunks per wave the engine tries, largest first: nvCOMP's batched zstd runs faster the
/// more chunks one call decodes (measured on the H200: 11.8 GB/s at 512, 34.7 at 2048,
/// 53.6 at 8192), at a temp buffer growing with the count.
const WAVE_CHUNKS: [u64; 6] = [8192, 4096, 2048, 1024, 512, 256];

/// Per-wave sizes derived from the budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sizing {
    /// Bytes of one device batch buffer: `plan_batches` batches side by side.
    pub batch_bytes: u64,
    /// Batches planned as one (`Config::batches_per_plan`, as the budgets allow).
    pub plan_batches: usize,
    /// Compressed bytes staged per wave (planner limit).
    pub staging: u64,
    /// Decompressed bytes per wave (planner limit).
    pub decompressed: u64,
    /// Chunks per wave (planner limit).
    pub chunks: u64,
    /// Streams per wave sent to nvCOMP (more go to the CPU).
    pub streams: u64,
    /// Wave slots, each with its own decoder (nvCOMP temp buffer) and decode stream.
    pub waves: usize,
    /// Batch buffers (`Config::batches_in_flight`, or as chosen), each with a descriptor
    /// pair of [`END_DESC_BYTES`] for its batch's end.
    pub buffers: usize,
    /// Device bytes committed (the decoded-chunk cache included), without nvCOMP's temp
    /// buffers.
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

/// Bytes of one wave slot's copy ranges into the decoded-chunk cache: a `CopyRange` (24
/// bytes) per chunk of the wave.
pub(super) fn cache_ranges_bytes(chunks: u64) -> u64 {
    chunks * 24
}

/// Sizes the engine's buffers for waves of at most `chunks` chunks from the
/// configuration, before anything is allocated.
///
/// # Errors
/// `Budget` naming `max_gpu_memory_bytes` or `max_pinned_host_bytes` and the minimum
/// that would do (nvCOMP's temp buffers, `temp` per slot, and the decoded-chunk cache,
/// `chunk_cache_bytes`, are counted against the GPU budget).
fn size(
    cfg: &Config,
    temp: u64,
    chunks: u64,
    slots: usize,
    buffers: usize,
    plan_batches: usize,
) -> Result<Sizing> {
    let streams = chunks * 4;
    let waves = slots as u64;
    // Every slot decodes with a decoder of its own.
    let temp = temp.checked_mul(waves).ok_or(Error::ConfigOverflow { knob: "gpu_wave_slots" })?;
    let over = |knob| Error::ConfigOverflow { knob };
    let batch_bytes = cfg
        .batch_elements()?
        .checked_mul(cfg.dtype.max_size() as u64)
        .and_then(|b| b.checked_mul(plan_batches as u64))
        .ok_or(over("sample_shape"))?
        .max(8);
    // Each batch buffer has a descriptor pair (device and pinned) for its batch's end.
    let batches = (batch_bytes.checked_add(END_DESC_BYTES).ok_or(over("sample_shape"))?)
        .checked_mul(buffers as u64)
        .ok_or(over("batches_in_flight"))?;
    let end_descs_pinned = END_DESC_BYTES * buffers as u64;
    let pad_staging = chunks * (STAGING_PAD + REGION_ALIGN);
    let pad_arena = chunks * REGION_ALIGN;
    // Per slot: metadata, the copy ranges into the chunk cache, and descriptors on both
    // sides; the fill descriptors of `pop`; the decoded-chunk cache (device memory).
    let per_slot_fixed = meta_bytes(streams) + cache_ranges_bytes(chunks) + DESC_BYTES;
    let fixed = temp
        + waves * (per_slot_fixed + pad_staging + pad_arena)
        + DESC_BYTES
        + cfg.chunk_cache_bytes;
    // Each wave slot holds a device staging copy and an arena of the same sizes.
    let min_gpu = batches + fixed + waves * 2 * MIN_WAVE_BYTES;
    if cfg.max_gpu_memory_bytes < min_gpu {
        return Err(Error::Budget {
            knob: "max_gpu_memory_bytes",
            needed: min_gpu,
            limit: cfg.max_gpu_memory_bytes,
        });
    }
    let pinned_fixed = waves * (per_slot_fixed + 64 + pad_staging + pad_arena) + end_descs_pinned;
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
    Ok(Sizing {
        batch_bytes,
        plan_batches,
        staging,
        decompressed,
        chunks,
        streams,
        waves: slots,
        buffers,
        device_bytes,
        pinned_bytes,
    })
}

/// Wave slot counts the automatic choice tries, in order: the first that fits the budgets
/// wins, with the largest wave it allows. Measured on the H200 (16 threads, 24 GiB, one
/// run, docs/PERFORMANCE.md): `default` 13.05 Gvox/s with 3 slots of 4096 chunks, 12.83
/// with 4 × 4096, 12.05 with 6 × 2048, 11.70 with 8 × 2048, 10.07 with 2 × 8192;
/// `small-batch` 4.43 with 3 slots and 4.32 to 4.46 with 4 to 12 (three 64-chunk nvCOMP
/// calls in flight already overlap their ~9 ms). More slots only shrink the waves.
const AUTO_SLOTS: [usize; 2] = [3, 2];
/// As [`AUTO_SLOTS`], for small batches (`Config::small_batches`): each is about one
/// nvCOMP call, and 8 slots (with 8 batch buffers) keep 8 in flight. `small-batch` on the
/// H200: 5.56 Gvox/s with 8 buffers and 8 slots, 4.40 with 3 and 3; `quickstart` 4.46
/// against 1.88, `latency-none` 4.52 against 2.68 (docs/PERFORMANCE.md).
const AUTO_SLOTS_SMALL: [usize; 3] = [SMALL_BATCH_BUFFERS, 3, 2];

/// The buffers for `cfg`: `batches_in_flight` batch buffers and `gpu_wave_slots` slots,
/// each count as set or, with `0`, the first candidate that fits: for small batches
/// (`Config::small_batches`) 8 buffers with the slot counts of `AUTO_SLOTS_SMALL`, then
/// 3 buffers with those of `AUTO_SLOTS`. Each slot gets the largest wave whose buffers
/// fit the budgets with bytes enough to fill it (128 KiB per chunk on average), and holds
/// a decoder with temp bytes `temp(chunks)` (nvCOMP's; 0 without nvCOMP or on the
/// simulated device).
///
/// Returns the sizing and one decoder's temp bytes.
///
/// # Errors
/// Otherwise the last candidate's error, which names the least budget that would do;
/// `temp`'s error (nvCOMP cannot size its temp buffer).
pub(super) fn choose(cfg: &Config, temp: &dyn Fn(u64) -> Result<u64>) -> Result<(Sizing, u64)> {
    let wanted_plan = cfg.effective_batches_per_plan();
    let mut last_err = None;
    // The batches a plan covers, from the wanted count down: with the automatic count,
    // several only where the budgets still give waves of `MIN_GROUPED_WAVE_CHUNKS` or
    // more; a set count only as the budgets allow.
    let mut plan_batches = wanted_plan;
    loop {
        let grouped = plan_batches > 1;
        let picky = grouped && cfg.batches_per_plan == 0;
        // The count `Config` wants, then (where that is the small batches' automatic
        // count) the count of other batches. Plans of several batches are one larger
        // nvCOMP call each, so they take the larger batches' counts.
        let (wanted, otherwise) =
            (cfg.effective_batches_in_flight(true), cfg.effective_batches_in_flight(false));
        let buffer_counts =
            if wanted == otherwise || grouped { vec![otherwise] } else { vec![wanted, otherwise] };
        let slot_counts = |buffers: usize| -> Vec<usize> {
            match cfg.gpu_wave_slots {
                0 if cfg.small_batches() && buffers >= SMALL_BATCH_BUFFERS => {
                    AUTO_SLOTS_SMALL.to_vec()
                }
                0 => AUTO_SLOTS.to_vec(),
                n => vec![n],
            }
        };
        for buffers in buffer_counts {
            for slots in slot_counts(buffers) {
                for (i, &chunks) in WAVE_CHUNKS.iter().enumerate() {
                    if picky && chunks < MIN_GROUPED_WAVE_CHUNKS {
                        break;
                    }
                    let t = temp(chunks)?;
                    match size(cfg, t, chunks, slots, buffers, plan_batches) {
                        Ok(s)
                            if s.decompressed >= chunks * (128 << 10)
                                || (!picky && i + 1 == WAVE_CHUNKS.len()) =>
                        {
                            return Ok((s, t));
                        }
                        Ok(_) => {}
                        Err(e) => last_err = Some(e),
                    }
                }
            }
        }
        if plan_batches == 1 {
            break;
        }
        plan_batches /= 2;
    }
    Err(last_err.unwrap_or(Error::Closed))
}

/// The smallest wave a plan of several batches is given: below it, the budgets are
/// better spent on one batch a plan.
const MIN_GROUPED_WAVE_CHUNKS: u64 = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// nvCOMP 6's temp size on the H200: about 3 bytes per byte of chunks × 256 KiB.
    fn nvcomp_like(chunks: u64) -> Result<u64> {
        Ok(chunks * MAX_GPU_STREAM * 3)
    }

    /// `default`'s batches (128 × 128³, f32: 1 GiB), one a plan.
    fn cfg(gpu: u64, pinned: u64, slots: usize) -> Config {
        Config { batches_per_plan: 1, ..grouped(gpu, pinned, slots) }
    }

    /// As [`cfg`], with the automatic batches per plan.
    fn grouped(gpu: u64, pinned: u64, slots: usize) -> Config {
        Config::builder()
            .sample_shape([128, 128, 128])
            .samples_per_batch(128)
            .max_gpu_memory_bytes(gpu)
            .max_pinned_host_bytes(pinned)
            .gpu_wave_slots(slots)
            .build()
            .unwrap_or_default()
    }

    /// Issue 18: the automatic batches per plan fill about `PLAN_GROUP_BYTES` of buffer
    /// where the budgets still give waves of `MIN_GROUPED_WAVE_CHUNKS` or more, with the
    /// larger batches' 3 buffers; fewer batches (down to one) where they do not.
    #[test]
    fn plans_take_several_batches_where_the_budgets_hold_them() {
        let (s, t) =
            choose(&grouped(24 << 30, 8 << 30, 0), &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.plan_batches, s.batch_bytes, s.buffers), (3, 3 << 30, 3), "{s:?}");
        assert!(s.chunks >= MIN_GROUPED_WAVE_CHUNKS && s.decompressed >= s.chunks << 17, "{s:?}");
        assert!(s.device_bytes + s.waves as u64 * t <= 24 << 30, "{s:?}");
        // The library's 4 GiB: no room for 3 × 3 GiB, nor for 3 × 1 GiB and waves of
        // 1024 chunks once halved to 1: one batch a plan, as before.
        let (s, _) =
            choose(&grouped(4 << 30, 1 << 30, 0), &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.plan_batches, s.batch_bytes), (1, 1 << 30), "{s:?}");
        // Small batches (64 MiB): 16 a plan (the most), in 3 buffers and 3 slots.
        let small = Config { sample_shape: vec![32, 64, 64], ..grouped(24 << 30, 8 << 30, 0) };
        let (s, _) = choose(&small, &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.plan_batches, s.buffers, s.waves), (16, 3, 3), "{s:?}");
        assert_eq!(s.batch_bytes, 16 * (64 << 20));
        // A set buffer count counts batches: one a plan; a set plan size is taken.
        let set = Config { batches_in_flight: 4, ..small.clone() };
        assert_eq!(choose(&set, &nvcomp_like).map(|(s, _)| s.plan_batches).ok(), Some(1));
        let set = Config { batches_per_plan: 5, ..set };
        let (s, _) = choose(&set, &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.plan_batches, s.buffers, s.batch_bytes), (5, 4, 5 * (64 << 20)));
    }

    #[test]
    fn fixed_slots_take_the_largest_wave_that_fits_with_a_decoder_each() {
        // The bench's budgets: 24 GiB device, 8 GiB pinned; 3 GiB of batch buffers.
        let c = cfg(24 << 30, 8 << 30, 3);
        let (s, t) = choose(&c, &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.waves, s.chunks), (3, 4096));
        assert_eq!(t, 4096 * MAX_GPU_STREAM * 3);
        assert!(s.device_bytes + 3 * t <= 24 << 30);
        // Every decoder's temp is counted: with three 6 GiB temps, 8192-chunk waves would
        // get under 128 KiB a chunk.
        let big = size(&c, nvcomp_like(8192).unwrap_or(0), 8192, 3, 3, 1)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(big.decompressed < 8192 * (128 << 10), "{big:?}");
        let c = cfg(24 << 30, 8 << 30, 2);
        assert_eq!(
            choose(&c, &nvcomp_like).map(|(s, _)| (s.waves, s.chunks)).ok(),
            Some((2, 8192))
        );
    }

    #[test]
    fn auto_takes_three_slots_where_they_fit_else_two() {
        let c = cfg(24 << 30, 8 << 30, 0);
        let (s, _) = choose(&c, &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.waves, s.chunks), (3, 4096));
        // Pinned memory for three slots' minimum waves (3 x 2 x 8 MiB and more) is not
        // there: two slots.
        let c = cfg(24 << 30, 60 << 20, 0);
        let (s, _) = choose(&c, &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.waves, 2);
        // The library defaults (4 GiB, 1 GiB pinned) still open, with fewer chunks.
        let c = cfg(4 << 30, 1 << 30, 0);
        let (s, t) = choose(&c, &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.waves >= 2 && s.device_bytes + s.waves as u64 * t <= 4 << 30, "{s:?}");
        assert!(s.pinned_bytes <= 1 << 30, "{s:?}");
    }

    /// Issue 18: small batches get 8 slots where the budgets allow, and their 8 buffers
    /// (with a descriptor pair each) are counted.
    #[test]
    fn auto_gives_small_batches_eight_slots_where_they_fit() {
        let small = |gpu: u64, pinned: u64| {
            Config::builder()
                .sample_shape([32, 64, 64])
                .samples_per_batch(128)
                .max_gpu_memory_bytes(gpu)
                .max_pinned_host_bytes(pinned)
                .batches_per_plan(1)
                .build()
                .unwrap_or_default()
        };
        let c = small(24 << 30, 8 << 30);
        let (s, t) = choose(&c, &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.waves, 8);
        assert_eq!(s.batch_bytes, 64 << 20);
        assert_eq!(s.buffers, 8);
        assert!(s.device_bytes >= 8 * ((64 << 20) + END_DESC_BYTES), "{s:?}");
        assert!(s.device_bytes + 8 * t <= 24 << 30, "{s:?}");
        assert!(s.pinned_bytes >= 8 * END_DESC_BYTES && s.pinned_bytes <= 8 << 30, "{s:?}");
        // The library defaults (4 GiB, 1 GiB pinned) still take 8 slots, in budget.
        let c = small(4 << 30, 1 << 30);
        let (s, t) = choose(&c, &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.waves, 8);
        assert!(s.device_bytes + 8 * t <= 4 << 30 && s.pinned_bytes <= 1 << 30, "{s:?}");
        // Too little pinned memory for 8 slots' minimum waves: 3 slots, 8 buffers.
        let c = small(4 << 30, 120 << 20);
        let (s, _) = choose(&c, &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.waves, s.buffers), (3, 8));
        // Too little device memory for 8 buffers: 3 buffers, as before the automatic
        // count (never a budget error where 3 fit).
        let c = small(400 << 20, 1 << 30);
        let (s, _) = choose(&c, &|_| Ok(0)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.buffers, 3, "{s:?}");
        // A set count is kept, or refused.
        let mut c = small(24 << 30, 8 << 30);
        c.batches_in_flight = 5;
        let (s, _) = choose(&c, &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.buffers, 5);
    }

    #[test]
    fn the_chunk_cache_is_counted_in_the_gpu_budget() {
        let plain = cfg(24 << 30, 8 << 30, 3);
        let (s0, _) = choose(&plain, &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        let mut cached = plain.clone();
        cached.chunk_cache_bytes = 4 << 30;
        let (s1, t) = choose(&cached, &nvcomp_like).unwrap_or_else(|e| panic!("{e}"));
        assert!(s1.device_bytes >= 4 << 30 && s1.device_bytes + 3 * t <= 24 << 30, "{s1:?}");
        assert!(s1.staging <= s0.staging);
        // A cache as large as the whole budget leaves no room.
        cached.chunk_cache_bytes = 24 << 30;
        match choose(&cached, &nvcomp_like) {
            Err(Error::Budget { knob, needed, .. }) => {
                assert_eq!(knob, "max_gpu_memory_bytes");
                assert!(needed > 24 << 30);
            }
            other => panic!("expected Budget, got {other:?}"),
        }
    }

    #[test]
    fn too_small_budgets_name_the_knob() {
        let c = cfg(1 << 30, 1 << 30, 0);
        match choose(&c, &nvcomp_like) {
            Err(Error::Budget { knob, .. }) => assert_eq!(knob, "max_gpu_memory_bytes"),
            other => panic!("expected Budget, got {other:?}"),
        }
    }
}
