//! The CUDA engine's side of the decoded-chunk cache (`Config::chunk_cache_bytes`): its
//! entries are blocks of one device allocation (`core::CacheMem`).
//!
//! - Hits: the planner plans them as `ChunkSource::Cached`; their placements are
//!   assembled on `compute` at the batch's end (`submit::end_batch`), straight from the
//!   pinned entries' blocks. The batch's pins are held by its [`BatchCache`], which the
//!   harvest thread drops only after the batch's ready event completed, so no block a
//!   batch in flight reads is evicted (and reused) before its assembly ran.
//! - Misses with room are claimed at planning. The wave that decodes a claimed chunk
//!   allocates a block from the slab and copies the chunk's decoded bytes from its arena
//!   into it on the slot's decode stream (`memcpy_batch`, after the decode); the harvest
//!   thread fills the claims once the batch completed without any sample error, and drops
//!   them (and their blocks) otherwise, so a failed decode is never cached.
//! - Only chunks whose arena bytes are the decoded chunk are cached: zstd and
//!   CPU-decoded chunks; blosc chunks still shuffled in the arena (unshuffled by the
//!   assembly) are not.

use std::sync::{Arc, Mutex};

use kernels::{CopyRange, ShuffleSpec};
use planner::{ChunkSource, Wave};

use super::core::{Engine, WaveBufs};
use super::device::Device;
use super::stage::{ChunkState, StageMem, WaveState, WaveWork};
use crate::decoded_cache::{self, CacheClaim, CachePin, Claims, Decoded, DeviceChunk};
use crate::engine::lock;

/// One batch's share of the cache: its pinned hits, its claims, and the blocks its waves
/// copied claimed chunks into.
#[derive(Debug, Default)]
pub(crate) struct BatchCache {
    /// Hits pinned at planning (`ChunkSource::Cached { hit }` indexes them).
    pub(super) hits: Vec<CachePin>,
    /// Claims not taken by a wave yet.
    claims: Mutex<Claims>,
    /// Claims whose chunk a wave copied into a block, to fill when the batch succeeded.
    copied: Mutex<Vec<(CacheClaim, DeviceChunk)>>,
}

impl BatchCache {
    pub(crate) fn new(hits: Vec<CachePin>, claims: Claims) -> Self {
        Self { hits, claims: Mutex::new(claims), copied: Mutex::new(Vec::new()) }
    }

    /// Whether the batch has nothing to do with the cache.
    pub(super) fn is_empty(&self) -> bool {
        self.hits.is_empty() && lock(&self.claims).is_empty()
    }

    /// The device address of hit `hit`'s block, if it is a filled device entry of the
    /// expected length.
    pub(super) fn hit_ptr(&self, hit: u32, len: u64) -> Option<u64> {
        let v = self.hits.get(hit as usize)?.ready()?;
        (v.len() == len).then_some(())?;
        v.device_ptr()
    }

    /// After the batch's device work completed (its ready event waited for): fills the
    /// claims whose chunks were copied if `ok` (no failure, no sample error), else drops
    /// them with their blocks. Claims no wave took are dropped either way (abandoned).
    pub(super) fn settle(&self, ok: bool) {
        let copied = std::mem::take(&mut *lock(&self.copied));
        if ok {
            for (claim, chunk) in copied {
                claim.fill(Decoded::Device(chunk));
            }
        }
        lock(&self.claims).clear();
    }
}

impl<D: Device> Engine<D> {
    /// Writes the copy ranges of wave `k`'s claimed, cacheable chunks (arena → a new
    /// block each) into the slot's pinned ranges and moves their claims to the batch's
    /// copied list; returns how many. A chunk whose block cannot be allocated (the slab is
    /// in pieces) is not cached: its claim is dropped.
    pub(super) fn stage_cache_copies(
        &self,
        work: &WaveWork<D::PinMem>,
        wave: &Wave,
        state: &WaveState,
        w: &WaveBufs<D>,
    ) -> usize {
        let (Some(mem), Some(cache)) = (&self.cache_mem, &work.ctx.cache) else { return 0 };
        let plan = &work.ctx.plan;
        let mut claims = lock(&cache.claims);
        if claims.is_empty() {
            return 0;
        }
        let ar0 = D::dev_range(&w.arena).ptr();
        let mut ranges = Vec::new();
        let mut copied = Vec::new();
        for (i, cs) in state.chunk_state.iter().enumerate() {
            let cacheable = match cs {
                ChunkState::Cpu => true,
                ChunkState::Gpu(spec) => *spec == ShuffleSpec::default(),
                ChunkState::Failed => false,
            };
            let (true, Some(reg), Some(chunk)) = (
                cacheable,
                work.regions.get(i).copied().flatten(),
                plan.chunks.get(wave.chunks.start + i),
            ) else {
                continue;
            };
            let ChunkSource::Copy { read, offset_in_read, compressed_len, decompressed_len } =
                chunk.source
            else {
                continue;
            };
            let Some(file) = plan
                .reads
                .get(read)
                .and_then(|op| plan.files.get(op.file).map(|f| (f, op.offset + offset_in_read)))
            else {
                continue;
            };
            let key = decoded_cache::key(&file.0.key, file.1, compressed_len);
            let Some(claim) = claims.remove(&key) else { continue };
            let Some(block) = mem.slab.alloc(decompressed_len) else { continue };
            let ptr = mem.base + block.offset();
            ranges.push(CopyRange { src: ar0 + reg.arena, dst: ptr, len: decompressed_len });
            copied.push((claim, DeviceChunk { _block: block, ptr, len: decompressed_len }));
        }
        drop(claims);
        let bytes: &[u8] = bytemuck::cast_slice(&ranges);
        let n = ranges.len();
        if bytes.len() > w.cache_ranges_host.len() {
            // Sized for a range per chunk of a wave: cannot happen; nothing is cached.
            return 0;
        }
        // SAFETY: the slot is leased by the submit thread and its previous device use
        // finished before it was released (harvested after `done`); in bounds (checked).
        unsafe {
            std::slice::from_raw_parts_mut(w.cache_ranges_host.as_ptr(), bytes.len())
                .copy_from_slice(bytes);
        }
        lock(&cache.copied).extend(copied);
        n
    }
}

/// The batch cache of a planned batch, if it has anything to do with the cache.
pub(super) fn batch_cache(hits: Vec<CachePin>, claims: Claims) -> Option<Arc<BatchCache>> {
    let c = BatchCache::new(hits, claims);
    (!c.is_empty()).then(|| Arc::new(c))
}
