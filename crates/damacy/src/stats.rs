//! Pipeline counters: per-stage cumulative time and bytes, cache hits and misses, reads
//! issued, and the amplification ratios a bench reports.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A snapshot of a pipeline's counters since creation or the last `reset_stats`.
///
/// Counts of delivered data (batches, samples, voxels, bytes read and decoded for them,
/// chunks, reads) grow when `pop` hands a batch out, so a timed window counts exactly the
/// batches popped in it; stage times grow as the stages run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub batches: u64,
    pub samples: u64,
    /// Output tensor bytes handed to the caller.
    pub bytes_delivered: u64,
    /// Voxels placed into batches (fills included).
    pub voxels_delivered: u64,
    /// Voxels × source element size: how a peer reading the same crops counts bytes.
    pub source_bytes_delivered: u64,
    /// Bytes read from storage for chunk data (metadata reads are in `store_bytes`).
    pub bytes_read: u64,
    /// Bytes produced by decoding chunks.
    pub bytes_decoded: u64,
    pub chunks_decoded: u64,
    pub chunks_filled: u64,
    pub reads_issued: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Cumulative nanoseconds per stage (summed over threads).
    pub plan_ns: u64,
    pub io_ns: u64,
    pub decode_ns: u64,
    pub assemble_ns: u64,
    pub pop_wait_ns: u64,
    /// CUDA engine: host time waiting for the device to finish waves.
    pub gpu_wait_ns: u64,
    /// CUDA engine: host time enqueueing copies, decodes and assembles.
    pub gpu_submit_ns: u64,
    /// CUDA engine: submit-thread time waiting for the workers to read and stage a wave
    /// (the CPU side is the bottleneck while this grows).
    pub wave_jobs_wait_ns: u64,
    /// CUDA engine: submit-thread time waiting for a free wave slot (the device side is
    /// the bottleneck while this grows).
    pub wave_slot_wait_ns: u64,
    /// CUDA engine: bytes copied host → device (staged frames and CPU-decoded chunks).
    pub h2d_bytes: u64,
    /// CUDA engine with GPUDirect Storage (`Config::gds`): chunks read from files straight
    /// into device staging, and their compressed bytes.
    pub gds_reads: u64,
    pub gds_bytes: u64,
    /// GDS reads that failed (or files cuFile would not register): their read ops went
    /// through host memory instead.
    pub gds_fallbacks: u64,
    /// GDS-read frames that failed the device frame check: decoded on the CPU from their
    /// device bytes, as frames failing the host check are (an error names the chunk if
    /// they do not decode).
    pub gds_rejected: u64,
    /// CUDA engine: descriptor pieces copied from pageable memory, which lets the driver
    /// wait for the stream to drain first. Only fills at `pop` (`OnError::Fill`) and
    /// pieces past a pinned descriptor buffer's room (a wave's or a batch's 4 MiB) go
    /// that way; in steady state it stays 0.
    pub gpu_pageable_uploads: u64,
    /// All operations and bytes of the underlying store (metadata included).
    pub store_ops: u64,
    pub store_bytes: u64,
    /// CUDA engine: device memory allocated at construction (0 on the host engine).
    pub gpu_bytes_committed: u64,
    /// CUDA engine: most chunks per wave (the batch size of each nvCOMP call); 0 on the
    /// host engine.
    pub gpu_wave_chunks: u64,
    /// CUDA engine: wave slots (`Config::gpu_wave_slots`, or as sized): waves in flight,
    /// each decoding on its own stream; 0 on the host engine.
    pub gpu_wave_slots: u64,
    /// Threads preparing batches (`Config::prepare_threads`, resolved).
    pub prepare_threads: u64,
    /// Batch buffers (`Config::batches_in_flight`, resolved for the engine running).
    pub batches_in_flight: u64,
    /// Most batches one plan covers (`Config::batches_per_plan`, resolved for the engine
    /// running; automatic under `Native`, what its buffer holds of 1-byte elements:
    /// `Config::plan_batches_of`).
    pub batches_per_plan: u64,
    /// Plans prepared (each of one batch or more): `batches / plans` is how many batches
    /// a plan covered on average (counted at planning, unlike `batches`).
    pub plans: u64,
    /// CUDA engine: per mille of the GPU-decodable chunks the CPU workers decode
    /// instead (`DAMACY_CPU_SHARE`, default 0).
    pub cpu_decode_share_permille: u64,
    /// The decoded-chunk cache (`Config::chunk_cache_bytes`); all zero without one.
    pub chunk_cache: ChunkCacheStats,
}

/// Counters of the decoded-chunk cache since the last reset (`bytes`, `entries` and
/// `capacity_bytes` are current values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChunkCacheStats {
    pub capacity_bytes: u64,
    /// Distinct stored chunks of planned batches found decoded in the cache.
    pub hits: u64,
    /// Distinct stored chunks of planned batches that had to be read and decoded.
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
    /// Decoded chunks not cached: every entry that could make room was pinned by a batch
    /// in flight, or the chunk is larger than the cache.
    pub rejected: u64,
    /// Chunks an earlier batch in flight was decoding: waited for instead of decoded
    /// again (counted among the hits).
    pub joined: u64,
    /// Chunks claimed for decoding whose read or decode failed (their waiters fail too).
    pub abandoned: u64,
    pub bytes: u64,
    pub entries: u64,
}

impl ChunkCacheStats {
    /// Hits over lookups (0 before the first lookup).
    pub fn hit_rate(&self) -> f64 {
        ratio(self.hits, self.hits + self.misses)
    }
}

impl Stats {
    /// Bytes read per source byte delivered.
    pub fn read_amplification(&self) -> f64 {
        ratio(self.bytes_read, self.source_bytes_delivered)
    }

    /// Bytes decoded per source byte delivered: the decode work a crop costs.
    pub fn decode_amplification(&self) -> f64 {
        ratio(self.bytes_decoded, self.source_bytes_delivered)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

macro_rules! counters {
    ($($f:ident),* $(,)?) => {
        /// Live counters (atomics) behind [`Stats`].
        #[derive(Debug)]
        pub(crate) struct StatCounters {
            $(pub(crate) $f: AtomicU64,)*
            /// The store's totals at the last reset (`u64::MAX` = take them at the next
            /// snapshot), since a store's own counters cannot be reset.
            store_base_ops: AtomicU64,
            store_base_bytes: AtomicU64,
            /// The threads' timeline, when started (`Pipeline::start_trace`).
            pub(crate) trace: crate::trace::Tracer,
        }

        impl Default for StatCounters {
            fn default() -> Self {
                Self {
                    $($f: AtomicU64::new(0),)*
                    store_base_ops: AtomicU64::new(0),
                    store_base_bytes: AtomicU64::new(0),
                    trace: crate::trace::Tracer::default(),
                }
            }
        }

        impl StatCounters {
            pub(crate) fn reset(&self) {
                $(self.$f.store(0, Ordering::Relaxed);)*
                self.store_base_ops.store(u64::MAX, Ordering::Relaxed);
            }

            pub(crate) fn snapshot(&self, store: &store::StoreStats) -> Stats {
                let (ops, bytes) = store_totals(store);
                if self.store_base_ops.load(Ordering::Relaxed) == u64::MAX {
                    self.store_base_ops.store(ops, Ordering::Relaxed);
                    self.store_base_bytes.store(bytes, Ordering::Relaxed);
                }
                Stats {
                    $($f: self.$f.load(Ordering::Relaxed),)*
                    store_ops: ops.saturating_sub(self.store_base_ops.load(Ordering::Relaxed)),
                    store_bytes: bytes.saturating_sub(self.store_base_bytes.load(Ordering::Relaxed)),
                    // Cache and GPU-memory figures live in the prefetcher and the engine;
                    // `Pipeline::stats` fills them in.
                    ..Stats::default()
                }
            }
        }
    };
}

counters!(
    batches,
    plans,
    samples,
    bytes_delivered,
    voxels_delivered,
    source_bytes_delivered,
    bytes_read,
    bytes_decoded,
    chunks_decoded,
    chunks_filled,
    reads_issued,
    plan_ns,
    io_ns,
    decode_ns,
    assemble_ns,
    pop_wait_ns,
    gpu_wait_ns,
    gpu_submit_ns,
    wave_jobs_wait_ns,
    wave_slot_wait_ns,
    h2d_bytes,
    gds_reads,
    gds_bytes,
    gds_fallbacks,
    gds_rejected,
    gpu_pageable_uploads,
);

impl StatCounters {
    /// Adds a planned batch's byte counts.
    pub(crate) fn add_plan(&self, s: &planner::PlanStats, reads: u64) {
        self.bytes_read.fetch_add(s.bytes_read, Ordering::Relaxed);
        self.bytes_decoded.fetch_add(s.decompressed_bytes, Ordering::Relaxed);
        self.voxels_delivered.fetch_add(s.voxels_delivered, Ordering::Relaxed);
        self.source_bytes_delivered.fetch_add(s.bytes_delivered, Ordering::Relaxed);
        self.chunks_decoded.fetch_add(s.copy_chunks, Ordering::Relaxed);
        self.chunks_filled.fetch_add(s.fill_chunks, Ordering::Relaxed);
        self.reads_issued.fetch_add(reads, Ordering::Relaxed);
    }

    /// Counts a batch of `samples` samples and `bytes` bytes handed to the caller.
    pub(crate) fn count_delivered(&self, samples: u64, bytes: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.samples.fetch_add(samples, Ordering::Relaxed);
        self.bytes_delivered.fetch_add(bytes, Ordering::Relaxed);
    }
}

fn store_totals(s: &store::StoreStats) -> (u64, u64) {
    (s.ops.iter().sum(), s.bytes_read)
}
