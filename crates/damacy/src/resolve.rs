//! What the pipeline takes from the prefetcher: a resolved sample mapped onto the
//! planner's input types, or the sample's error mapped onto [`SampleError`].

use std::path::PathBuf;
use std::sync::Arc;

use planner::{ArrayEntry, ShardState};
use prefetch_cache::ResolvedSample;

use crate::error::SampleError;

/// Metadata and shard states of one sample, as the planner wants them.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub entry: ArrayEntry,
    pub shards: Vec<ShardState>,
}

/// Maps a prefetch outcome.
pub(crate) fn resolved(
    outcome: Result<ResolvedSample, prefetch_cache::Error>,
) -> Result<Resolved, SampleError> {
    let r = outcome.map_err(sample_error)?;
    let entry = ArrayEntry {
        uri: Arc::clone(&r.array.uri),
        meta: Arc::clone(&r.array.meta),
        geometry: Arc::clone(&r.array.geometry),
        layout: None,
    };
    let shards = r
        .shards
        .iter()
        .map(|s| match &*s.state {
            prefetch_cache::ShardState::Present(i) => ShardState::Present(Arc::clone(i)),
            prefetch_cache::ShardState::Whole { len } => ShardState::Whole { len: *len },
            prefetch_cache::ShardState::Absent => ShardState::Absent,
        })
        .collect();
    Ok(Resolved { entry, shards })
}

/// Maps the prefetcher's errors onto the facade's, keeping the zarr cause where there is
/// one so callers match on one vocabulary.
pub(crate) fn sample_error(e: prefetch_cache::Error) -> SampleError {
    use prefetch_cache::Error as P;
    let at = |key: &str, source| SampleError::Metadata { path: PathBuf::from(key), source };
    match e {
        P::MetadataNotFound { key, .. } => SampleError::ArrayNotFound { path: PathBuf::from(key) },
        P::Store { source, .. } => SampleError::Store(source),
        P::Metadata { key, source, .. } => at(&key, source),
        P::ShardTooShort { key, shard_len, index_len } => {
            at(&key, zarr::Error::ShardTooShort { shard_len, index_len })
        }
        P::IndexChecksum { key, stored, computed } => {
            at(&key, zarr::Error::IndexChecksum { stored, computed })
        }
        P::IndexEntryOutOfRange { key, entry, offset, nbytes, shard_len } => {
            at(&key, zarr::Error::IndexEntryOutOfRange { entry, offset, nbytes, shard_len })
        }
        P::ShardIndex { key, source } | P::Layout { key, source, .. } => at(&key, source),
        P::Geometry { source, .. } => SampleError::Format(source),
        P::Panicked { stage } => SampleError::Internal { stage },
        P::UnsupportedLayout { uri, what } => {
            SampleError::Unsupported { path: PathBuf::from(&*uri).join("zarr.json"), what }
        }
        P::Image(e) => SampleError::Image(e),
        P::TooManyShards { shards, max, .. } => {
            SampleError::TooManyShards { shards: shards as u64, limit: max as u64 }
        }
        other => SampleError::Prefetch(Box::new(other)),
    }
}
