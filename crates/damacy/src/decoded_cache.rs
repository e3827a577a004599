//! The decoded-chunk cache (`Config::chunk_cache_bytes`): the `chunk-cache` crate keyed by
//! a chunk's stored identity, holding decoded chunks in host memory (host engine) or in
//! blocks of one device allocation (CUDA engine), and the planner probe that turns cached
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
use planner::{BatchPlan, ChunkPlan, ChunkProbe, ChunkSource, StoredChunk};

use crate::config::{ChunkCachePolicy, Config};

/// A chunk's stored identity: object key, offset, stored length.
pub(crate) type ChunkKey = (Arc<str>, u64, u64);

/// A decoded chunk (source dtype, the array's C order): in host memory for the host
/// engine, in a block of the device cache's allocation for the CUDA engine.
#[derive(Debug)]
pub(crate) enum Decoded {
    Host(Box<[u8]>),
    Device(DeviceChunk),
}

/// A decoded chunk in device memory: a block of the CUDA engine's cache allocation, at
/// device address `ptr`, `len` bytes of it the chunk's. The block goes back to the slab
/// when the value is dropped, which the cache does only once no batch pins it (and the
/// CUDA engine drops its pins only after the batch's assembly completed on the device).
#[derive(Debug)]
pub(crate) struct DeviceChunk {
    /// Held for its drop: the block returns to the slab with the value.
    pub _block: chunk_cache::slab::Block,
    pub ptr: u64,
    pub len: u64,
}

impl Decoded {
    /// The decoded bytes' length.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Decoded::Host(b) => b.len() as u64,
            Decoded::Device(d) => d.len,
        }
    }

    /// The bytes, for a host value.
    pub(crate) fn host(&self) -> Option<&[u8]> {
        match self {
            Decoded::Host(b) => Some(b),
            Decoded::Device(_) => None,
        }
    }

    /// The device address, for a device value.
    pub(crate) fn device_ptr(&self) -> Option<u64> {
        match self {
            Decoded::Host(_) => None,
            Decoded::Device(d) => Some(d.ptr),
        }
    }
}

/// The decoded-chunk cache of a pipeline.
pub(crate) type DecodedCache = ChunkCache<ChunkKey, Decoded>;

/// A cached chunk pinned for one batch.
pub(crate) type CachePin = Pin<ChunkKey, Decoded>;

/// A missing chunk this batch decodes for the cache (and for later batches waiting).
pub(crate) type CacheClaim = Claim<ChunkKey, Decoded>;

/// A batch's claims, by key.
pub(crate) type Claims = HashMap<ChunkKey, CacheClaim>;

/// The cache `cfg` asks for, if any.
pub(crate) fn from_config(cfg: &Config) -> Option<DecodedCache> {
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

/// The key of a chunk the plan reads from storage (`ChunkSource::Copy`): its read op's
/// object, the chunk's offset in it and its stored length; `None` for any other source
/// (or indices past the plan's tables).
pub(crate) fn copy_key(plan: &BatchPlan, chunk: &ChunkPlan) -> Option<ChunkKey> {
    let ChunkSource::Copy { read, offset_in_read, compressed_len, .. } = chunk.source else {
        return None;
    };
    let op = plan.reads.get(read)?;
    let file = plan.files.get(op.file)?;
    Some(key(&file.key, op.offset + offset_in_read, compressed_len))
}

/// How a pipeline's batches use the cache: which engine's values, and whether a batch may
/// wait for a chunk another batch is decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheUse {
    /// CUDA engine: values are device blocks, and a claim reserves the entry's size
    /// rounded to the blocks' alignment, so that the cache's budget bounds the slab.
    pub device: bool,
    /// Only a filled entry is a hit; one still pending under another batch's claim is read
    /// and decoded again. The CUDA engine always probes so (waiting would tie this batch's
    /// device work to another's), and so does every engine whose batches are prepared on
    /// more than one thread (`Config::prepare_threads`): a later batch, prepared first,
    /// may hold the claim, and an earlier batch waiting for a later one could wait
    /// forever behind it.
    pub ready_only: bool,
}

/// The planner's view of the cache for one batch: each hit is pinned and numbered in
/// `pins` (the plan's `Cached { hit }` indexes it); each miss with room is claimed in
/// `claims`, for the batch's read job to fill once it decoded the chunk.
///
/// Unless `ready_only`, a hit may be a chunk an earlier batch in flight claimed: the host
/// engine's job waits for that batch's decode (batches prepared on one thread are
/// dispatched in order, so the earlier batch's jobs were queued first and it never waits
/// behind this one).
///
/// The batch's lookups share one hold of the cache's lock (`chunk_cache::Probe`, let go
/// every few dozen lookups): with thousands of chunk uses per batch and several
/// preparers, a lock per lookup made the lock the preparers' bound. The planner makes
/// them back to back after its walk and then calls `done`, which lets the lock go, so the
/// lock is never held across the planner's own work.
pub(crate) struct CacheProbe<'a> {
    /// Declared first: dropped (the lock let go) before a failed plan's pins and claims,
    /// whose drops take the lock.
    pub probe: chunk_cache::Probe<'a, ChunkKey, Decoded>,
    pub mode: CacheUse,
    pub pins: Vec<CachePin>,
    pub claims: Claims,
}

impl<'a> CacheProbe<'a> {
    pub(crate) fn new(cache: &'a DecodedCache, mode: CacheUse) -> Self {
        Self { probe: cache.probe(), mode, pins: Vec::new(), claims: HashMap::new() }
    }
}

/// Alignment of the CUDA engine's cache blocks (`cuMemAlloc`'s, and every kernel's).
pub(crate) const DEVICE_BLOCK_ALIGN: u64 = 256;

impl ChunkProbe for CacheProbe<'_> {
    fn probe(&mut self, c: &StoredChunk<'_>) -> Option<u32> {
        let k = key(c.key, c.offset, c.nbytes);
        let bytes = if self.mode.device {
            c.decompressed.max(1).checked_next_multiple_of(DEVICE_BLOCK_ALIGN)?
        } else {
            c.decompressed
        };
        let lookup = if self.mode.ready_only {
            self.probe.lookup_ready_or_claim(&k, bytes)
        } else {
            self.probe.lookup_or_claim(&k, bytes)
        };
        match lookup {
            Lookup::Hit(pin) => {
                // A value of another size cannot be this chunk's decoding: read it.
                if pin.ready().is_some_and(|v| v.len() != c.decompressed) {
                    self.probe.release(pin);
                    return None;
                }
                // An entry whose claim was abandoned has no value to wait for here.
                if self.mode.ready_only && pin.ready().is_none() {
                    self.probe.release(pin);
                    return None;
                }
                // A pin is never dropped plainly here: the probe holds the cache's lock.
                let Ok(hit) = u32::try_from(self.pins.len()) else {
                    self.probe.release(pin);
                    return None;
                };
                self.pins.push(pin);
                Some(hit)
            }
            Lookup::Claimed(claim) => {
                // A key is claimed once per batch: a second lookup of a claimed key is a
                // (pending) hit. Replacing a claim would drop it under the probe's lock.
                let replaced = self.claims.insert(k, claim);
                debug_assert!(replaced.is_none(), "a key claimed twice by one batch");
                if let Some(old) = replaced {
                    // Cannot happen (above); if it did, leaking the old claim is better
                    // than dropping it here, under the lock its drop takes: a deadlock.
                    std::mem::forget(old);
                }
                None
            }
            Lookup::Miss => None,
        }
    }

    fn done(&mut self) {
        self.probe.unlock();
    }
}
