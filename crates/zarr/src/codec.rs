//! The codec chain model (zarr v3 core spec §"Codecs") and its validation.
//!
//! A chain is `array→array* , array→bytes , bytes→bytes*`. This module holds the model,
//! its parser from the `codecs` JSON list (with each codec's configuration rules, from the
//! codec specs: `bytes`, `transpose`, `sharding_indexed`, `zstd`, `blosc`, `gzip`,
//! `crc32c`; and zarr-python's names for two numcodecs compressors, `numcodecs.zlib` and
//! `numcodecs.lz4`, which zarr v2 arrays use as `zlib` and `lz4`) and its serializer back
//! to JSON.

use serde_json::{Map, Value, json};

use crate::dtype::DataType;
use crate::error::{Error, Result};

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
    Zstd {
        level: i32,
        checksum: bool,
    },
    Blosc {
        cname: BloscCname,
        clevel: u8,
        shuffle: BloscShuffle,
        typesize: Option<u32>,
        blocksize: u64,
    },
    Gzip {
        level: u32,
    },
    /// A zlib stream (RFC 1950): numcodecs' `zlib` (v2 compressor id `zlib`, v3 name
    /// `numcodecs.zlib`).
    Zlib {
        level: u32,
    },
    /// numcodecs' `lz4`: the decoded length as a 4-byte little-endian integer, then one
    /// LZ4 block (not an LZ4 frame). `acceleration` only affects encoding (by numcodecs;
    /// this crate's encoder ignores it).
    Lz4 {
        acceleration: i32,
    },
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

impl Endian {
    /// The byte order of the machine running this code.
    pub const NATIVE: Endian =
        if cfg!(target_endian = "big") { Endian::Big } else { Endian::Little };

    fn name(self) -> &'static str {
        match self {
            Endian::Little => "little",
            Endian::Big => "big",
        }
    }
}

impl IndexLocation {
    fn name(self) -> &'static str {
        match self {
            IndexLocation::Start => "start",
            IndexLocation::End => "end",
        }
    }
}

impl BloscCname {
    /// Every compressor name, in the order of the blosc1 compressor ids' documentation.
    pub const ALL: [BloscCname; 6] = [
        BloscCname::BloscLz,
        BloscCname::Lz4,
        BloscCname::Lz4Hc,
        BloscCname::Snappy,
        BloscCname::Zlib,
        BloscCname::Zstd,
    ];

    /// The spelling in the metadata.
    pub fn name(self) -> &'static str {
        match self {
            BloscCname::BloscLz => "blosclz",
            BloscCname::Lz4 => "lz4",
            BloscCname::Lz4Hc => "lz4hc",
            BloscCname::Snappy => "snappy",
            BloscCname::Zlib => "zlib",
            BloscCname::Zstd => "zstd",
        }
    }
}

impl BloscShuffle {
    /// Every shuffle mode.
    pub const ALL: [BloscShuffle; 3] =
        [BloscShuffle::NoShuffle, BloscShuffle::Shuffle, BloscShuffle::BitShuffle];

    /// The spelling in the metadata.
    pub fn name(self) -> &'static str {
        match self {
            BloscShuffle::NoShuffle => "noshuffle",
            BloscShuffle::Shuffle => "shuffle",
            BloscShuffle::BitShuffle => "bitshuffle",
        }
    }
}

impl ArrayToArray {
    /// The shape after this codec is applied to an array of `shape`.
    pub fn encoded_shape(&self, shape: &[u64]) -> Vec<u64> {
        match self {
            ArrayToArray::Transpose { order } => {
                order.iter().map(|&i| shape.get(i).copied().unwrap_or(0)).collect()
            }
        }
    }
}

impl CodecChain {
    /// The plain chain `[bytes]` with the given byte order (`None` only for one-byte types).
    pub fn bytes(endian: Option<Endian>) -> Self {
        Self {
            array_to_array: Vec::new(),
            array_to_bytes: ArrayToBytes::Bytes { endian },
            bytes_to_bytes: Vec::new(),
        }
    }

    /// `[bytes(little), ...bytes_to_bytes]`: the usual chain of writers.
    pub fn little_endian(bytes_to_bytes: Vec<BytesToBytes>) -> Self {
        Self { bytes_to_bytes, ..Self::bytes(Some(Endian::Little)) }
    }

    /// The shape of the array that reaches the array→bytes codec when a chunk of `shape`
    /// enters the chain (the array→array codecs applied in order).
    pub fn inner_shape(&self, shape: &[u64]) -> Vec<u64> {
        self.array_to_array.iter().fold(shape.to_vec(), |s, c| c.encoded_shape(&s))
    }

    /// Parses and validates a `codecs` list for chunks of `shape` and `data_type`.
    ///
    /// `shape` is what the first codec sees: the chunk shape of the array (or, nested in a
    /// sharding codec, its inner chunk shape). Sharding codecs are parsed recursively.
    ///
    /// # Errors
    /// `Unsupported` for an unknown codec name, `CodecConfig` for a bad configuration,
    /// `CodecChain` when the order is not array→array*, array→bytes, bytes→bytes*,
    /// `InvalidField` when an entry is not a codec object.
    pub fn parse(value: &Value, data_type: DataType, shape: &[u64]) -> Result<Self> {
        let list = value.as_array().ok_or_else(|| Error::InvalidField {
            field: "codecs",
            reason: "must be a list of codec objects".into(),
        })?;
        let mut array_to_array = Vec::new();
        let mut array_to_bytes = None;
        let mut bytes_to_bytes = Vec::new();
        let mut current_shape = shape.to_vec();
        for entry in list {
            match parse_codec(entry, data_type, &current_shape)? {
                Parsed::ArrayToArray(c) => {
                    if array_to_bytes.is_some() {
                        return Err(Error::CodecChain {
                            reason: "an array→array codec follows the array→bytes codec",
                        });
                    }
                    current_shape = c.encoded_shape(&current_shape);
                    array_to_array.push(c);
                }
                Parsed::ArrayToBytes(c) => {
                    if array_to_bytes.is_some() {
                        return Err(Error::CodecChain {
                            reason: "more than one array→bytes codec (`bytes` or `sharding_indexed`)",
                        });
                    }
                    array_to_bytes = Some(c);
                }
                Parsed::BytesToBytes(c) => {
                    if array_to_bytes.is_none() {
                        return Err(Error::CodecChain {
                            reason: "a bytes→bytes codec precedes the array→bytes codec",
                        });
                    }
                    bytes_to_bytes.push(c);
                }
            }
        }
        let array_to_bytes = array_to_bytes.ok_or(Error::CodecChain {
            reason: "no array→bytes codec (`bytes` or `sharding_indexed`); add `bytes`",
        })?;
        Ok(Self { array_to_array, array_to_bytes, bytes_to_bytes })
    }

    /// The chain as a `codecs` JSON list (what [`CodecChain::parse`] reads back equal).
    pub fn to_json_value(&self) -> Value {
        let mut list = Vec::new();
        for c in &self.array_to_array {
            match c {
                ArrayToArray::Transpose { order } => {
                    list.push(json!({"name": "transpose", "configuration": {"order": order}}));
                }
            }
        }
        list.push(match &self.array_to_bytes {
            ArrayToBytes::Bytes { endian: Some(e) } => {
                json!({"name": "bytes", "configuration": {"endian": e.name()}})
            }
            ArrayToBytes::Bytes { endian: None } => json!({"name": "bytes", "configuration": {}}),
            ArrayToBytes::Sharding(s) => json!({
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": s.chunk_shape,
                    "codecs": s.codecs.to_json_value(),
                    "index_codecs": s.index_codecs.to_json_value(),
                    "index_location": s.index_location.name(),
                }
            }),
        });
        for c in &self.bytes_to_bytes {
            list.push(match c {
                BytesToBytes::Zstd { level, checksum } => {
                    json!({"name": "zstd", "configuration": {"level": level, "checksum": checksum}})
                }
                BytesToBytes::Blosc { cname, clevel, shuffle, typesize, blocksize } => {
                    let mut cfg = Map::new();
                    cfg.insert("cname".into(), cname.name().into());
                    cfg.insert("clevel".into(), (*clevel).into());
                    cfg.insert("shuffle".into(), shuffle.name().into());
                    if let Some(t) = typesize {
                        cfg.insert("typesize".into(), (*t).into());
                    }
                    cfg.insert("blocksize".into(), (*blocksize).into());
                    json!({"name": "blosc", "configuration": cfg})
                }
                BytesToBytes::Gzip { level } => {
                    json!({"name": "gzip", "configuration": {"level": level}})
                }
                BytesToBytes::Zlib { level } => {
                    json!({"name": "numcodecs.zlib", "configuration": {"level": level}})
                }
                BytesToBytes::Lz4 { acceleration } => {
                    json!({"name": "numcodecs.lz4", "configuration": {"acceleration": acceleration}})
                }
                BytesToBytes::Crc32c => json!({"name": "crc32c"}),
            });
        }
        Value::Array(list)
    }
}

impl ShardingCodec {
    /// A sharding codec with zarr-python's default index: `bytes(little)` + `crc32c`, at
    /// the end of the shard.
    pub fn new(chunk_shape: Vec<u64>, codecs: CodecChain) -> Self {
        Self {
            chunk_shape,
            codecs,
            index_codecs: CodecChain::little_endian(vec![BytesToBytes::Crc32c]),
            index_location: IndexLocation::End,
        }
    }
}

/// One parsed codec, classified by kind.
enum Parsed {
    ArrayToArray(ArrayToArray),
    ArrayToBytes(ArrayToBytes),
    BytesToBytes(BytesToBytes),
}

/// A codec's `configuration` object (or a v2 compressor's object without its `id`),
/// consumed key by key so that unknown keys can be reported rather than silently ignored.
pub(crate) struct Config {
    pub(crate) codec: &'static str,
    pub(crate) map: Map<String, Value>,
}

impl Config {
    pub(crate) fn take(&mut self, field: &'static str) -> Option<Value> {
        self.map.remove(field)
    }

    pub(crate) fn err(&self, field: &'static str, reason: impl Into<String>) -> Error {
        Error::CodecConfig { codec: self.codec, field, reason: reason.into() }
    }

    pub(crate) fn required(&mut self, field: &'static str) -> Result<Value> {
        self.take(field).ok_or_else(|| self.err(field, "missing"))
    }

    pub(crate) fn int(&self, field: &'static str, v: &Value, lo: i64, hi: i64) -> Result<i64> {
        v.as_i64()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| self.err(field, format!("must be an integer in {lo}..={hi}, got {v}")))
    }

    fn shape(&self, field: &'static str, v: &Value) -> Result<Vec<u64>> {
        let list = v.as_array().ok_or_else(|| self.err(field, "must be a list of integers"))?;
        list.iter()
            .map(|x| {
                x.as_u64()
                    .ok_or_else(|| self.err(field, format!("{x} is not a non-negative integer")))
            })
            .collect()
    }

    pub(crate) fn finish(self) -> Result<()> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(self.err("configuration", format!("unknown key `{k}`"))),
        }
    }
}

/// Known codec names, so that configuration errors can carry a `&'static str`.
const CODEC_NAMES: [&str; 9] = [
    "transpose",
    "bytes",
    "sharding_indexed",
    "zstd",
    "blosc",
    "gzip",
    "crc32c",
    "numcodecs.zlib",
    "numcodecs.lz4",
];

fn parse_codec(entry: &Value, data_type: DataType, shape: &[u64]) -> Result<Parsed> {
    // The spec allows an extension point to be a bare name string.
    let (name, config) = match entry {
        Value::String(s) => (s.as_str(), Map::new()),
        Value::Object(obj) => {
            let name =
                obj.get("name").and_then(Value::as_str).ok_or_else(|| Error::InvalidField {
                    field: "codecs",
                    reason: format!("codec entry {entry} has no string `name`"),
                })?;
            for k in obj.keys() {
                if !matches!(k.as_str(), "name" | "configuration" | "must_understand") {
                    return Err(Error::InvalidField {
                        field: "codecs",
                        reason: format!("codec `{name}` has unknown key `{k}`"),
                    });
                }
            }
            let config = match obj.get("configuration") {
                None => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(other) => {
                    return Err(Error::InvalidField {
                        field: "codecs",
                        reason: format!("codec `{name}` configuration {other} is not an object"),
                    });
                }
            };
            (name, config)
        }
        other => {
            return Err(Error::InvalidField {
                field: "codecs",
                reason: format!("codec entry {other} is neither an object nor a name"),
            });
        }
    };
    let codec = CODEC_NAMES
        .into_iter()
        .find(|n| *n == name)
        .ok_or_else(|| Error::Unsupported { codec: name.to_owned() })?;
    let mut cfg = Config { codec, map: config };
    let parsed = match codec {
        "transpose" => {
            let v = cfg.required("order")?;
            let order = cfg.shape("order", &v)?;
            let rank = shape.len();
            let mut seen = vec![false; rank];
            for &o in &order {
                match usize::try_from(o).ok().and_then(|i| seen.get_mut(i)) {
                    Some(s) if !*s => *s = true,
                    _ => {
                        return Err(
                            cfg.err("order", format!("{v} is not a permutation of 0..{rank}"))
                        );
                    }
                }
            }
            if order.len() != rank {
                return Err(cfg.err("order", format!("{v} is not a permutation of 0..{rank}")));
            }
            // Every entry was checked to be < rank, so the casts are exact.
            let order = order.into_iter().map(|o| o as usize).collect();
            Parsed::ArrayToArray(ArrayToArray::Transpose { order })
        }
        "bytes" => {
            let endian = match cfg.take("endian") {
                None if data_type.size() == 1 => None,
                None => {
                    return Err(cfg.err(
                        "endian",
                        format!("required for the {}-byte data type {data_type}", data_type.size()),
                    ));
                }
                Some(v) => Some(match v.as_str() {
                    Some("little") => Endian::Little,
                    Some("big") => Endian::Big,
                    _ => return Err(cfg.err("endian", format!("{v} is not \"little\" or \"big\""))),
                }),
            };
            Parsed::ArrayToBytes(ArrayToBytes::Bytes { endian })
        }
        "sharding_indexed" => Parsed::ArrayToBytes(ArrayToBytes::Sharding(Box::new(
            parse_sharding(&mut cfg, data_type, shape)?,
        ))),
        "zstd" => Parsed::BytesToBytes(parse_zstd(&mut cfg)?),
        "blosc" => {
            let v = cfg.required("shuffle")?;
            let shuffle = BloscShuffle::ALL
                .into_iter()
                .find(|c| v.as_str() == Some(c.name()))
                .ok_or_else(|| {
                    cfg.err("shuffle", format!("{v} is not one of noshuffle, shuffle, bitshuffle"))
                })?;
            Parsed::BytesToBytes(parse_blosc(&mut cfg, shuffle, Required::Yes)?)
        }
        "gzip" => {
            Parsed::BytesToBytes(BytesToBytes::Gzip { level: parse_deflate_level(&mut cfg)? })
        }
        "numcodecs.zlib" => {
            Parsed::BytesToBytes(BytesToBytes::Zlib { level: parse_deflate_level(&mut cfg)? })
        }
        "numcodecs.lz4" => Parsed::BytesToBytes(parse_lz4(&mut cfg)?),
        // "crc32c" is the only name left.
        _ => Parsed::BytesToBytes(BytesToBytes::Crc32c),
    };
    cfg.finish()?;
    Ok(parsed)
}

/// Whether a configuration key without a default must be present (v3 codec specs) or
/// takes numcodecs' default (v2 compressors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Required {
    Yes,
    NumcodecsDefault,
}

/// `zstd`: `level` (default 0) and `checksum` (default false), in v3 and numcodecs alike.
pub(crate) fn parse_zstd(cfg: &mut Config) -> Result<BytesToBytes> {
    let level = match cfg.take("level") {
        None => 0,
        // zstd accepts negative "fast" levels down to -131072 and up to 22.
        Some(v) => cfg.int("level", &v, -131_072, 22)?,
    };
    let checksum = match cfg.take("checksum") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(v) => return Err(cfg.err("checksum", format!("{v} is not a boolean"))),
    };
    // The range check above makes the cast exact.
    Ok(BytesToBytes::Zstd { level: level as i32, checksum })
}

/// `blosc` but its `shuffle`, which v3 spells as a name and numcodecs as a number:
/// `cname`, `clevel`, `typesize` (optional) and `blocksize` (0, automatic, by default).
/// numcodecs' defaults for an absent `cname` and `clevel` are `lz4` and 5.
pub(crate) fn parse_blosc(
    cfg: &mut Config,
    shuffle: BloscShuffle,
    required: Required,
) -> Result<BytesToBytes> {
    let take = |cfg: &mut Config, field, default: Value| match required {
        Required::Yes => cfg.required(field),
        Required::NumcodecsDefault => Ok(cfg.take(field).unwrap_or(default)),
    };
    let v = take(cfg, "cname", "lz4".into())?;
    let cname =
        BloscCname::ALL.into_iter().find(|c| v.as_str() == Some(c.name())).ok_or_else(|| {
            cfg.err("cname", format!("{v} is not one of blosclz, lz4, lz4hc, snappy, zlib, zstd"))
        })?;
    let v = take(cfg, "clevel", 5.into())?;
    let clevel = cfg.int("clevel", &v, 0, 9)? as u8;
    let typesize = match cfg.take("typesize") {
        None | Some(Value::Null) => None,
        Some(v) => Some(cfg.int("typesize", &v, 1, i64::from(u32::MAX))? as u32),
    };
    let blocksize = match cfg.take("blocksize") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| cfg.err("blocksize", format!("{v} is not a non-negative integer")))?,
    };
    Ok(BytesToBytes::Blosc { cname, clevel, shuffle, typesize, blocksize })
}

/// The required `level` (0..=9) of `gzip` and `zlib`.
pub(crate) fn parse_deflate_level(cfg: &mut Config) -> Result<u32> {
    let v = cfg.required("level")?;
    // The range check makes the cast exact.
    Ok(cfg.int("level", &v, 0, 9)? as u32)
}

/// numcodecs' `lz4`: `acceleration` (default 1; numcodecs treats values ≤ 0 as 1).
pub(crate) fn parse_lz4(cfg: &mut Config) -> Result<BytesToBytes> {
    let acceleration = match cfg.take("acceleration") {
        None => 1,
        Some(v) => cfg.int("acceleration", &v, i64::from(i32::MIN), i64::from(i32::MAX))?,
    };
    // The range check makes the cast exact.
    Ok(BytesToBytes::Lz4 { acceleration: acceleration as i32 })
}

/// `sharding_indexed` configuration (sharding codec spec §"Configuration parameters").
fn parse_sharding(cfg: &mut Config, data_type: DataType, shape: &[u64]) -> Result<ShardingCodec> {
    let v = cfg.required("chunk_shape")?;
    let chunk_shape = cfg.shape("chunk_shape", &v)?;
    if chunk_shape.len() != shape.len() {
        return Err(cfg.err(
            "chunk_shape",
            format!("{v} has rank {}, the shard has rank {}", chunk_shape.len(), shape.len()),
        ));
    }
    let mut chunks_per_shard = Vec::with_capacity(shape.len() + 1);
    for (axis, (&c, &s)) in chunk_shape.iter().zip(shape).enumerate() {
        if c == 0 || s % c != 0 {
            return Err(cfg.err(
                "chunk_shape",
                format!("inner extent {c} on axis {axis} does not divide the shard extent {s}"),
            ));
        }
        chunks_per_shard.push(s / c);
    }
    let codecs = CodecChain::parse(&cfg.required("codecs")?, data_type, &chunk_shape)?;
    // The index is an array of shape chunks_per_shard + [2] of uint64.
    chunks_per_shard.push(2);
    let index_codecs = match cfg.take("index_codecs") {
        Some(v) => CodecChain::parse(&v, DataType::UInt64, &chunks_per_shard)?,
        None => {
            return Err(cfg.err("index_codecs", "missing (zarr-python writes `bytes` + `crc32c`)"));
        }
    };
    let index_location = match cfg.take("index_location") {
        None => IndexLocation::End,
        Some(v) => match v.as_str() {
            Some("start") => IndexLocation::Start,
            Some("end") => IndexLocation::End,
            _ => return Err(cfg.err("index_location", format!("{v} is not \"start\" or \"end\""))),
        },
    };
    let codec = ShardingCodec { chunk_shape, codecs, index_codecs, index_location };
    IndexFormat::of(&codec.index_codecs)?;
    Ok(codec)
}
/// The index codec chain reduced to the two facts decoding needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexFormat {
    pub(crate) endian: Endian,
    pub(crate) crc32c: bool,
}

impl IndexFormat {
    /// The format of `chain` (a shard's `index_codecs`).
    ///
    /// # Errors
    /// `CodecChain` naming what is not supported.
    pub(crate) fn of(chain: &CodecChain) -> Result<Self> {
        if !chain.array_to_array.is_empty() {
            return Err(Error::CodecChain {
                reason: "shard index_codecs must not contain array→array codecs",
            });
        }
        let endian = match chain.array_to_bytes {
            // u64 entries need an endianness; the spec's default is little.
            ArrayToBytes::Bytes { endian } => endian.unwrap_or(Endian::Little),
            ArrayToBytes::Sharding(_) => {
                return Err(Error::CodecChain {
                    reason: "shard index_codecs must use `bytes`, not `sharding_indexed`",
                });
            }
        };
        let crc32c = match chain.bytes_to_bytes.as_slice() {
            [] => false,
            [BytesToBytes::Crc32c] => true,
            _ => {
                return Err(Error::CodecChain {
                    reason: "shard index_codecs support only `bytes` optionally followed by `crc32c`",
                });
            }
        };
        Ok(Self { endian, crc32c })
    }

    /// Bytes of an encoded index of `n_chunks` entries.
    ///
    /// # Errors
    /// `Overflow` for an impossible chunk count.
    pub(crate) fn encoded_len(self, n_chunks: u64) -> Result<u64> {
        n_chunks
            .checked_mul(16)
            .and_then(|b| b.checked_add(if self.crc32c { 4 } else { 0 }))
            .ok_or(Error::Overflow { what: "shard index length" })
    }
}
