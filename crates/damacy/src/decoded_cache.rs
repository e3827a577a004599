//! The host engine's decoded-chunk cache (`Config::chunk_cache_bytes`): the `chunk-cache`
//! crate keyed by a chunk's stored identity, and the planner probe that turns cached
//! chunks into [`planner::ChunkSource::Cached`] hits pinned for the batch.
//!
//! Staleness: a key is the object's full key with the chunk's offset and length in it,
//! as the metadata damacy holds says (the shard index entry, or the whole object of an
//! unsharded array). A shard rewritten with different index entries misses; a rewrite that
//! keeps every entry's offset and length (same sizes, for example uncompressed chunks) is
//! indistinguishable without object versions, which the store does not report yet.

use std::sync::Arc;

use std::collections::HashMap;

use chunk_cache::{ChunkCache, Claim, Lookup, Pin, Policy};
use planner::{ChunkProbe, StoredChunk};

use crate::config::{ChunkCachePolicy, Config};

/// A chunk's stored identity: object key, offset, stored length.
pub(crate) type ChunkKey = (Arc<str>, u64, u64);

/// Decoded chunks in host memory (source dtype, the array's C order).
pub(crate) type HostChunkCache = ChunkCache<ChunkKey, Box<[u8]>>;

/// A cached chunk pinned for one batch.
pub(crate) type HostPin = Pin<ChunkKey, Box<[u8]>>;

/// A missing chunk this batch decodes for the cache (and for later batches waiting).
pub(crate) type HostClaim = Claim<ChunkKey, Box<[u8]>>;

/// A batch's claims, by key.
pub(crate) type Claims = HashMap<ChunkKey, HostClaim>;

/// The cache `cfg` asks for, if any.
pub(crate) fn from_config(cfg: &Config) -> Option<HostChunkCache> {
    let policy = match cfg.chunk_cache_policy {
        ChunkCachePolicy::Lru => Policy::Lru,
        ChunkCachePolicy::Clock => Policy::Clock,
    };
    (cfg.chunk_cache_bytes > 0).then(|| ChunkCache::new(cfg.chunk_cache_bytes, policy))
}

/// The key of a stored chunk.
pub(crate) fn key(file: &Arc<str>, offset: u64, nbytes: u64) -> ChunkKey {
    (Arc::clone(file), offset, nbytes)
}

/// The planner's view of the cache for one batch: each hit is pinned and numbered in
/// `pins` (the plan's `Cached { hit }` indexes it); each miss with room is claimed in
/// `claims`, for the batch's read job to fill once it decoded the chunk. A hit may be a
/// chunk an earlier batch in flight claimed: its job waits for that batch's decode (the
/// earlier batch's jobs were queued first, so it never waits behind this one).
pub(crate) struct HostProbe<'a> {
    pub cache: &'a HostChunkCache,
    pub pins: Vec<HostPin>,
    pub claims: Claims,
}

impl ChunkProbe for HostProbe<'_> {
    fn probe(&mut self, c: &StoredChunk<'_>) -> Option<u32> {
        let k = key(c.key, c.offset, c.nbytes);
        match self.cache.lookup_or_claim(&k, c.decompressed) {
            Lookup::Hit(pin) => {
                // A value of another size cannot be this chunk's decoding: read it.
                if pin.ready().is_some_and(|v| v.len() as u64 != c.decompressed) {
                    return None;
                }
                let hit = u32::try_from(self.pins.len()).ok()?;
                self.pins.push(pin);
                Some(hit)
            }
            Lookup::Claimed(claim) => {
                self.claims.insert(k, claim);
                None
            }
            Lookup::Miss => None,
        }
    }
}
