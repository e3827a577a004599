//! What the planner produces: a [`BatchPlan`] of read ops, chunk plans and waves.

use std::ops::Range;
use std::sync::Arc;

use zarr::{Aabb, DataType, FillValue};

use crate::input::ArrayId;

/// One object the plan reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub array: ArrayId,
    /// Outer grid coordinates (shard, or chunk when unsharded).
    pub coords: Vec<u64>,
    /// The full key: `uri/<chunk key>`.
    pub key: Arc<str>,
}

/// One ranged read: `len` bytes at `offset` of `files[file]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOp {
    /// Index into [`BatchPlan::files`].
    pub file: usize,
    pub offset: u64,
    pub len: u64,
    /// The read's group: the chunk plans (indices into [`BatchPlan::chunks`]) whose bytes
    /// lie in this read, in offset order. Always inside one wave.
    pub chunks: Range<usize>,
}

impl ReadOp {
    /// One past the last byte read.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Where a chunk's voxels go in one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Index of the sample in the batch input.
    pub sample: usize,
    /// The voxels taken, in the chunk's coordinates.
    pub in_chunk: Aabb,
    /// Where they land, in the sample's coordinates (same shape as `in_chunk`).
    pub in_sample: Aabb,
}

/// Where a chunk's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSource {
    /// Decode `compressed_len` bytes found `offset_in_read` bytes into read op `read`.
    Copy { read: usize, offset_in_read: u64, compressed_len: u64, decompressed_len: u64 },
    /// The chunk's decoded bytes are in the engine's chunk cache: `hit` is what the
    /// engine's [`ChunkProbe`] returned for it. No read, no decode.
    Cached { hit: u32, decompressed_len: u64 },
    /// The chunk is not stored (absent shard or empty index entry): every voxel is `value`
    /// (in the array's data type).
    Fill { value: FillValue },
}

/// One chunk of one array, planned once however many samples need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkPlan {
    pub array: ArrayId,
    /// Coordinates in the array's global inner-chunk grid.
    pub chunk: Vec<u64>,
    pub source: ChunkSource,
    /// Every use of this chunk, in ascending sample order.
    pub placements: Vec<Placement>,
}

impl ChunkPlan {
    /// Decompressed bytes (of a copy, or held by a cache hit), 0 for fills.
    pub fn decompressed_len(&self) -> u64 {
        match self.source {
            ChunkSource::Copy { decompressed_len, .. }
            | ChunkSource::Cached { decompressed_len, .. } => decompressed_len,
            ChunkSource::Fill { .. } => 0,
        }
    }
}

/// A set of whole read groups staged, decoded and assembled together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave {
    /// Read ops of this wave (indices into [`BatchPlan::reads`]).
    pub reads: Range<usize>,
    /// Their chunks: the union of the reads' groups, contiguous.
    pub chunks: Range<usize>,
    /// Σ read lengths.
    pub staging_bytes: u64,
    /// Σ decompressed chunk sizes.
    pub decompressed_bytes: u64,
}

/// Byte and voxel counts of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanStats {
    /// Σ read op lengths.
    pub bytes_read: u64,
    /// Σ compressed sizes of the chunks decoded (each distinct chunk once).
    pub compressed_bytes_used: u64,
    /// Bytes of merged gaps read through but used by no chunk.
    pub gap_bytes: u64,
    /// Σ decompressed sizes of the chunks decoded.
    pub decompressed_bytes: u64,
    /// Voxels delivered over all samples.
    pub voxels_delivered: u64,
    /// Voxels delivered × their source data type's size (how tensorstore counts bytes).
    pub bytes_delivered: u64,
    pub copy_chunks: u64,
    /// Chunks served by the engine's decoded-chunk cache, and their decoded bytes.
    pub cached_chunks: u64,
    pub cached_bytes: u64,
    pub fill_chunks: u64,
    pub placements: u64,
}

impl PlanStats {
    /// Bytes read per byte delivered (0 for an empty plan).
    pub fn read_amplification(&self) -> f64 {
        ratio(self.bytes_read, self.bytes_delivered)
    }

    /// Bytes decompressed per byte delivered (0 for an empty plan).
    pub fn decode_amplification(&self) -> f64 {
        ratio(self.decompressed_bytes, self.bytes_delivered)
    }

    /// Field by field, `f(self's, other's)`: how a caller shares a plan's counts out (or
    /// adds them up) without naming each field.
    pub fn zip_with(&self, other: &Self, f: impl Fn(u64, u64) -> u64) -> Self {
        Self {
            bytes_read: f(self.bytes_read, other.bytes_read),
            compressed_bytes_used: f(self.compressed_bytes_used, other.compressed_bytes_used),
            gap_bytes: f(self.gap_bytes, other.gap_bytes),
            decompressed_bytes: f(self.decompressed_bytes, other.decompressed_bytes),
            voxels_delivered: f(self.voxels_delivered, other.voxels_delivered),
            bytes_delivered: f(self.bytes_delivered, other.bytes_delivered),
            copy_chunks: f(self.copy_chunks, other.copy_chunks),
            cached_chunks: f(self.cached_chunks, other.cached_chunks),
            cached_bytes: f(self.cached_bytes, other.cached_bytes),
            fill_chunks: f(self.fill_chunks, other.fill_chunks),
            placements: f(self.placements, other.placements),
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The plan of one batch.
///
/// Chunk plans are ordered: first the copies, grouped by read op in read order and by
/// offset within a read, then the cache hits (`chunks[cached]`), then the fills
/// (`chunks[fills]`); hits and fills need no I/O and belong to no wave. Reads are round-robin across files and in offset order within a file; waves
/// are contiguous runs of reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    /// Output element type of the batch tensor; `None` only for an empty `Native` batch.
    pub element: Option<DataType>,
    pub files: Vec<FileRef>,
    pub reads: Vec<ReadOp>,
    pub chunks: Vec<ChunkPlan>,
    /// The cache hits' range in `chunks` (after the copies, before the fills).
    pub cached: Range<usize>,
    /// The fill chunks' range in `chunks` (always at the end).
    pub fills: Range<usize>,
    pub waves: Vec<Wave>,
    pub stats: PlanStats,
}

impl BatchPlan {
    /// The chunk plans of read op `read`, or `None` past the end.
    pub fn group(&self, read: usize) -> Option<&[ChunkPlan]> {
        self.reads.get(read).and_then(|r| self.chunks.get(r.chunks.clone()))
    }
}

/// A stored chunk's identity as the planner offers it to a [`ChunkProbe`]: the object it
/// lives in and its byte range there (from the shard index, or the whole object of an
/// unsharded array), and its decoded size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredChunk<'a> {
    pub array: ArrayId,
    /// The full key of the shard (or chunk) object.
    pub key: &'a Arc<str>,
    pub offset: u64,
    pub nbytes: u64,
    pub decompressed: u64,
}

/// An engine's decoded-chunk cache as the planner sees it: asked once per distinct stored
/// chunk of a batch; `Some(hit)` claims the chunk (the engine must then be able to
/// assemble it from hit number `hit` without reading it: typically it pinned the entry).
///
/// The planner asks for every chunk of a batch back to back, after it walked the samples
/// and before it coalesces reads, then calls [`ChunkProbe::done`] once.
pub trait ChunkProbe {
    fn probe(&mut self, chunk: &StoredChunk<'_>) -> Option<u32>;

    /// The batch's lookups are over: a probe that holds a lock across them lets go here,
    /// before the rest of the plan is built.
    fn done(&mut self) {}
}

/// No cache: every stored chunk is read and decoded.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProbe;

impl ChunkProbe for NoProbe {
    fn probe(&mut self, _: &StoredChunk<'_>) -> Option<u32> {
        None
    }
}
