//! The planner's one error type: every variant names the sample, file or knob at fault.

use std::sync::Arc;

use zarr::DataType;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can make a batch unplannable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Something does not fit a configured limit; `knob` is the [`crate::PlanLimits`]
    /// field to raise.
    #[error("plan budget exceeded: needs {needed} but `{knob}` is {limit}; raise `{knob}`")]
    Budget { knob: &'static str, needed: u64, limit: u64 },
    /// A sample's data type cannot be cast to the batch's output element type.
    #[error(
        "sample {sample} has data type {from}, which cannot be delivered as {to} \
         (a `Native` batch needs one data type across all samples; request a float output instead)"
    )]
    NoCastPath { sample: usize, from: DataType, to: DataType },
    /// A sample names an array that is not in the array table.
    #[error("sample {sample} names array {array}, but the table has {arrays} arrays")]
    UnknownArray { sample: usize, array: u32, arrays: usize },
    /// The sample's box does not fit its array (from `zarr`'s geometry).
    #[error("sample {sample} over `{uri}`: {source}")]
    Geometry {
        sample: usize,
        uri: Arc<str>,
        #[source]
        source: zarr::Error,
    },
    /// The sample carries a different number of shard states than its box touches.
    #[error(
        "sample {sample} over `{uri}` touches {expected} shards but carries {got} shard states \
         (they must follow `ArrayGeometry::intersect`'s order)"
    )]
    ShardCount { sample: usize, uri: Arc<str>, expected: usize, got: usize },
    /// `Present` given for an unsharded array or `Whole` for a sharded one.
    #[error(
        "sample {sample}: shard state for `{key}` is `{state}`, which does not apply to a {}sharded array",
        if *sharded { "" } else { "un" }
    )]
    ShardStateKind { sample: usize, key: Arc<str>, state: &'static str, sharded: bool },
    /// A shard index has a different number of entries than the shard has inner chunks.
    #[error(
        "sample {sample}: shard index of `{key}` has {got} entries, the shard has {expected} chunks"
    )]
    IndexEntries { sample: usize, key: Arc<str>, expected: u64, got: u64 },
    /// Two samples carry different states for the same shard.
    #[error("sample {sample} carries a state for `{key}` that differs from an earlier sample's")]
    InconsistentShard { sample: usize, key: Arc<str> },
    /// A stored chunk has zero bytes, which no codec chain can decode.
    #[error("sample {sample}: chunk {chunk:?} of `{key}` is stored with zero bytes")]
    ZeroLengthChunk { sample: usize, key: Arc<str>, chunk: Vec<u64> },
    /// A stored chunk is far larger than its decoded size could need (a forged or corrupt
    /// index entry): reading it would size a buffer past the chunk cap.
    #[error(
        "sample {sample}: chunk {chunk:?} of `{key}` is stored with {nbytes} bytes, over the \
         {limit}-byte bound for it (a corrupt index?); raise `max_chunk_decompressed_bytes` if it is real"
    )]
    ChunkTooLarge { sample: usize, key: Arc<str>, chunk: Vec<u64>, nbytes: u64, limit: u64 },
    /// Size arithmetic overflowed.
    #[error("arithmetic overflow computing {what}")]
    Overflow { what: &'static str },
}

impl Error {
    /// The sample (its index in the planned batch) whose data made the batch unplannable:
    /// a box outside its array, a corrupt shard index, a zero-length or implausibly large
    /// stored chunk. `None` for limits, mixed types and inconsistent inputs, which are the
    /// batch's or the caller's, not one sample's data.
    pub fn data_sample(&self) -> Option<usize> {
        match self {
            Error::Geometry { sample, .. }
            | Error::IndexEntries { sample, .. }
            | Error::InconsistentShard { sample, .. }
            | Error::ZeroLengthChunk { sample, .. }
            | Error::ChunkTooLarge { sample, .. } => Some(*sample),
            _ => None,
        }
    }
}
