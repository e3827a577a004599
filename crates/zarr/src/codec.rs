//! The codec chain model (zarr v3 core spec §"Codecs") and its validation.
//!
//! A chain is `array→array* , array→bytes , bytes→bytes*`. Parsing lives in
//! [`crate::metadata`]; this module holds the model and the per-codec rules.

/// Byte order of the `bytes` codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endian {
    Little,
    Big,
}

/// Where a shard's index lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexLocation {
    Start,
    End,
}

/// array→array codecs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArrayToArray {
    /// `transpose`: `order[i]` is the input axis that becomes output axis `i`.
    Transpose { order: Vec<usize> },
}

/// array→bytes codecs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArrayToBytes {
    /// `bytes`; `endian` is `None` only for one-byte data types.
    Bytes { endian: Option<Endian> },
    /// `sharding_indexed`.
    Sharding(Box<ShardingCodec>),
}

/// blosc compressor names as spelled in the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BloscCname {
    BloscLz,
    Lz4,
    Lz4Hc,
    Snappy,
    Zlib,
    Zstd,
}

/// blosc shuffle modes as spelled in the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BloscShuffle {
    NoShuffle,
    Shuffle,
    BitShuffle,
}

/// bytes→bytes codecs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BytesToBytes {
    Zstd { level: i32, checksum: bool },
    Blosc { cname: BloscCname, clevel: u8, shuffle: BloscShuffle, typesize: Option<u32>, blocksize: u64 },
    Gzip { level: u32 },
    Crc32c,
}

/// A whole codec chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecChain {
    pub array_to_array: Vec<ArrayToArray>,
    pub array_to_bytes: ArrayToBytes,
    pub bytes_to_bytes: Vec<BytesToBytes>,
}

/// `sharding_indexed` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardingCodec {
    /// Shape of the inner chunks.
    pub chunk_shape: Vec<u64>,
    /// Chain applied to each inner chunk.
    pub codecs: CodecChain,
    /// Chain applied to the index (`bytes` little/big, optionally `crc32c`).
    pub index_codecs: CodecChain,
    pub index_location: IndexLocation,
}
