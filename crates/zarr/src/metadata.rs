//! Array metadata: the one model ([`ArrayMetadata`]) and `zarr.json` for arrays (zarr v3
//! core spec §"Array metadata"): parsing, validation and serialization. zarr v2's
//! `.zarray` maps onto the same model in [`v2`].
//!
//! Spec: <https://zarr-specs.readthedocs.io/en/latest/v3/core/v3.0.html#array-metadata>.
//! A key the spec does not define is an error unless its value is an object with
//! `"must_understand": false` (core spec §"Extension points").

pub mod v2;

use serde_json::{Map, Value, json};

use crate::codec::{ArrayToBytes, CodecChain, ShardingCodec};
use crate::dtype::{DataType, FillValue};
use crate::error::{Error, Result};

/// Maximum rank the crate accepts.
pub const MAX_RANK: usize = 32;

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

/// The zarr format version an array's metadata was read from (or is written as).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZarrFormat {
    /// `.zarray` (+ `.zattrs`): zarr v2, read through [`ArrayMetadata::parse_v2`].
    V2,
    /// `zarr.json`: zarr v3, read through [`ArrayMetadata::parse`].
    V3,
}

impl ZarrFormat {
    /// The version number (`2` or `3`).
    pub fn number(self) -> u8 {
        match self {
            ZarrFormat::V2 => 2,
            ZarrFormat::V3 => 3,
        }
    }

    /// The key, relative to the array, of the document that holds the array's metadata.
    pub fn metadata_key(self) -> &'static str {
        match self {
            ZarrFormat::V2 => ".zarray",
            ZarrFormat::V3 => "zarr.json",
        }
    }
}

impl std::fmt::Display for ZarrFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "zarr v{}", self.number())
    }
}

/// A parsed, validated array's metadata, from a v3 `zarr.json` or a v2 `.zarray`.
///
/// `chunk_shape` is the regular grid's chunk shape: with `sharding_indexed` as the
/// array→bytes codec, that is the shard shape and the inner chunk shape is in
/// `codecs.array_to_bytes`. A v2 array is expressed in the same terms (see [`v2`]): its
/// `order: "F"` is a `transpose`, its dtype's byte order the `bytes` codec's endian, its
/// compressor the one bytes→bytes codec; nothing downstream needs to know its format.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayMetadata {
    /// Which format the metadata was read from (tools say so; decoding does not care).
    pub zarr_format: ZarrFormat,
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

impl Separator {
    fn parse(v: &Value) -> Result<Self> {
        match v.as_str() {
            Some("/") => Ok(Separator::Slash),
            Some(".") => Ok(Separator::Dot),
            _ => Err(Error::InvalidField {
                field: "chunk_key_encoding.configuration.separator",
                reason: format!("{v} is not \"/\" or \".\""),
            }),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Separator::Slash => "/",
            Separator::Dot => ".",
        }
    }
}

impl ChunkKeyEncoding {
    fn parse(v: &Value) -> Result<Self> {
        let (name, config) = name_and_configuration(v, "chunk_key_encoding")?;
        let separator = match config.get("separator") {
            None => None,
            Some(s) => Some(Separator::parse(s)?),
        };
        if let Some(k) = config.keys().find(|k| *k != "separator") {
            return Err(Error::InvalidField {
                field: "chunk_key_encoding.configuration",
                reason: format!("unknown key `{k}`"),
            });
        }
        match name {
            "default" => {
                Ok(ChunkKeyEncoding::Default { separator: separator.unwrap_or(Separator::Slash) })
            }
            "v2" => Ok(ChunkKeyEncoding::V2 { separator: separator.unwrap_or(Separator::Dot) }),
            other => {
                Err(Error::UnsupportedGrid { what: "chunk key encoding", name: other.to_owned() })
            }
        }
    }

    fn to_json_value(self) -> Value {
        let (name, sep) = match self {
            ChunkKeyEncoding::Default { separator } => ("default", separator),
            ChunkKeyEncoding::V2 { separator } => ("v2", separator),
        };
        json!({"name": name, "configuration": {"separator": sep.as_str()}})
    }
}

/// Splits an extension-point value (`"name"` or `{"name": ..., "configuration": {...}}`).
fn name_and_configuration<'a>(
    v: &'a Value,
    field: &'static str,
) -> Result<(&'a str, Map<String, Value>)> {
    match v {
        Value::String(s) => Ok((s, Map::new())),
        Value::Object(obj) => {
            let name = obj.get("name").and_then(Value::as_str).ok_or_else(|| {
                Error::InvalidField { field, reason: "has no string `name`".into() }
            })?;
            if let Some(k) = obj
                .keys()
                .find(|k| !matches!(k.as_str(), "name" | "configuration" | "must_understand"))
            {
                return Err(Error::InvalidField { field, reason: format!("unknown key `{k}`") });
            }
            match obj.get("configuration") {
                None => Ok((name, Map::new())),
                Some(Value::Object(m)) => Ok((name, m.clone())),
                Some(other) => Err(Error::InvalidField {
                    field,
                    reason: format!("configuration {other} is not an object"),
                }),
            }
        }
        other => Err(Error::InvalidField {
            field,
            reason: format!("{other} is neither an object nor a name"),
        }),
    }
}

pub(crate) fn shape_field(v: &Value, field: &'static str) -> Result<Vec<u64>> {
    let list = v.as_array().ok_or_else(|| Error::InvalidField {
        field,
        reason: format!("{v} is not a list of integers"),
    })?;
    list.iter()
        .map(|x| {
            x.as_u64().ok_or_else(|| Error::InvalidField {
                field,
                reason: format!("{x} is not a non-negative integer"),
            })
        })
        .collect()
}

/// Parses a metadata document, which must be a JSON object.
pub(crate) fn json_object(bytes: &[u8]) -> Result<Map<String, Value>> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| Error::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    match doc {
        Value::Object(obj) => Ok(obj),
        _ => Err(Error::InvalidField {
            field: "(root)",
            reason: "the metadata must be a JSON object".into(),
        }),
    }
}

/// Checks a document's `zarr_format` against the format its file holds.
pub(crate) fn check_format(v: &Value, expected: ZarrFormat) -> Result<()> {
    match v.as_u64() {
        Some(n) if n == u64::from(expected.number()) => Ok(()),
        Some(n) => Err(Error::UnsupportedFormat { zarr_format: n, expected: expected.number() }),
        None => Err(Error::InvalidField {
            field: "zarr_format",
            reason: format!("{v} is not an integer"),
        }),
    }
}

/// Checks an array's rank (1..=[`MAX_RANK`]) and that its chunk shape (the metadata
/// field `chunk_field`) has the same rank and no zero extent.
pub(crate) fn check_grid(
    shape: &[u64],
    chunk_shape: &[u64],
    chunk_field: &'static str,
) -> Result<()> {
    if shape.is_empty() || shape.len() > MAX_RANK {
        return Err(Error::Rank { rank: shape.len() });
    }
    if chunk_shape.len() != shape.len() {
        return Err(Error::InvalidField {
            field: chunk_field,
            reason: format!(
                "rank {} differs from the array's rank {}",
                chunk_shape.len(),
                shape.len()
            ),
        });
    }
    if let Some(axis) = chunk_shape.iter().position(|&c| c == 0) {
        return Err(Error::InvalidField {
            field: chunk_field,
            reason: format!("extent 0 on axis {axis}"),
        });
    }
    Ok(())
}

/// The top-level keys the core spec defines for an array.
const KNOWN_KEYS: [&str; 11] = [
    "zarr_format",
    "node_type",
    "shape",
    "data_type",
    "chunk_grid",
    "chunk_key_encoding",
    "fill_value",
    "codecs",
    "attributes",
    "storage_transformers",
    "dimension_names",
];

impl ArrayMetadata {
    /// Parses and validates the bytes of an array's `zarr.json`.
    ///
    /// # Errors
    /// `Json` for bytes that are not JSON; `UnsupportedFormat` for any version but 3 (a
    /// v2 `.zarray` is read by [`ArrayMetadata::parse_v2`]); `NotAnArray` for groups;
    /// `MissingField`, `InvalidField`, `UnknownField`, `Rank`, `UnsupportedDataType`, `FillValue`, `UnsupportedGrid`,
    /// `UnsupportedStorageTransformer`, and the codec errors of [`CodecChain::parse`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let obj = json_object(bytes)?;
        let get = |field: &'static str| obj.get(field).ok_or(Error::MissingField { field });
        check_format(get("zarr_format")?, ZarrFormat::V3)?;
        match get("node_type")?.as_str() {
            Some("array") => {}
            Some(other) => return Err(Error::NotAnArray { node_type: other.to_owned() }),
            None => {
                return Err(Error::InvalidField {
                    field: "node_type",
                    reason: "must be a string".into(),
                });
            }
        }
        for (k, v) in &obj {
            let ignorable = v.get("must_understand") == Some(&Value::Bool(false));
            if !KNOWN_KEYS.contains(&k.as_str()) && !ignorable {
                return Err(Error::UnknownField { field: k.clone() });
            }
        }

        let shape = shape_field(get("shape")?, "shape")?;
        let data_type = match get("data_type")? {
            Value::String(s) => DataType::parse(s)?,
            // Extension data types are objects; none of them is supported.
            Value::Object(o) => {
                let name = o.get("name").and_then(Value::as_str).unwrap_or("(unnamed)");
                return Err(Error::UnsupportedDataType { name: name.to_owned() });
            }
            other => {
                return Err(Error::InvalidField {
                    field: "data_type",
                    reason: format!("{other} is not a string"),
                });
            }
        };

        let (grid, grid_cfg) = name_and_configuration(get("chunk_grid")?, "chunk_grid")?;
        if grid != "regular" {
            return Err(Error::UnsupportedGrid { what: "chunk grid", name: grid.to_owned() });
        }
        if let Some(k) = grid_cfg.keys().find(|k| *k != "chunk_shape") {
            return Err(Error::InvalidField {
                field: "chunk_grid.configuration",
                reason: format!("unknown key `{k}`"),
            });
        }
        let chunk_shape = shape_field(
            grid_cfg
                .get("chunk_shape")
                .ok_or(Error::MissingField { field: "chunk_grid.configuration.chunk_shape" })?,
            "chunk_grid.configuration.chunk_shape",
        )?;
        check_grid(&shape, &chunk_shape, "chunk_grid.configuration.chunk_shape")?;

        let chunk_key_encoding = ChunkKeyEncoding::parse(get("chunk_key_encoding")?)?;
        let fill_value = parse_fill_value(get("fill_value")?, data_type)?;
        let codecs = CodecChain::parse(get("codecs")?, data_type, &chunk_shape)?;

        let dimension_names = match obj.get("dimension_names") {
            None | Some(Value::Null) => None,
            Some(Value::Array(names)) => {
                if names.len() != shape.len() {
                    return Err(Error::InvalidField {
                        field: "dimension_names",
                        reason: format!("{} names for rank {}", names.len(), shape.len()),
                    });
                }
                let names = names
                    .iter()
                    .map(|n| match n {
                        Value::Null => Ok(None),
                        Value::String(s) => Ok(Some(s.clone())),
                        other => Err(Error::InvalidField {
                            field: "dimension_names",
                            reason: format!("{other} is neither a string nor null"),
                        }),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Some(names)
            }
            Some(other) => {
                return Err(Error::InvalidField {
                    field: "dimension_names",
                    reason: format!("{other} is not a list"),
                });
            }
        };
        let attributes = match obj.get("attributes") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(Error::InvalidField {
                    field: "attributes",
                    reason: format!("{other} is not an object"),
                });
            }
        };
        match obj.get("storage_transformers") {
            None => {}
            Some(Value::Array(list)) => {
                if let Some(first) = list.first() {
                    let name = first
                        .get("name")
                        .and_then(Value::as_str)
                        .or(first.as_str())
                        .unwrap_or("(unnamed)");
                    return Err(Error::UnsupportedStorageTransformer { name: name.to_owned() });
                }
            }
            Some(other) => {
                return Err(Error::InvalidField {
                    field: "storage_transformers",
                    reason: format!("{other} is not a list"),
                });
            }
        }

        Ok(Self {
            zarr_format: ZarrFormat::V3,
            shape,
            data_type,
            chunk_shape,
            chunk_key_encoding,
            fill_value,
            codecs,
            dimension_names,
            attributes,
        })
    }

    /// The metadata as `zarr.json` text that [`ArrayMetadata::parse`] reads back equal
    /// (for a v3 array; a v2 array's model comes back as the same array in v3, with
    /// `zarr_format` V3).
    pub fn to_json(&self) -> String {
        let mut obj = Map::new();
        obj.insert("zarr_format".into(), 3.into());
        obj.insert("node_type".into(), "array".into());
        obj.insert("shape".into(), json!(self.shape));
        obj.insert("data_type".into(), self.data_type.name().into());
        obj.insert(
            "chunk_grid".into(),
            json!({"name": "regular", "configuration": {"chunk_shape": self.chunk_shape}}),
        );
        obj.insert("chunk_key_encoding".into(), self.chunk_key_encoding.to_json_value());
        obj.insert("fill_value".into(), fill_value_to_json(&self.fill_value, self.data_type));
        obj.insert("codecs".into(), self.codecs.to_json_value());
        obj.insert("attributes".into(), Value::Object(self.attributes.clone()));
        if let Some(names) = &self.dimension_names {
            obj.insert("dimension_names".into(), json!(names));
        }
        // Serializing a map of plain values cannot fail; fall back to "{}" rather than panic.
        serde_json::to_string_pretty(&Value::Object(obj)).unwrap_or_else(|_| "{}".to_owned())
    }

    /// An unsharded array: chunks of `chunk_shape` encoded by `codecs`, `default` keys
    /// with `/`, no dimension names or attributes.
    ///
    /// # Errors
    /// Whatever [`ArrayMetadata::parse`] would report for the resulting document.
    pub fn chunked(
        shape: Vec<u64>,
        chunk_shape: Vec<u64>,
        data_type: DataType,
        codecs: CodecChain,
        fill_value: FillValue,
    ) -> Result<Self> {
        let meta = Self {
            zarr_format: ZarrFormat::V3,
            shape,
            data_type,
            chunk_shape,
            chunk_key_encoding: ChunkKeyEncoding::Default { separator: Separator::Slash },
            fill_value,
            codecs,
            dimension_names: None,
            attributes: Map::new(),
        };
        meta.validate()?;
        Ok(meta)
    }

    /// A sharded array: shards of `shard_shape` holding inner chunks of
    /// `inner_chunk_shape` encoded by `inner_codecs`, with zarr-python's default index
    /// (`bytes` little-endian + `crc32c`, at the end).
    ///
    /// # Errors
    /// Whatever [`ArrayMetadata::parse`] would report for the resulting document.
    pub fn sharded(
        shape: Vec<u64>,
        shard_shape: Vec<u64>,
        inner_chunk_shape: Vec<u64>,
        data_type: DataType,
        inner_codecs: CodecChain,
        fill_value: FillValue,
    ) -> Result<Self> {
        let sharding = ShardingCodec::new(inner_chunk_shape, inner_codecs);
        let codecs = CodecChain {
            array_to_array: Vec::new(),
            array_to_bytes: ArrayToBytes::Sharding(Box::new(sharding)),
            bytes_to_bytes: Vec::new(),
        };
        Self::chunked(shape, shard_shape, data_type, codecs, fill_value)
    }

    /// Checks the metadata as the parser of its format would (by a serialization round
    /// trip: `zarr.json` for v3, `.zarray` and `.zattrs` for v2).
    ///
    /// # Errors
    /// As [`ArrayMetadata::parse`] or [`ArrayMetadata::parse_v2`]; `NotV2` for a v2 model
    /// that v2 cannot express; `InvalidField` if the fill value's size disagrees with the
    /// data type or the model does not read back equal.
    pub fn validate(&self) -> Result<()> {
        if self.fill_value.as_ne_bytes().len() != self.data_type.size() {
            return Err(Error::FillValue {
                data_type: self.data_type.name(),
                reason: "byte length does not match the data type's size",
            });
        }
        let back = match self.zarr_format {
            ZarrFormat::V3 => Self::parse(self.to_json().as_bytes())?,
            ZarrFormat::V2 => {
                let zattrs = self.to_zattrs();
                Self::parse_v2(self.to_zarray()?.as_bytes(), zattrs.as_deref().map(str::as_bytes))?
            }
        };
        if back != *self {
            return Err(Error::InvalidField {
                field: "(metadata)",
                reason: format!(
                    "does not survive a {} round trip",
                    self.zarr_format.metadata_key()
                ),
            });
        }
        Ok(())
    }

    /// The documents that hold this array's metadata, as `(key relative to the array,
    /// text)`: `zarr.json` for v3; `.zarray`, and `.zattrs` when there are attributes,
    /// for v2.
    ///
    /// # Errors
    /// `NotV2` for a v2 model that v2 cannot express.
    pub fn documents(&self) -> Result<Vec<(&'static str, String)>> {
        Ok(match self.zarr_format {
            ZarrFormat::V3 => vec![("zarr.json", self.to_json())],
            ZarrFormat::V2 => {
                let mut docs = vec![(".zarray", self.to_zarray()?)];
                docs.extend(self.to_zattrs().map(|a| (".zattrs", a)));
                docs
            }
        })
    }
}

/// Canonical quiet-NaN bit patterns, which serialize as `"NaN"`.
const NAN_F16: u16 = 0x7e00;
const NAN_BF16: u16 = 0x7fc0;
const NAN_F32: u32 = 0x7fc0_0000;
const NAN_F64: u64 = 0x7ff8_0000_0000_0000;

/// Parses `fill_value` for `dt` (core spec §"fill_value"): integers range-checked,
/// booleans for `bool`, floats as JSON numbers, `"NaN"`, `"Infinity"`, `"-Infinity"`, or a
/// `"0x"` hex string of exactly the type's bit width.
pub(crate) fn parse_fill_value(v: &Value, dt: DataType) -> Result<FillValue> {
    let bad = |reason: &'static str| Error::FillValue { data_type: dt.name(), reason };
    let int_range = "integer out of range for the data type";
    let bytes: Vec<u8> = match dt {
        DataType::Bool => match v {
            Value::Bool(b) => vec![u8::from(*b)],
            _ => return Err(bad("must be true or false")),
        },
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let Value::Number(n) = v else { return Err(bad("must be a JSON integer")) };
            let i = n.as_i64().ok_or_else(|| {
                if n.is_u64() { bad(int_range) } else { bad("must be a JSON integer") }
            })?;
            match dt {
                DataType::Int8 => {
                    i8::try_from(i).map_err(|_| bad(int_range))?.to_ne_bytes().to_vec()
                }
                DataType::Int16 => {
                    i16::try_from(i).map_err(|_| bad(int_range))?.to_ne_bytes().to_vec()
                }
                DataType::Int32 => {
                    i32::try_from(i).map_err(|_| bad(int_range))?.to_ne_bytes().to_vec()
                }
                _ => i.to_ne_bytes().to_vec(),
            }
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let Value::Number(n) = v else { return Err(bad("must be a JSON integer")) };
            let u = n.as_u64().ok_or_else(|| {
                if n.is_i64() { bad(int_range) } else { bad("must be a JSON integer") }
            })?;
            match dt {
                DataType::UInt8 => {
                    u8::try_from(u).map_err(|_| bad(int_range))?.to_ne_bytes().to_vec()
                }
                DataType::UInt16 => {
                    u16::try_from(u).map_err(|_| bad(int_range))?.to_ne_bytes().to_vec()
                }
                DataType::UInt32 => {
                    u32::try_from(u).map_err(|_| bad(int_range))?.to_ne_bytes().to_vec()
                }
                _ => u.to_ne_bytes().to_vec(),
            }
        }
        DataType::Float16 | DataType::BFloat16 | DataType::Float32 | DataType::Float64 => {
            parse_float_fill(v, dt)?
        }
    };
    FillValue::from_ne_bytes(dt, &bytes)
}

fn parse_float_fill(v: &Value, dt: DataType) -> Result<Vec<u8>> {
    let bad = |reason: &'static str| Error::FillValue { data_type: dt.name(), reason };
    let x: f64 = match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| bad("not representable as a float"))?,
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        Value::String(s) => {
            let hex = s.strip_prefix("0x").ok_or_else(|| {
                bad("string must be \"NaN\", \"Infinity\", \"-Infinity\" or a 0x hex bit pattern")
            })?;
            if hex.len() != dt.size() * 2 {
                return Err(bad(
                    "hex bit pattern must have exactly two digits per byte of the type",
                ));
            }
            let bits = u64::from_str_radix(hex, 16)
                .map_err(|_| bad("invalid hex digits in bit pattern"))?;
            // from_str_radix accepts a leading '+', which the spec does not.
            if hex.starts_with('+') {
                return Err(bad("invalid hex digits in bit pattern"));
            }
            // The width was checked above, so the narrowing casts are exact.
            return Ok(match dt.size() {
                2 => (bits as u16).to_ne_bytes().to_vec(),
                4 => (bits as u32).to_ne_bytes().to_vec(),
                _ => bits.to_ne_bytes().to_vec(),
            });
        }
        _ => {
            return Err(bad(
                "must be a number, \"NaN\", \"Infinity\", \"-Infinity\" or a 0x hex string",
            ));
        }
    };
    let overflow = "finite value overflows the data type";
    Ok(match dt {
        DataType::Float16 => {
            let h = if x.is_nan() { half::f16::from_bits(NAN_F16) } else { half::f16::from_f64(x) };
            if x.is_finite() && h.is_infinite() {
                return Err(bad(overflow));
            }
            h.to_ne_bytes().to_vec()
        }
        DataType::BFloat16 => {
            let h =
                if x.is_nan() { half::bf16::from_bits(NAN_BF16) } else { half::bf16::from_f64(x) };
            if x.is_finite() && h.is_infinite() {
                return Err(bad(overflow));
            }
            h.to_ne_bytes().to_vec()
        }
        DataType::Float32 => {
            let f = if x.is_nan() { f32::from_bits(NAN_F32) } else { x as f32 };
            if x.is_finite() && f.is_infinite() {
                return Err(bad(overflow));
            }
            f.to_ne_bytes().to_vec()
        }
        _ => (if x.is_nan() { f64::from_bits(NAN_F64) } else { x }).to_ne_bytes().to_vec(),
    })
}

/// The JSON spelling of a fill value: numbers where exact, `"NaN"` for the canonical NaN,
/// `"Infinity"`/`"-Infinity"`, and a hex bit pattern for any other NaN.
pub(crate) fn fill_value_to_json(fill: &FillValue, dt: DataType) -> Value {
    let b = fill.as_ne_bytes();
    let arr8 = |b: &[u8]| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
        a
    };
    let a = arr8(b);
    let a2 = [a[0], a[1]];
    let a4 = [a[0], a[1], a[2], a[3]];
    let v = match dt {
        DataType::Bool => Value::Bool(a[0] != 0),
        DataType::Int8 => i8::from_ne_bytes([a[0]]).into(),
        DataType::Int16 => i16::from_ne_bytes(a2).into(),
        DataType::Int32 => i32::from_ne_bytes(a4).into(),
        DataType::Int64 => i64::from_ne_bytes(a).into(),
        DataType::UInt8 => a[0].into(),
        DataType::UInt16 => u16::from_ne_bytes(a2).into(),
        DataType::UInt32 => u32::from_ne_bytes(a4).into(),
        DataType::UInt64 => u64::from_ne_bytes(a).into(),
        DataType::Float16 => {
            let bits = u16::from_ne_bytes(a2);
            float_json(half::f16::from_bits(bits).to_f64(), u64::from(bits), u64::from(NAN_F16), 4)
        }
        DataType::BFloat16 => {
            let bits = u16::from_ne_bytes(a2);
            float_json(
                half::bf16::from_bits(bits).to_f64(),
                u64::from(bits),
                u64::from(NAN_BF16),
                4,
            )
        }
        DataType::Float32 => {
            let bits = u32::from_ne_bytes(a4);
            float_json(f64::from(f32::from_bits(bits)), u64::from(bits), u64::from(NAN_F32), 8)
        }
        DataType::Float64 => {
            let bits = u64::from_ne_bytes(a);
            float_json(f64::from_bits(bits), bits, NAN_F64, 16)
        }
    };
    // serde_json's default float parser may be one ulp off for some decimal texts; where
    // the number would not read back exactly, write the exact bit pattern instead.
    if let Value::Number(n) = &v
        && dt.is_float()
    {
        let back = serde_json::from_str::<Value>(&n.to_string())
            .ok()
            .and_then(|x| parse_float_fill(&x, dt).ok());
        if back.as_deref() != Some(b) {
            let width = dt.size() * 2;
            let bits = if cfg!(target_endian = "big") {
                u64::from_be_bytes(a) >> (64 - 8 * dt.size())
            } else {
                u64::from_le_bytes(a)
            };
            return format!("0x{bits:0width$x}").into();
        }
    }
    v
}

fn float_json(x: f64, bits: u64, canonical_nan: u64, digits: usize) -> Value {
    if x.is_nan() {
        if bits == canonical_nan { "NaN".into() } else { format!("0x{bits:0digits$x}").into() }
    } else if x == f64::INFINITY {
        "Infinity".into()
    } else if x == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        // Finite f64 values always convert to a JSON number.
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests;
