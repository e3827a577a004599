//! The crate's error types: what can go wrong fetching a sample's metadata ([`Error`]),
//! and resolving an OME-NGFF image group to a level ([`ImageError`], one of its causes).

use zarr::ngff::NgffError;

use crate::sync::StdArc as Arc;

/// Everything that can stop a sample from resolving. Cloneable, since one cached failure
/// reaches every sample that shares the entry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The array has neither a `zarr.json` (v3) nor a `.zarray` (v2); `key` is the
    /// `zarr.json` that was looked for.
    #[error(
        "array {uri:?} not found: no zarr.json at {key:?}, nor a zarr v2 .zarray beside it; check the array path"
    )]
    MetadataNotFound { uri: Arc<str>, key: String },
    /// The store failed reading `key`.
    #[error("reading {key:?}: {source}")]
    Store { key: String, source: store::Error },
    /// A fetch or the resolution of a sample panicked (a bug); the sample fails instead of
    /// waiting forever.
    #[error("internal error: the {stage} stage panicked (a bug: please report it)")]
    Panicked { stage: &'static str },
    /// The array is valid zarr but laid out so that shards cannot be read in place.
    #[error("array {uri:?}: unsupported layout: {what}")]
    UnsupportedLayout { uri: Arc<str>, what: &'static str },
    /// The metadata document `key` (`zarr.json`, `.zarray` or `.zattrs`) does not parse,
    /// or the grid it describes is invalid.
    #[error("array {uri:?}: invalid {key:?}: {source}")]
    Metadata { uri: Arc<str>, key: String, source: zarr::Error },
    /// A shard object exists but holds no bytes (an absent shard must not exist at all).
    #[error("shard {key:?} is empty (0 bytes) but a sharded array's shard must hold its index")]
    EmptyShard { key: String },
    /// A shard object is shorter than its index.
    #[error(
        "shard {key:?} has {shard_len} bytes, too short for its {index_len}-byte index; the file is truncated"
    )]
    ShardTooShort { key: String, shard_len: u64, index_len: u64 },
    /// The shard index's CRC32C does not match.
    #[error(
        "shard {key:?}: index checksum mismatch (stored {stored:#010x}, computed {computed:#010x}); the shard is corrupt"
    )]
    IndexChecksum { key: String, stored: u32, computed: u32 },
    /// An index entry points outside the shard.
    #[error(
        "shard {key:?}: index entry {entry} (offset {offset}, nbytes {nbytes}) lies outside the {shard_len}-byte shard"
    )]
    IndexEntryOutOfRange { key: String, entry: u64, offset: u64, nbytes: u64, shard_len: u64 },
    /// Any other invalid shard index (half-empty entry, unsupported index codecs).
    #[error("shard {key:?}: invalid index: {source}")]
    ShardIndex { key: String, source: zarr::Error },
    /// The probed chunk is not a valid blosc frame.
    #[error("array {uri:?}: blosc layout probe of {key:?} failed: {source}")]
    Layout { uri: Arc<str>, key: String, source: zarr::Error },
    /// The array's blosc frames use a compressor the engine cannot decode.
    #[error(
        "array {uri:?}: blosc compressor `{compressor}` (probed in {key:?}) cannot be decoded; rewrite the array with zstd, lz4, zlib or blosclz"
    )]
    UnsupportedBloscCompressor { uri: Arc<str>, key: String, compressor: &'static str },
    /// The sample's box does not fit the array.
    #[error("sample {seq} of array {uri:?}: {source}")]
    Geometry { seq: u64, uri: Arc<str>, source: zarr::Error },
    /// The sample's box touches more shards than allowed.
    #[error(
        "sample {seq} of array {uri:?} touches {shards} shards, more than max_shards_per_sample = {max}; use smaller boxes or raise the limit"
    )]
    TooManyShards { seq: u64, uri: Arc<str>, shards: usize, max: usize },
    /// A cache entry this sample waited for was removed before its fetch finished.
    #[error("sample {seq}: the cache entry for {key:?} was evicted while its fetch was pending")]
    Evicted { seq: u64, key: String },
    /// A configuration value is out of range.
    #[error("invalid prefetch configuration: {field} = {value}, needs at least {needed}: {reason}")]
    Config { field: &'static str, value: usize, needed: usize, reason: &'static str },
    /// A fetch thread could not be started.
    #[error("could not start prefetch thread: {kind}")]
    SpawnThread { kind: std::io::ErrorKind },
    /// The sample's uri is an OME-NGFF image group whose level could not be resolved (or a
    /// group that is not an image, or a level given for an array).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The prefetcher shut down before the sample resolved.
    #[error("the prefetcher shut down before sample {seq} resolved")]
    ShutDown { seq: u64 },
}

/// Why an image group, or a level of one, could not be resolved. Every variant names the
/// file at fault (or the uri where there is none).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Nothing at the uri: no `zarr.json`, `.zattrs` or `.zgroup`.
    #[error("{uri}: no image group here (no zarr.json, .zattrs or .zgroup); check the path")]
    NotFound { uri: Arc<str> },
    /// A group (or an array, when an image was asked for) without `multiscales`.
    #[error("{key}: neither an array nor an OME-NGFF image: {source}")]
    NotAnImage { key: String, source: NgffError },
    /// The `multiscales` (or `labels`) metadata is malformed.
    #[error("{key}: invalid OME-NGFF metadata: {source}")]
    Metadata { key: String, source: NgffError },
    /// A level index past the last dataset.
    #[error(
        "{key}: level {level} does not exist: the image has {levels} levels (0..={last})",
        last = .levels.saturating_sub(1)
    )]
    LevelOutOfRange { key: String, level: usize, levels: usize },
    /// A level whose path holds no array.
    #[error("{key}: multiscales level {level} names path `{path}`, but there is no array at {uri}")]
    MissingLevel { key: String, level: usize, path: String, uri: String },
    /// A level array whose rank differs from the number of axes.
    #[error("{key}: level {level} ({uri}) has rank {rank} but the image has {axes} axes")]
    LevelRank { key: String, level: usize, uri: String, rank: usize, axes: usize },
    /// A level was given for a uri that is an array.
    #[error(
        "{uri} is an array, not an image group: a level ({level}) applies to image groups only; drop it or name the group"
    )]
    LevelOnArray { uri: Arc<str>, level: usize },
}
