//! The crate's one error type. Every variant carries the numbers a person needs to find
//! the problem; none is a free-form catch-all.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while parsing or decoding zarr data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- metadata (zarr.json, .zarray) ----
    // The messages do not name the file: the layers that read it add its path.
    /// The bytes are not valid JSON.
    #[error("the metadata is not valid JSON (line {line}, column {column}): {message}")]
    Json { line: usize, column: usize, message: String },
    /// A document declares a zarr format other than the one its file holds (`zarr.json`
    /// holds v3, `.zarray` v2), or a version that does not exist.
    #[error(
        "the metadata declares zarr_format {zarr_format}, but this file must be zarr v{expected} (zarr.json is v3, .zarray is v2)"
    )]
    UnsupportedFormat { zarr_format: u64, expected: u8 },
    /// `node_type` is not `"array"` (for example a group).
    #[error("the metadata describes a `{node_type}`, not an array")]
    NotAnArray { node_type: String },
    /// A required metadata field is absent.
    #[error("the metadata has no `{field}` field")]
    MissingField { field: &'static str },
    /// A metadata field has the wrong type or an invalid value.
    #[error("metadata field `{field}` is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// The array's rank is outside 1..=32.
    #[error("array rank {rank} is outside the supported range 1..=32")]
    Rank { rank: usize },
    /// A data type this crate does not know.
    #[error("unsupported data type `{name}`")]
    UnsupportedDataType { name: String },
    /// An output element type that does not exist.
    #[error("unknown output dtype `{name}`; expected one of f32, bf16, f16, native")]
    UnsupportedOutDtype { name: String },
    /// A fill value that does not fit its data type.
    #[error("fill_value is invalid for data type {data_type}: {reason}")]
    FillValue { data_type: &'static str, reason: &'static str },
    /// A top-level key the spec does not define, without `"must_understand": false`.
    #[error(
        "zarr.json has unknown key `{field}`, which is not marked `\"must_understand\": false`"
    )]
    UnknownField { field: String },
    /// A storage transformer (none are supported).
    #[error("unsupported storage transformer `{name}`")]
    UnsupportedStorageTransformer { name: String },
    /// A chunk grid or chunk key encoding other than the supported ones.
    #[error("unsupported {what} `{name}`")]
    UnsupportedGrid { what: &'static str, name: String },

    // ---- codecs ----
    /// A codec this crate does not implement (named as in the metadata: a v3 codec name
    /// or a v2 compressor id).
    #[error("unsupported codec `{codec}`")]
    Unsupported { codec: String },
    /// A zarr v2 filter (none is implemented, so no filtered array reads as wrong data).
    #[error(
        "unsupported zarr v2 filter `{id}`: arrays with filters cannot be read; rewrite the array without filters"
    )]
    UnsupportedFilter { id: String },
    /// A model that has no zarr v2 spelling (sharding, `crc32c`, several compressors, a
    /// transpose other than Fortran order, dimension names, `default` chunk keys).
    #[error("the array cannot be written as zarr v2: {reason}")]
    NotV2 { reason: &'static str },
    /// A codec's configuration is invalid or unsupported.
    #[error("codec `{codec}`: configuration field `{field}` is invalid: {reason}")]
    CodecConfig { codec: &'static str, field: &'static str, reason: String },
    /// The codec list is not of the form array→array*, array→bytes, bytes→bytes*.
    #[error("invalid codec chain: {reason}")]
    CodecChain { reason: &'static str },

    // ---- shard index ----
    /// The shard is too short to hold its index.
    #[error("shard of {shard_len} bytes is too short for its {index_len}-byte index")]
    ShardTooShort { shard_len: u64, index_len: u64 },
    /// The index's CRC32C does not match its contents.
    #[error("shard index checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    IndexChecksum { stored: u32, computed: u32 },
    /// Exactly one of an index entry's two fields is `u64::MAX`.
    #[error("shard index entry {entry} is half empty (offset {offset:#x}, nbytes {nbytes:#x})")]
    IndexEntryHalfEmpty { entry: u64, offset: u64, nbytes: u64 },
    /// An index entry's `offset + nbytes` overflows or leaves the shard.
    #[error(
        "shard index entry {entry} (offset {offset}, nbytes {nbytes}) lies outside the {shard_len}-byte shard"
    )]
    IndexEntryOutOfRange { entry: u64, offset: u64, nbytes: u64, shard_len: u64 },
    /// The index buffer has the wrong length for the shard's chunk count.
    #[error("shard index has {got} bytes, expected {expected}")]
    IndexLength { expected: u64, got: u64 },
    /// An inner chunk number past the end of the shard index.
    #[error("inner chunk {chunk} is past the end of the {entries}-entry shard index")]
    ChunkNotInIndex { chunk: u64, entries: u64 },

    // ---- blosc ----
    /// A blosc frame is malformed; `reason` says which check failed.
    #[error("corrupt blosc frame: {reason}")]
    BloscFrame { reason: &'static str },
    /// A blosc frame field has a value out of range.
    #[error("corrupt blosc frame: {field} is {value}, {reason}")]
    BloscField { field: &'static str, value: u64, reason: &'static str },
    /// A blosc2-style frame (version ≥ 3) or another unsupported version.
    #[error(
        "unsupported blosc frame version {version} (blosc2 frames are not supported; write with blosc1)"
    )]
    BloscVersion { version: u8 },
    /// A blosc frame's `cbytes` header field differs from the buffer's length.
    #[error(
        "blosc frame header says the frame is {cbytes} bytes but the buffer holds {len}; the chunk is truncated or has trailing bytes"
    )]
    BloscLength { cbytes: u64, len: u64 },
    /// A blosc compressor this crate cannot decode.
    #[error("unsupported blosc compressor `{cname}`")]
    BloscCompressor { cname: String },

    // ---- decoding ----
    /// A codec library failed while compressing (encoders only).
    #[error("{codec} compression failed: {message}")]
    Compress { codec: &'static str, message: String },
    /// A compressed stream failed to decode.
    #[error("{codec} decode failed: {message}")]
    Decompress { codec: &'static str, message: String },
    /// A decoded size differs from the one the metadata implies.
    #[error("{stage}: decoded {got} bytes, expected {expected}")]
    DecodedSize { stage: &'static str, expected: u64, got: u64 },
    /// A `crc32c` codec's checksum does not match.
    #[error("crc32c checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    /// The data handed to an encoder has the wrong size for the chunk.
    #[error("input has {got} bytes, the chunk needs {expected}")]
    InputSize { expected: u64, got: u64 },
    /// The caller's output buffer has the wrong size.
    #[error("output buffer has {got} bytes, the chunk needs {expected}")]
    OutputSize { expected: u64, got: u64 },

    // ---- geometry ----
    /// A box's rank differs from the array's.
    #[error("box has rank {got}, the array has rank {expected}")]
    RankMismatch { expected: usize, got: usize },
    /// A box is empty or inverted on an axis.
    #[error("box is empty on axis {axis}: {lo}..{hi}")]
    EmptyBox { axis: usize, lo: u64, hi: u64 },
    /// A box leaves the array on an axis.
    #[error("box {lo}..{hi} on axis {axis} is outside the array's extent {extent}")]
    OutOfBounds { axis: usize, lo: u64, hi: u64, extent: u64 },
    /// Size or offset arithmetic overflowed.
    #[error("arithmetic overflow computing {what}")]
    Overflow { what: &'static str },
}
