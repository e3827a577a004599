//! `zarr.json` for arrays (zarr v3 core spec §"Array metadata"): parsing, validation and
//! serialization.
//!
//! Spec: <https://zarr-specs.readthedocs.io/en/latest/v3/core/v3.0.html#array-metadata>.
//! A key the spec does not define is an error unless its value is an object with
//! `"must_understand": false` (core spec §"Extension points").

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

fn shape_field(v: &Value, field: &'static str) -> Result<Vec<u64>> {
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
    /// `Json` for bytes that are not JSON; `UnsupportedFormat` for zarr v2 (`.zarray`) or
    /// any version but 3; `NotAnArray` for groups; `MissingField`, `InvalidField`,
    /// `UnknownField`, `Rank`, `UnsupportedDataType`, `FillValue`, `UnsupportedGrid`,
    /// `UnsupportedStorageTransformer`, and the codec errors of [`CodecChain::parse`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| Error::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let Value::Object(obj) = doc else {
            return Err(Error::InvalidField {
                field: "(root)",
                reason: "zarr.json must be a JSON object".into(),
            });
        };
        let get = |field: &'static str| obj.get(field).ok_or(Error::MissingField { field });

        let format = get("zarr_format")?;
        match format.as_u64() {
            Some(3) => {}
            Some(n) => return Err(Error::UnsupportedFormat { zarr_format: n }),
            None => {
                return Err(Error::InvalidField {
                    field: "zarr_format",
                    reason: format!("{format} is not an integer"),
                });
            }
        }
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
        if shape.is_empty() || shape.len() > MAX_RANK {
            return Err(Error::Rank { rank: shape.len() });
        }
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
        if chunk_shape.len() != shape.len() {
            return Err(Error::InvalidField {
                field: "chunk_grid.configuration.chunk_shape",
                reason: format!(
                    "rank {} differs from the array's rank {}",
                    chunk_shape.len(),
                    shape.len()
                ),
            });
        }
        if let Some(axis) = chunk_shape.iter().position(|&c| c == 0) {
            return Err(Error::InvalidField {
                field: "chunk_grid.configuration.chunk_shape",
                reason: format!("extent 0 on axis {axis}"),
            });
        }

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

    /// The metadata as `zarr.json` text that [`ArrayMetadata::parse`] reads back equal.
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

    /// Checks the metadata as [`ArrayMetadata::parse`] would (by a serialization round trip).
    ///
    /// # Errors
    /// As [`ArrayMetadata::parse`]; `InvalidField` if the fill value's size disagrees with
    /// the data type.
    pub fn validate(&self) -> Result<()> {
        if self.fill_value.as_ne_bytes().len() != self.data_type.size() {
            return Err(Error::FillValue {
                data_type: self.data_type.name(),
                reason: "byte length does not match the data type's size",
            });
        }
        let back = Self::parse(self.to_json().as_bytes())?;
        if back != *self {
            return Err(Error::InvalidField {
                field: "(metadata)",
                reason: "does not survive a zarr.json round trip".into(),
            });
        }
        Ok(())
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
fn parse_fill_value(v: &Value, dt: DataType) -> Result<FillValue> {
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
fn fill_value_to_json(fill: &FillValue, dt: DataType) -> Value {
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
mod tests {
    use super::*;
    use crate::codec::{
        ArrayToArray, BloscCname, BloscShuffle, BytesToBytes, Endian, IndexLocation,
    };
    use proptest::prelude::*;

    /// A document as zarr-python 3 writes it for a sharded uint16 array.
    const ZARR_PYTHON_SHARDED: &str = r#"{
      "shape": [100, 60], "data_type": "uint16",
      "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [50, 30]}},
      "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
      "fill_value": 7,
      "codecs": [{"name": "sharding_indexed", "configuration": {
          "chunk_shape": [10, 15],
          "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                     {"name": "blosc", "configuration": {"typesize": 2, "cname": "zstd", "clevel": 5,
                                                          "shuffle": "bitshuffle", "blocksize": 0}}],
          "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
          "index_location": "start"}}],
      "attributes": {"resolution": [4, 4], "nested": {"a": null}},
      "dimension_names": ["z", null],
      "zarr_format": 3, "node_type": "array", "storage_transformers": []
    }"#;

    fn doc_with(key: &str, value: Value) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(ZARR_PYTHON_SHARDED).unwrap();
        v.as_object_mut().unwrap().insert(key.into(), value);
        serde_json::to_vec(&v).unwrap()
    }

    fn plain(dtype: &str, fill: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "zarr_format": 3, "node_type": "array", "shape": [4], "data_type": dtype,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2]}},
            "chunk_key_encoding": {"name": "default"},
            "fill_value": fill,
            "codecs": [{"name": "bytes", "configuration": {"endian": "big"}}],
        }))
        .unwrap()
    }

    fn fill(dtype: &str, fill: Value) -> Result<Vec<u8>> {
        ArrayMetadata::parse(&plain(dtype, fill)).map(|m| m.fill_value.as_ne_bytes().to_vec())
    }

    #[test]
    fn parses_a_zarr_python_sharded_document() {
        let m = ArrayMetadata::parse(ZARR_PYTHON_SHARDED.as_bytes()).unwrap();
        assert_eq!(m.shape, vec![100, 60]);
        assert_eq!(m.data_type, DataType::UInt16);
        assert_eq!(m.chunk_shape, vec![50, 30]);
        assert_eq!(m.chunk_key_encoding, ChunkKeyEncoding::Default { separator: Separator::Slash });
        assert_eq!(m.fill_value.as_ne_bytes(), 7u16.to_ne_bytes());
        assert_eq!(m.dimension_names, Some(vec![Some("z".to_owned()), None]));
        assert_eq!(m.attributes["resolution"], json!([4, 4]));
        let ArrayToBytes::Sharding(s) = &m.codecs.array_to_bytes else { panic!("not sharded") };
        assert_eq!(s.chunk_shape, vec![10, 15]);
        assert_eq!(s.index_location, IndexLocation::Start);
        assert_eq!(s.codecs.array_to_bytes, ArrayToBytes::Bytes { endian: Some(Endian::Little) });
        assert_eq!(
            s.codecs.bytes_to_bytes,
            vec![BytesToBytes::Blosc {
                cname: BloscCname::Zstd,
                clevel: 5,
                shuffle: BloscShuffle::BitShuffle,
                typesize: Some(2),
                blocksize: 0
            }]
        );
        assert_eq!(s.index_codecs.bytes_to_bytes, vec![BytesToBytes::Crc32c]);
        assert_eq!(ArrayMetadata::parse(m.to_json().as_bytes()).unwrap(), m);
    }

    #[test]
    fn groups_and_other_formats_are_rejected_by_name() {
        let group = br#"{"zarr_format": 3, "node_type": "group", "attributes": {}}"#;
        assert_eq!(
            ArrayMetadata::parse(group),
            Err(Error::NotAnArray { node_type: "group".into() })
        );
        let zarray = br#"{"zarr_format": 2, "shape": [10], "chunks": [5], "dtype": "<u2",
            "compressor": null, "fill_value": 0, "order": "C", "filters": null}"#;
        assert_eq!(ArrayMetadata::parse(zarray), Err(Error::UnsupportedFormat { zarr_format: 2 }));
        assert_eq!(
            ArrayMetadata::parse(&doc_with("zarr_format", json!(4))),
            Err(Error::UnsupportedFormat { zarr_format: 4 })
        );
        assert_eq!(ArrayMetadata::parse(b"{}"), Err(Error::MissingField { field: "zarr_format" }));
        assert!(matches!(ArrayMetadata::parse(b"{\"zarr"), Err(Error::Json { line: 1, .. })));
        assert!(matches!(ArrayMetadata::parse(b"[1]"), Err(Error::InvalidField { .. })));
    }

    #[test]
    fn rank_must_be_1_to_32() {
        assert_eq!(
            ArrayMetadata::parse(&doc_with("shape", json!([]))),
            Err(Error::Rank { rank: 0 })
        );
        assert_eq!(
            ArrayMetadata::parse(&doc_with("shape", json!(vec![1; 33]))),
            Err(Error::Rank { rank: 33 })
        );
        let m = ArrayMetadata::parse(
            &serde_json::to_vec(&json!({
                "zarr_format": 3, "node_type": "array", "shape": vec![2; 32], "data_type": "uint8",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": vec![1; 32]}},
                "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
                "codecs": [{"name": "bytes"}],
            }))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(m.shape.len(), 32);
        assert_eq!(m.codecs.array_to_bytes, ArrayToBytes::Bytes { endian: None });
        // The chunk grid's rank must match.
        assert!(matches!(
            ArrayMetadata::parse(&doc_with("shape", json!([100, 60, 1]))),
            Err(Error::InvalidField { field: "chunk_grid.configuration.chunk_shape", .. })
        ));
    }

    #[test]
    fn every_data_type_parses() {
        for dt in DataType::ALL {
            let f = if dt == DataType::Bool { json!(false) } else { json!(0) };
            let m = ArrayMetadata::parse(&plain(dt.name(), f)).unwrap();
            assert_eq!(m.data_type, dt);
            assert_eq!(m.fill_value, FillValue::zero(dt));
        }
        assert_eq!(
            ArrayMetadata::parse(&plain("complex64", json!(0))),
            Err(Error::UnsupportedDataType { name: "complex64".into() })
        );
        assert_eq!(
            ArrayMetadata::parse(&plain("<u2", json!(0))),
            Err(Error::UnsupportedDataType { name: "<u2".into() })
        );
    }

    #[test]
    fn integer_fill_values_are_range_checked() {
        assert_eq!(fill("int8", json!(-128)).unwrap(), (-128i8).to_ne_bytes());
        assert_eq!(fill("int16", json!(-300)).unwrap(), (-300i16).to_ne_bytes());
        assert_eq!(fill("int32", json!(i32::MIN)).unwrap(), i32::MIN.to_ne_bytes());
        assert_eq!(fill("int64", json!(i64::MIN)).unwrap(), i64::MIN.to_ne_bytes());
        assert_eq!(fill("uint8", json!(255)).unwrap(), [255]);
        assert_eq!(fill("uint16", json!(65535)).unwrap(), 65535u16.to_ne_bytes());
        assert_eq!(fill("uint32", json!(u32::MAX)).unwrap(), u32::MAX.to_ne_bytes());
        assert_eq!(fill("uint64", json!(u64::MAX)).unwrap(), u64::MAX.to_ne_bytes());
        let range = |dt| {
            Err(Error::FillValue {
                data_type: dt,
                reason: "integer out of range for the data type",
            })
        };
        assert_eq!(fill("int8", json!(128)), range("int8"));
        assert_eq!(fill("int64", json!(u64::MAX)), range("int64"));
        assert_eq!(fill("uint8", json!(256)), range("uint8"));
        assert_eq!(fill("uint16", json!(-1)), range("uint16"));
        assert_eq!(fill("uint32", json!(1u64 << 32)), range("uint32"));
        assert!(matches!(fill("int32", json!(1.5)), Err(Error::FillValue { .. })));
        assert!(matches!(fill("int32", json!("NaN")), Err(Error::FillValue { .. })));
        assert!(matches!(fill("uint8", json!(true)), Err(Error::FillValue { .. })));
    }

    #[test]
    fn bool_fill_values_are_booleans() {
        assert_eq!(fill("bool", json!(true)).unwrap(), [1]);
        assert_eq!(fill("bool", json!(false)).unwrap(), [0]);
        assert!(matches!(fill("bool", json!(1)), Err(Error::FillValue { data_type: "bool", .. })));
    }

    #[test]
    fn float_fill_values_in_every_spelling() {
        assert_eq!(fill("float32", json!(1.5)).unwrap(), 1.5f32.to_ne_bytes());
        assert_eq!(fill("float32", json!(-3)).unwrap(), (-3.0f32).to_ne_bytes());
        assert_eq!(fill("float64", json!(0.1)).unwrap(), 0.1f64.to_ne_bytes());
        assert_eq!(fill("float64", json!(-0.0)).unwrap(), (-0.0f64).to_ne_bytes());
        assert_eq!(fill("float32", json!("NaN")).unwrap(), 0x7fc0_0000u32.to_ne_bytes());
        assert_eq!(fill("float64", json!("NaN")).unwrap(), 0x7ff8_0000_0000_0000u64.to_ne_bytes());
        assert_eq!(fill("float16", json!("NaN")).unwrap(), 0x7e00u16.to_ne_bytes());
        assert_eq!(fill("bfloat16", json!("NaN")).unwrap(), 0x7fc0u16.to_ne_bytes());
        assert_eq!(fill("float32", json!("Infinity")).unwrap(), f32::INFINITY.to_ne_bytes());
        assert_eq!(fill("float64", json!("-Infinity")).unwrap(), f64::NEG_INFINITY.to_ne_bytes());
        assert_eq!(
            fill("float16", json!("-Infinity")).unwrap(),
            half::f16::NEG_INFINITY.to_ne_bytes()
        );
        assert_eq!(fill("float16", json!(0.5)).unwrap(), half::f16::from_f32(0.5).to_ne_bytes());
        assert_eq!(
            fill("bfloat16", json!(-2.0)).unwrap(),
            half::bf16::from_f32(-2.0).to_ne_bytes()
        );
        // Hex bit patterns keep NaN payloads exactly.
        assert_eq!(fill("float32", json!("0x7fc00001")).unwrap(), 0x7fc0_0001u32.to_ne_bytes());
        assert_eq!(
            fill("float64", json!("0xFFF0000000000001")).unwrap(),
            0xfff0_0000_0000_0001u64.to_ne_bytes()
        );
        assert_eq!(fill("float16", json!("0x3c00")).unwrap(), half::f16::ONE.to_ne_bytes());
        let bad = |dt, v: Value| matches!(fill(dt, v), Err(Error::FillValue { .. }));
        assert!(bad("float32", json!("0x7fc0")), "too short");
        assert!(bad("float16", json!("0x7fc00000")), "too long");
        assert!(bad("float32", json!("0x7fc0000g")), "not hex");
        assert!(bad("float32", json!("0x+fc00000")), "sign");
        assert!(bad("float32", json!("nan")), "wrong case");
        assert!(bad("float32", json!(true)));
        assert!(bad("float16", json!(1e10)), "overflows f16");
        assert!(bad("float32", json!(1e300)), "overflows f32");
        assert!(bad("uint8", json!("0xff")), "hex is for floats only");
    }

    #[test]
    fn chunk_key_encodings_and_grids() {
        let cke = |v: Value| {
            ArrayMetadata::parse(&doc_with("chunk_key_encoding", v)).map(|m| m.chunk_key_encoding)
        };
        assert_eq!(
            cke(json!({"name": "default"})),
            Ok(ChunkKeyEncoding::Default { separator: Separator::Slash })
        );
        assert_eq!(
            cke(json!({"name": "default", "configuration": {"separator": "."}})),
            Ok(ChunkKeyEncoding::Default { separator: Separator::Dot })
        );
        assert_eq!(
            cke(json!({"name": "v2"})),
            Ok(ChunkKeyEncoding::V2 { separator: Separator::Dot })
        );
        assert_eq!(
            cke(json!({"name": "v2", "configuration": {"separator": "/"}})),
            Ok(ChunkKeyEncoding::V2 { separator: Separator::Slash })
        );
        assert_eq!(cke(json!("v2")), Ok(ChunkKeyEncoding::V2 { separator: Separator::Dot }));
        assert!(matches!(
            cke(json!({"name": "default", "configuration": {"separator": "-"}})),
            Err(Error::InvalidField { .. })
        ));
        assert_eq!(
            cke(json!({"name": "hashed"})),
            Err(Error::UnsupportedGrid { what: "chunk key encoding", name: "hashed".into() })
        );
        assert_eq!(
            ArrayMetadata::parse(&doc_with(
                "chunk_grid",
                json!({"name": "rectilinear", "configuration": {}})
            )),
            Err(Error::UnsupportedGrid { what: "chunk grid", name: "rectilinear".into() })
        );
        assert!(matches!(
            ArrayMetadata::parse(&doc_with(
                "chunk_grid",
                json!({"name": "regular", "configuration": {"chunk_shape": [0, 30]}})
            )),
            Err(Error::InvalidField { .. })
        ));
    }

    #[test]
    fn unknown_keys_need_must_understand_false() {
        assert_eq!(
            ArrayMetadata::parse(&doc_with("shiny", json!({"name": "x"}))),
            Err(Error::UnknownField { field: "shiny".into() })
        );
        assert!(
            ArrayMetadata::parse(&doc_with(
                "shiny",
                json!({"name": "x", "must_understand": false})
            ))
            .is_ok()
        );
        assert_eq!(
            ArrayMetadata::parse(&doc_with("storage_transformers", json!([{"name": "sharding"}]))),
            Err(Error::UnsupportedStorageTransformer { name: "sharding".into() })
        );
    }

    #[test]
    fn dimension_names_and_attributes() {
        let p = |k, v| ArrayMetadata::parse(&doc_with(k, v));
        assert_eq!(p("dimension_names", json!(null)).unwrap().dimension_names, None);
        assert!(matches!(
            p("dimension_names", json!(["z"])),
            Err(Error::InvalidField { field: "dimension_names", .. })
        ));
        assert!(matches!(
            p("dimension_names", json!(["z", 1])),
            Err(Error::InvalidField { field: "dimension_names", .. })
        ));
        assert!(matches!(
            p("attributes", json!([1])),
            Err(Error::InvalidField { field: "attributes", .. })
        ));
        let mut v: Value = serde_json::from_str(ZARR_PYTHON_SHARDED).unwrap();
        v.as_object_mut().unwrap().remove("attributes");
        assert!(
            ArrayMetadata::parse(&serde_json::to_vec(&v).unwrap()).unwrap().attributes.is_empty()
        );
    }

    fn codecs(list: Value) -> Result<CodecChain> {
        ArrayMetadata::parse(&doc_with("codecs", list)).map(|m| m.codecs)
    }

    #[test]
    fn codec_chain_order_is_enforced() {
        let bytes = json!({"name": "bytes", "configuration": {"endian": "little"}});
        let zstd = json!({"name": "zstd", "configuration": {"level": 3, "checksum": true}});
        let tr = json!({"name": "transpose", "configuration": {"order": [1, 0]}});
        let ok = codecs(json!([tr, bytes, zstd, "crc32c"])).unwrap();
        assert_eq!(ok.array_to_array, vec![ArrayToArray::Transpose { order: vec![1, 0] }]);
        assert_eq!(
            ok.bytes_to_bytes,
            vec![BytesToBytes::Zstd { level: 3, checksum: true }, BytesToBytes::Crc32c]
        );
        for bad in [
            json!([]),
            json!([zstd]),
            json!([bytes, bytes]),
            json!([bytes, tr]),
            json!([zstd, bytes]),
        ] {
            assert!(matches!(codecs(bad.clone()), Err(Error::CodecChain { .. })), "{bad}");
        }
        assert_eq!(
            codecs(json!([bytes, {"name": "lzma"}])),
            Err(Error::Unsupported { codec: "lzma".into() })
        );
        assert_eq!(
            codecs(json!(["vlen-utf8"])),
            Err(Error::Unsupported { codec: "vlen-utf8".into() })
        );
        assert!(matches!(
            codecs(json!({"name": "bytes"})),
            Err(Error::InvalidField { field: "codecs", .. })
        ));
        assert!(matches!(codecs(json!([3])), Err(Error::InvalidField { field: "codecs", .. })));
    }

    #[test]
    fn codec_configurations_are_validated() {
        let cfg_err = |list: Value, codec: &str, field: &str| match codecs(list) {
            Err(Error::CodecConfig { codec: c, field: f, .. }) => c == codec && f == field,
            _ => false,
        };
        // uint16 needs an endian.
        assert!(cfg_err(json!(["bytes"]), "bytes", "endian"));
        assert!(cfg_err(
            json!([{"name": "bytes", "configuration": {"endian": "middle"}}]),
            "bytes",
            "endian"
        ));
        let b = json!({"name": "bytes", "configuration": {"endian": "big"}});
        for order in [json!([0, 0]), json!([0]), json!([0, 2]), json!([1, 0, 2]), json!("C")] {
            assert!(cfg_err(
                json!([{"name": "transpose", "configuration": {"order": order}}, b]),
                "transpose",
                "order"
            ));
        }
        assert!(cfg_err(
            json!([b, {"name": "gzip", "configuration": {"level": 10}}]),
            "gzip",
            "level"
        ));
        assert!(cfg_err(json!([b, {"name": "gzip"}]), "gzip", "level"));
        assert!(cfg_err(
            json!([b, {"name": "zstd", "configuration": {"level": 23}}]),
            "zstd",
            "level"
        ));
        assert!(cfg_err(
            json!([b, {"name": "zstd", "configuration": {"checksum": 1}}]),
            "zstd",
            "checksum"
        ));
        assert!(cfg_err(
            json!([b, {"name": "zstd", "configuration": {"speed": 1}}]),
            "zstd",
            "configuration"
        ));
        let blosc = |cname: &str, shuffle: &str, clevel: u64| json!([b, {"name": "blosc", "configuration": {"cname": cname, "clevel": clevel, "shuffle": shuffle, "typesize": 2, "blocksize": 0}}]);
        for cname in BloscCname::ALL {
            for shuffle in BloscShuffle::ALL {
                let c = codecs(blosc(cname.name(), shuffle.name(), 9)).unwrap();
                assert_eq!(
                    c.bytes_to_bytes,
                    vec![BytesToBytes::Blosc {
                        cname,
                        clevel: 9,
                        shuffle,
                        typesize: Some(2),
                        blocksize: 0
                    }]
                );
            }
        }
        assert!(cfg_err(blosc("lzma", "shuffle", 5), "blosc", "cname"));
        assert!(cfg_err(blosc("lz4", "byteshuffle", 5), "blosc", "shuffle"));
        assert!(cfg_err(blosc("lz4", "shuffle", 10), "blosc", "clevel"));
    }

    #[test]
    fn sharding_nests_and_checks_shapes() {
        let b = json!({"name": "bytes", "configuration": {"endian": "little"}});
        let idx = json!([b, {"name": "crc32c"}]);
        let shard = |chunk: Value, inner: Value, loc: &str| {
            json!({"name": "sharding_indexed", "configuration": {
                "chunk_shape": chunk, "codecs": inner, "index_codecs": idx, "index_location": loc}})
        };
        // Three levels: 50x30 shard → 25x15 → 5x5 chunks.
        let deep =
            shard(json!([25, 15]), json!([shard(json!([5, 5]), json!([b]), "start")]), "end");
        let c = codecs(json!([deep])).unwrap();
        let ArrayToBytes::Sharding(outer) = c.array_to_bytes else { panic!("not sharded") };
        assert_eq!(outer.index_location, IndexLocation::End);
        let ArrayToBytes::Sharding(inner) = &outer.codecs.array_to_bytes else {
            panic!("not nested")
        };
        assert_eq!(inner.chunk_shape, vec![5, 5]);
        assert_eq!(inner.index_location, IndexLocation::Start);
        let cfg_field = |v: Value| match codecs(json!([v])) {
            Err(Error::CodecConfig { codec: "sharding_indexed", field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(cfg_field(shard(json!([7, 15]), json!([b]), "end")), "chunk_shape");
        assert_eq!(cfg_field(shard(json!([5]), json!([b]), "end")), "chunk_shape");
        assert_eq!(cfg_field(shard(json!([0, 15]), json!([b]), "end")), "chunk_shape");
        assert_eq!(cfg_field(shard(json!([5, 5]), json!([b]), "middle")), "index_location");
        // Index codecs must be bytes (+ crc32c).
        let zstd_index = json!({"name": "sharding_indexed", "configuration": {
            "chunk_shape": [5, 5], "codecs": [b], "index_codecs": [b, {"name": "zstd"}]}});
        assert!(matches!(codecs(json!([zstd_index])), Err(Error::CodecChain { .. })));
        // Default index_location is end.
        let no_loc = json!({"name": "sharding_indexed", "configuration": {
            "chunk_shape": [5, 5], "codecs": [b], "index_codecs": idx}});
        let ArrayToBytes::Sharding(s) = codecs(json!([no_loc])).unwrap().array_to_bytes else {
            panic!()
        };
        assert_eq!(s.index_location, IndexLocation::End);
    }

    #[test]
    fn builders_produce_valid_metadata() {
        let inner =
            CodecChain::little_endian(vec![BytesToBytes::Zstd { level: 1, checksum: false }]);
        let m = ArrayMetadata::sharded(
            vec![10, 10],
            vec![10, 10],
            vec![5, 5],
            DataType::Float32,
            inner,
            FillValue::zero(DataType::Float32),
        )
        .unwrap();
        assert_eq!(ArrayMetadata::parse(m.to_json().as_bytes()).unwrap(), m);
        assert!(matches!(
            ArrayMetadata::sharded(
                vec![10],
                vec![10],
                vec![3],
                DataType::UInt8,
                CodecChain::bytes(None),
                FillValue::zero(DataType::UInt8)
            ),
            Err(Error::CodecConfig { codec: "sharding_indexed", field: "chunk_shape", .. })
        ));
    }

    fn arb_fill(dt: DataType) -> impl Strategy<Value = FillValue> {
        prop::collection::vec(any::<u8>(), dt.size()).prop_map(move |mut b| {
            if dt == DataType::Bool {
                b[0] &= 1;
            }
            FillValue::from_ne_bytes(dt, &b).unwrap()
        })
    }

    fn arb_bytes_to_bytes() -> impl Strategy<Value = BytesToBytes> {
        prop_oneof![
            (-5i32..=22, any::<bool>())
                .prop_map(|(level, checksum)| BytesToBytes::Zstd { level, checksum }),
            (0u32..=9).prop_map(|level| BytesToBytes::Gzip { level }),
            Just(BytesToBytes::Crc32c),
            (0usize..6, 0u8..=9, 0usize..3, prop::option::of(1u32..16), 0u64..100_000).prop_map(
                |(c, clevel, s, typesize, blocksize)| BytesToBytes::Blosc {
                    cname: BloscCname::ALL[c],
                    clevel,
                    shuffle: BloscShuffle::ALL[s],
                    typesize,
                    blocksize
                }
            ),
        ]
    }

    fn arb_metadata() -> impl Strategy<Value = ArrayMetadata> {
        (
            0usize..13,
            prop::collection::vec((1u64..50, 1u64..4, 1u64..3), 1..4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_flat_map(|(d, dims, sharded, transpose)| {
                let dt = DataType::ALL[d];
                let shape: Vec<u64> = dims.iter().map(|x| x.0).collect();
                let inner: Vec<u64> = dims.iter().map(|x| x.1).collect();
                let outer: Vec<u64> = dims.iter().map(|x| x.1 * x.2).collect();
                let rank = shape.len();
                (
                    Just((dt, shape, inner, outer, sharded)),
                    arb_fill(dt),
                    prop::collection::vec(arb_bytes_to_bytes(), 0..3),
                    if transpose {
                        Just((0..rank).rev().collect::<Vec<_>>()).boxed()
                    } else {
                        Just(vec![]).boxed()
                    },
                    any::<bool>(),
                    prop::option::of(prop::collection::vec(prop::option::of("[a-z]{0,3}"), rank)),
                    0usize..4,
                )
            })
            .prop_map(
                |((dt, shape, inner, outer, sharded), fill, b2b, order, big, names, cke)| {
                    let endian = if dt.size() == 1 && !big {
                        None
                    } else if big {
                        Some(Endian::Big)
                    } else {
                        Some(Endian::Little)
                    };
                    let mut chain = CodecChain { bytes_to_bytes: b2b, ..CodecChain::bytes(endian) };
                    if !order.is_empty() {
                        chain.array_to_array.push(ArrayToArray::Transpose { order });
                    }
                    let (chunk_shape, codecs) = if sharded {
                        let mut s = ShardingCodec::new(inner, chain);
                        if big {
                            s.index_location = crate::codec::IndexLocation::Start;
                        }
                        (
                            outer,
                            CodecChain {
                                array_to_array: vec![],
                                array_to_bytes: ArrayToBytes::Sharding(Box::new(s)),
                                bytes_to_bytes: vec![],
                            },
                        )
                    } else {
                        (inner, chain)
                    };
                    let separator = if cke % 2 == 0 { Separator::Slash } else { Separator::Dot };
                    let mut attributes = Map::new();
                    attributes.insert("k".into(), json!([1, "two", null]));
                    ArrayMetadata {
                        shape,
                        data_type: dt,
                        chunk_shape,
                        chunk_key_encoding: if cke < 2 {
                            ChunkKeyEncoding::Default { separator }
                        } else {
                            ChunkKeyEncoding::V2 { separator }
                        },
                        fill_value: fill,
                        codecs,
                        dimension_names: names,
                        attributes,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = ArrayMetadata::parse(&bytes);
        }

        #[test]
        fn to_json_round_trips(m in arb_metadata()) {
            let text = m.to_json();
            prop_assert_eq!(ArrayMetadata::parse(text.as_bytes()), Ok(m));
        }

        /// Mutating any byte of a valid document (or truncating it) never panics.
        #[test]
        fn parse_never_panics_on_mutated_documents(m in arb_metadata(), pos in any::<prop::sample::Index>(),
                                                   byte in any::<u8>(), cut in any::<bool>()) {
            let mut text = m.to_json().into_bytes();
            let i = pos.index(text.len());
            if cut { text.truncate(i) } else { text[i] = byte }
            let _ = ArrayMetadata::parse(&text);
        }

        /// Replacing any value in a valid document by another JSON value never panics.
        #[test]
        fn parse_never_panics_on_replaced_values(m in arb_metadata(), pick in any::<prop::sample::Index>(),
                                                 repl in prop_oneof![
                                                     Just(Value::Null), any::<i64>().prop_map(Value::from),
                                                     any::<u64>().prop_map(Value::from), any::<f64>().prop_map(Value::from),
                                                     "[a-z0-9_.x]{0,10}".prop_map(Value::from),
                                                     Just(json!([])), Just(json!({})), Just(json!([0, 0])),
                                                     Just(json!(["bytes"])), Just(json!([u64::MAX, 1]))]) {
            let mut doc: Value = serde_json::from_str(&m.to_json()).unwrap();
            let mut paths = Vec::new();
            collect_paths(&doc, String::new(), &mut paths);
            let p = &paths[pick.index(paths.len())];
            if let Some(slot) = doc.pointer_mut(p) { *slot = repl; }
            let _ = ArrayMetadata::parse(&serde_json::to_vec(&doc).unwrap());
        }
    }

    fn collect_paths(v: &Value, here: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    collect_paths(x, format!("{here}/{k}"), out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    collect_paths(x, format!("{here}/{i}"), out);
                }
            }
            _ => {}
        }
        out.push(here);
    }
}
