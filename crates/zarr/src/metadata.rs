//! `zarr.json` for arrays (zarr v3 core spec §"Array metadata").

use crate::codec::CodecChain;
use crate::dtype::{DataType, FillValue};

/// Separator of chunk key encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Separator {
    Slash,
    Dot,
}

impl Separator {
    pub fn as_char(self) -> char {
        match self {
            Separator::Slash => '/',
            Separator::Dot => '.',
        }
    }
}

/// How chunk grid coordinates become keys (core spec §"Chunk key encoding").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkKeyEncoding {
    /// `default`: `c` followed by the coordinates, e.g. `c/1/2/3`; `c` alone at rank 0.
    Default { separator: Separator },
    /// `v2`: the coordinates alone, e.g. `1.2.3`; `0` at rank 0.
    V2 { separator: Separator },
}

impl ChunkKeyEncoding {
    /// The key of the chunk (or shard) at grid coordinates `coords`, relative to the array.
    pub fn chunk_key(&self, coords: &[u64]) -> String {
        use std::fmt::Write;
        let (prefix, sep) = match *self {
            ChunkKeyEncoding::Default { separator } => (Some("c"), separator.as_char()),
            ChunkKeyEncoding::V2 { separator } => (None, separator.as_char()),
        };
        let mut key = String::with_capacity(2 + coords.len() * 4);
        if let Some(p) = prefix {
            key.push_str(p);
        }
        for (i, c) in coords.iter().enumerate() {
            if i > 0 || prefix.is_some() {
                key.push(sep);
            }
            // Writing into a String cannot fail.
            let _ = write!(key, "{c}");
        }
        if key.is_empty() {
            key.push('0');
        }
        key
    }
}

/// A parsed, validated array `zarr.json`.
///
/// `chunk_shape` is the regular grid's chunk shape: with `sharding_indexed` as the
/// array→bytes codec, that is the shard shape and the inner chunk shape is in
/// `codecs.array_to_bytes`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayMetadata {
    pub shape: Vec<u64>,
    pub data_type: DataType,
    pub chunk_shape: Vec<u64>,
    pub chunk_key_encoding: ChunkKeyEncoding,
    pub fill_value: FillValue,
    pub codecs: CodecChain,
    pub dimension_names: Option<Vec<Option<String>>>,
    /// `attributes`, kept opaque.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}
