//! What the planner is given: the batch's arrays, its samples with their resolved shard
//! states, and the limits the plan must respect.
//!
//! The shapes mirror what `prefetch-cache` resolves for a sample (array metadata, one state
//! per touched shard, an optional blosc layout), so the facade maps its ready samples onto
//! them without computation.

use std::sync::Arc;

use zarr::{ArrayGeometry, ArrayMetadata, ArrayToBytes, CodecChain, ShardIndex};

use crate::error::{Error, Result};

/// Index of an array in the batch's array table (`&[ArrayEntry]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArrayId(pub u32);

impl ArrayId {
    /// The table index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One array as the planner sees it.
///
/// `L` is the blosc layout the GPU path needs to fan a chunk out into streams. The planner
/// only carries it through (plans refer to the array by [`ArrayId`]), so it is generic and
/// defaults to `()`; the facade instantiates it with `zarr::blosc::BloscLayout`.
#[derive(Debug, Clone)]
pub struct ArrayEntry<L = ()> {
    /// The array's location; file keys are `uri/<chunk key>` (no `/` is added when the uri
    /// is empty or already ends with one).
    pub uri: Arc<str>,
    pub meta: Arc<ArrayMetadata>,
    pub geometry: Arc<ArrayGeometry>,
    /// The array's blosc layout, `None` for non-blosc arrays.
    pub layout: Option<Arc<L>>,
}

impl<L> ArrayEntry<L> {
    /// An entry from a uri and parsed metadata; the geometry is derived from the metadata.
    ///
    /// # Errors
    /// `Geometry` (with `sample` 0, as no sample is involved yet) when the metadata's grid
    /// is invalid.
    pub fn new(uri: impl Into<Arc<str>>, meta: Arc<ArrayMetadata>) -> Result<Self> {
        let uri = uri.into();
        let geometry = ArrayGeometry::new(&meta).map_err(|source| Error::Geometry {
            sample: 0,
            uri: uri.clone(),
            source,
        })?;
        Ok(Self { uri, meta, geometry: Arc::new(geometry), layout: None })
    }

    /// The codec chain that decodes one planned chunk: the inner chain of a sharded array,
    /// the array's own chain otherwise.
    pub fn chunk_codecs(&self) -> &CodecChain {
        match &self.meta.codecs.array_to_bytes {
            ArrayToBytes::Sharding(s) => &s.codecs,
            ArrayToBytes::Bytes { .. } => &self.meta.codecs,
        }
    }

    /// The key of the object holding the outer-grid cell `coords` (a shard, or an
    /// unsharded chunk).
    pub fn file_key(&self, coords: &[u64]) -> Arc<str> {
        let key = self.meta.chunk_key_encoding.chunk_key(coords);
        if self.uri.is_empty() {
            key.into()
        } else if self.uri.ends_with('/') {
            format!("{}{key}", self.uri).into()
        } else {
            format!("{}/{key}", self.uri).into()
        }
    }
}

/// What is known about one touched shard (or, for an unsharded array, one chunk object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardState {
    /// A sharded array's shard exists and its index was read.
    Present(Arc<ShardIndex>),
    /// An unsharded array's chunk object exists and is `len` bytes: the whole object is
    /// the compressed chunk.
    Whole { len: u64 },
    /// The object does not exist: every chunk in it is the fill value.
    Absent,
}

impl ShardState {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ShardState::Present(_) => "Present",
            ShardState::Whole { .. } => "Whole",
            ShardState::Absent => "Absent",
        }
    }

    /// Same state, cheaply: shared indexes compare by pointer first.
    pub(crate) fn same_as(&self, other: &ShardState) -> bool {
        match (self, other) {
            (ShardState::Present(a), ShardState::Present(b)) => Arc::ptr_eq(a, b) || a == b,
            (a, b) => a == b,
        }
    }
}

/// One sample of the batch: a box over an array and the states of the shards it touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleInput {
    pub array: ArrayId,
    /// The crop, in array coordinates.
    pub aabb: zarr::Aabb,
    /// One state per shard the box touches, in the order `ArrayGeometry::intersect`
    /// returns them (C order of the shard grid coordinates).
    pub shards: Vec<ShardState>,
}

/// Limits a plan must respect. Every field is a hard cap; see each for what it bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlanLimits {
    /// Largest merged read; a single chunk larger than this is read alone.
    pub max_read_op_bytes: u64,
    /// Most chunks decoded in one wave (also caps the chunks of one merged read).
    pub max_chunks_per_wave: u64,
    /// Most compressed bytes (read op lengths) staged for one wave.
    pub max_staging_bytes_per_wave: u64,
    /// Most decompressed bytes produced by one wave.
    pub max_decompressed_bytes_per_wave: u64,
    /// Largest decompressed chunk accepted at all.
    pub max_chunk_decompressed_bytes: u64,
    /// Gaps between chunk ranges of one file up to this many bytes are read through to
    /// merge the ranges; 0 merges only touching or overlapping ranges.
    pub merge_gap_bytes: u64,
}

impl Default for PlanLimits {
    /// Sized for the `default` scenario: 256 KiB chunks, 2048 chunks (512 MiB decoded)
    /// per wave.
    fn default() -> Self {
        Self {
            max_read_op_bytes: 16 << 20,
            max_chunks_per_wave: 2048,
            max_staging_bytes_per_wave: 512 << 20,
            max_decompressed_bytes_per_wave: 512 << 20,
            max_chunk_decompressed_bytes: 64 << 20,
            merge_gap_bytes: 0,
        }
    }
}
