//! Resolving a sample's metadata: the array's `zarr.json`, and the state of every shard
//! its box touches (index read, absent, or a whole unsharded chunk object).
//!
//! Results are cached (arrays by uri, shard states by key) with a bounded size; a full
//! shard cache is cleared wholesale, which is correct because entries are immutable
//! `Arc`s that batches already planned keep alive.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use planner::{ArrayEntry, ShardState};
use zarr::{Aabb, ArrayMetadata, ArrayToBytes, ShardIndex};

use crate::error::SampleError;

/// Metadata and shard states of one sample.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub entry: Arc<ArrayEntry>,
    pub shards: Vec<ShardState>,
}

/// A cache of resolved array and shard metadata over a store.
#[derive(Debug)]
pub(crate) struct Resolver {
    arrays: HashMap<PathBuf, Arc<ArrayEntry>>,
    shards: HashMap<Arc<str>, ShardState>,
    array_capacity: usize,
    shard_capacity: usize,
    pub hits: u64,
    pub misses: u64,
}

impl Resolver {
    pub(crate) fn new(array_capacity: usize, shard_capacity: usize) -> Self {
        Self {
            arrays: HashMap::new(),
            shards: HashMap::new(),
            array_capacity,
            shard_capacity,
            hits: 0,
            misses: 0,
        }
    }

    /// The array entry for `uri`, reading and parsing its `zarr.json` on a miss.
    pub(crate) fn array(
        &mut self,
        store: &dyn store::Store,
        uri: &Path,
    ) -> Result<Arc<ArrayEntry>, SampleError> {
        if let Some(e) = self.arrays.get(uri) {
            self.hits += 1;
            return Ok(Arc::clone(e));
        }
        self.misses += 1;
        let meta_path = uri.join("zarr.json");
        let key = meta_path.to_string_lossy();
        let bytes = match store.read_all(&key) {
            Ok(b) => b,
            Err(store::Error::NotFound { .. }) => {
                return Err(SampleError::ArrayNotFound { path: meta_path });
            }
            Err(e) => return Err(SampleError::Store(e)),
        };
        let meta = ArrayMetadata::parse(&bytes)
            .map_err(|source| SampleError::Metadata { path: meta_path.clone(), source })?;
        if let ArrayToBytes::Sharding(_) = meta.codecs.array_to_bytes {
            // A transpose before the shard, or a compressor over the whole shard, would
            // need the whole shard decoded for any crop: refuse rather than mis-read.
            if !meta.codecs.array_to_array.is_empty() || !meta.codecs.bytes_to_bytes.is_empty() {
                return Err(SampleError::Unsupported {
                    path: meta_path,
                    what: "codecs around sharding_indexed (put transpose and compressors inside the sharding codec)",
                });
            }
        }
        let entry = ArrayEntry::new(uri.to_string_lossy().as_ref(), Arc::new(meta))
            .map_err(|e| SampleError::Plan(Box::new(e)))?;
        let entry = Arc::new(entry);
        if self.arrays.len() >= self.array_capacity {
            self.arrays.clear();
        }
        self.arrays.insert(uri.to_path_buf(), Arc::clone(&entry));
        Ok(entry)
    }

    /// Resolves one sample.
    pub(crate) fn resolve(
        &mut self,
        store: &dyn store::Store,
        uri: &Path,
        aabb: &Aabb,
        max_shards: usize,
    ) -> Result<Resolved, SampleError> {
        let entry = self.array(store, uri)?;
        let hits = entry.geometry.intersect(aabb)?;
        if hits.len() > max_shards {
            return Err(SampleError::TooManyShards {
                shards: hits.len() as u64,
                limit: max_shards as u64,
            });
        }
        let mut shards = Vec::with_capacity(hits.len());
        for hit in &hits {
            let key = entry.file_key(&hit.shard);
            if let Some(s) = self.shards.get(&key) {
                self.hits += 1;
                shards.push(s.clone());
                continue;
            }
            self.misses += 1;
            let state = shard_state(store, &entry, &key)?;
            if self.shards.len() >= self.shard_capacity {
                self.shards.clear();
            }
            self.shards.insert(key, state.clone());
            shards.push(state);
        }
        Ok(Resolved { entry, shards })
    }
}

/// Reads what is known about one shard (or unsharded chunk object).
fn shard_state(
    store: &dyn store::Store,
    entry: &ArrayEntry,
    key: &str,
) -> Result<ShardState, SampleError> {
    let Some(len) = store.stat(key)? else { return Ok(ShardState::Absent) };
    let ArrayToBytes::Sharding(sharding) = &entry.meta.codecs.array_to_bytes else {
        return Ok(ShardState::Whole { len });
    };
    let n = entry.geometry.num_chunks_per_shard()?;
    let at = |source| SampleError::Metadata { path: PathBuf::from(key), source };
    let range = ShardIndex::byte_range(sharding, n, len).map_err(at)?;
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    store.read_exact(key, range.start, &mut buf)?;
    let index = ShardIndex::decode(sharding, n, len, &buf).map_err(at)?;
    Ok(ShardState::Present(Arc::new(index)))
}
