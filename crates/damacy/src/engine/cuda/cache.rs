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

use crate::decoded_cache::{CacheClaim, CachePin, ChunkKey, Claims, Decoded, DeviceChunk};
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

    /// Whether the batch still holds claims no wave took.
    pub(super) fn has_claims(&self) -> bool {
        !lock(&self.claims).is_empty()
    }

    /// Takes the claim of `key`, for the wave that decodes that chunk.
    pub(super) fn take_claim(&self, key: &ChunkKey) -> Option<CacheClaim> {
        lock(&self.claims).remove(key)
    }

    /// Records claims whose chunks a wave's device work copies into their blocks.
    pub(super) fn add_copied(&self, copied: Vec<(CacheClaim, DeviceChunk)>) {
        lock(&self.copied).extend(copied);
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

impl Drop for BatchCache {
    fn drop(&mut self) {
        // One lock for the batch's thousands of hits, not one each: the preparers probe
        // the same cache meanwhile.
        chunk_cache::Pin::release_all(std::mem::take(&mut self.hits));
    }
}

/// The batch cache of a planned batch, if it has anything to do with the cache.
pub(super) fn batch_cache(hits: Vec<CachePin>, claims: Claims) -> Option<Arc<BatchCache>> {
    let c = BatchCache::new(hits, claims);
    (!c.is_empty()).then(|| Arc::new(c))
}
