//! zarr v2 arrays: `.zarray` (and `.zattrs`) mapped onto the one [`ArrayMetadata`] model,
//! and back.
//!
//! Spec: <https://zarr-specs.readthedocs.io/en/latest/v2/v2.0.html> §"Metadata"; the
//! compressor configurations are numcodecs 0.16's (`get_config` of `Blosc`, `Zstd`,
//! `GZip`, `Zlib`, `LZ4`), and where the spec is silent this follows what zarr-python
//! 3.1 reads. The mapping:
//!
//! | `.zarray` | model |
//! |---|---|
//! | `shape`, `chunks` | `shape`, `chunk_shape` (a regular grid) |
//! | `dtype` `"<u2"`, `">f8"`, `"\|b1"` | `data_type`, and the byte order as the `bytes` codec's `endian` (none for one-byte types, whichever of `<`, `>`, `\|` they carry) |
//! | `order` `"C"` / `"F"` | no array→array codec / a `transpose` reversing the axes (Fortran order is C order of the reversed axes), omitted at rank 1 where the two agree |
//! | `compressor` | the one bytes→bytes codec: `blosc`, `zstd`, `gzip`, `zlib`, `lz4` (numcodecs' framing), or none for `null` |
//! | `filters` | absent, `null` or `[]`; any filter is refused, naming its `id` |
//! | `fill_value` | as in v3 for numbers, `"NaN"`, `"Infinity"`, `"-Infinity"`; integers also as integral floats (`1.0`), `bool` also as `0`/`1`; `null` (no fill value) reads as zero, which is what zarr-python 3.1 returns for a missing chunk |
//! | `dimension_separator` | the `v2` chunk key encoding with `.` (the default) or `/` |
//! | `.zattrs` | `attributes` |
//!
//! Keys the spec does not define are ignored, as zarr-python ignores them; a compressor
//! configuration key this crate does not know is an error, as in numcodecs. blosc's
//! `shuffle: -1` (numcodecs' AUTOSHUFFLE) is bit shuffle for one-byte types and byte
//! shuffle otherwise, the choice numcodecs makes for the chunk it compresses.

use serde_json::{Map, Value, json};

use super::{
    ArrayMetadata, ChunkKeyEncoding, Separator, ZarrFormat, check_format, check_grid,
    fill_value_to_json, json_object, parse_fill_value, shape_field,
};
use crate::codec::{
    ArrayToArray, ArrayToBytes, BloscShuffle, BytesToBytes, CodecChain, Config, Endian, Required,
    parse_blosc, parse_deflate_level, parse_lz4, parse_zstd,
};
use crate::dtype::{DataType, FillValue};
use crate::error::{Error, Result};

/// numpy's type codes (a dtype string without its byte-order character).
const TYPE_CODES: [(&str, DataType); 12] = [
    ("b1", DataType::Bool),
    ("i1", DataType::Int8),
    ("i2", DataType::Int16),
    ("i4", DataType::Int32),
    ("i8", DataType::Int64),
    ("u1", DataType::UInt8),
    ("u2", DataType::UInt16),
    ("u4", DataType::UInt32),
    ("u8", DataType::UInt64),
    ("f2", DataType::Float16),
    ("f4", DataType::Float32),
    ("f8", DataType::Float64),
];

/// The compressor ids this crate reads, so that configuration errors can carry a
/// `&'static str`.
const COMPRESSORS: [&str; 5] = ["blosc", "zstd", "gzip", "zlib", "lz4"];

/// The longest data type spelling an error repeats (a structured dtype can be any size).
const MAX_NAME_IN_ERROR: usize = 80;

impl ArrayMetadata {
    /// Parses and validates a zarr v2 array: the bytes of its `.zarray` and, when the
    /// array has one, of its `.zattrs`. The result has `zarr_format` V2 and is the same
    /// model a v3 array has, so geometry, planning and decoding do not depend on the
    /// format (see the [module documentation](self) for the mapping).
    ///
    /// # Errors
    /// `Json` for a `.zarray` that is not JSON; `UnsupportedFormat` unless `zarr_format`
    /// is 2; `MissingField` and `InvalidField` (naming the field; `.zattrs` for bad
    /// attributes); `Rank`; `UnsupportedDataType` naming a dtype outside bool, integers
    /// and floats (complex, datetime, strings, structured types); `FillValue`;
    /// `Unsupported` naming a compressor id this crate does not decode, `CodecConfig` for
    /// a bad compressor configuration; `UnsupportedFilter` naming the first filter.
    pub fn parse_v2(zarray: &[u8], zattrs: Option<&[u8]>) -> Result<Self> {
        let obj = json_object(zarray)?;
        let get = |field: &'static str| obj.get(field).ok_or(Error::MissingField { field });
        check_format(get("zarr_format")?, ZarrFormat::V2)?;
        let shape = shape_field(get("shape")?, "shape")?;
        let chunk_shape = shape_field(get("chunks")?, "chunks")?;
        check_grid(&shape, &chunk_shape, "chunks")?;
        let (data_type, endian) = parse_dtype(get("dtype")?)?;
        let fill_value = parse_fill(get("fill_value")?, data_type)?;
        let order = get("order")?;
        let fortran = match order.as_str() {
            Some("C") => false,
            Some("F") => true,
            _ => {
                return Err(Error::InvalidField {
                    field: "order",
                    reason: format!("{order} is not \"C\" or \"F\""),
                });
            }
        };
        let separator = match obj.get("dimension_separator") {
            None | Some(Value::Null) => Separator::Dot,
            Some(v) => match v.as_str() {
                Some(".") => Separator::Dot,
                Some("/") => Separator::Slash,
                _ => {
                    return Err(Error::InvalidField {
                        field: "dimension_separator",
                        reason: format!("{v} is not \".\" or \"/\""),
                    });
                }
            },
        };
        check_filters(obj.get("filters"))?;
        let compressor = parse_compressor(obj.get("compressor"), data_type)?;
        let rank = shape.len();
        let array_to_array = if fortran && rank > 1 {
            vec![ArrayToArray::Transpose { order: (0..rank).rev().collect() }]
        } else {
            Vec::new()
        };
        let codecs = CodecChain {
            array_to_array,
            array_to_bytes: ArrayToBytes::Bytes { endian },
            bytes_to_bytes: compressor.into_iter().collect(),
        };
        Ok(Self {
            zarr_format: ZarrFormat::V2,
            shape,
            data_type,
            chunk_shape,
            chunk_key_encoding: ChunkKeyEncoding::V2 { separator },
            fill_value,
            codecs,
            dimension_names: None,
            attributes: parse_zattrs(zattrs)?,
        })
    }

    /// The metadata as `.zarray` text that [`ArrayMetadata::parse_v2`] reads back equal
    /// (with the attributes from [`ArrayMetadata::to_zattrs`]). A v3 model that v2 can
    /// express is written too: that is how [`ArrayMetadata::into_v2`] checks it.
    ///
    /// # Errors
    /// `NotV2` naming what v2 cannot express: sharding, `crc32c`, more than one
    /// compressor, a transpose other than Fortran order, `bfloat16`, dimension names,
    /// `default` chunk keys, a NaN fill value with a payload.
    pub fn to_zarray(&self) -> Result<String> {
        let not_v2 = |reason| Error::NotV2 { reason };
        let ChunkKeyEncoding::V2 { separator } = self.chunk_key_encoding else {
            return Err(not_v2("chunk keys must use the `v2` encoding"));
        };
        if self.dimension_names.is_some() {
            return Err(not_v2("zarr v2 has no dimension names"));
        }
        let ArrayToBytes::Bytes { endian } = self.codecs.array_to_bytes else {
            return Err(not_v2("sharding has no zarr v2 spelling"));
        };
        let dtype = dtype_name(self.data_type, endian)?;
        let rank = self.shape.len();
        let order = match self.codecs.array_to_array.as_slice() {
            [] => "C",
            [ArrayToArray::Transpose { order }] if order.iter().copied().eq((0..rank).rev()) => "F",
            _ => return Err(not_v2("only C order or Fortran order (a reversing transpose)")),
        };
        let compressor = match self.codecs.bytes_to_bytes.as_slice() {
            [] => Value::Null,
            [one] => compressor_json(one)?,
            _ => return Err(not_v2("zarr v2 has at most one compressor")),
        };
        let fill_value = fill_value_to_json(&self.fill_value, self.data_type);
        if fill_value.as_str().is_some_and(|s| s.starts_with("0x")) {
            return Err(not_v2("a NaN fill value with a payload has no v2 spelling"));
        }
        let doc = json!({
            "shape": self.shape,
            "chunks": self.chunk_shape,
            "dtype": dtype,
            "fill_value": fill_value,
            "order": order,
            "filters": null,
            "dimension_separator": separator.as_char().to_string(),
            "compressor": compressor,
            "zarr_format": 2,
        });
        // Serializing a map of plain values cannot fail; fall back to "{}" rather than panic.
        Ok(serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_owned()))
    }

    /// The attributes as `.zattrs` text, or `None` when there are none (zarr-python then
    /// writes no `.zattrs`, or an empty one; both read as no attributes).
    pub fn to_zattrs(&self) -> Option<String> {
        (!self.attributes.is_empty()).then(|| {
            serde_json::to_string_pretty(&Value::Object(self.attributes.clone()))
                .unwrap_or_else(|_| "{}".to_owned())
        })
    }

    /// The same array as a zarr v2 array: `zarr_format` V2, and `default` chunk keys
    /// become `v2` keys with `.` (zarr-python's default for v2).
    ///
    /// # Errors
    /// `NotV2` (see [`ArrayMetadata::to_zarray`]), and what [`ArrayMetadata::validate`]
    /// reports.
    pub fn into_v2(mut self) -> Result<Self> {
        if let ChunkKeyEncoding::Default { .. } = self.chunk_key_encoding {
            self.chunk_key_encoding = ChunkKeyEncoding::V2 { separator: Separator::Dot };
        }
        self.zarr_format = ZarrFormat::V2;
        self.validate()?;
        Ok(self)
    }
}

/// A numpy dtype string: byte order (`<`, `>`, `|`) and type code.
fn parse_dtype(v: &Value) -> Result<(DataType, Option<Endian>)> {
    let unsupported = || {
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        Error::UnsupportedDataType { name: text.chars().take(MAX_NAME_IN_ERROR).collect() }
    };
    let Some(s) = v.as_str() else { return Err(unsupported()) };
    let mut chars = s.chars();
    let order = chars.next();
    let code = chars.as_str();
    let Some(&(_, dt)) = TYPE_CODES.iter().find(|(c, _)| *c == code) else {
        return Err(unsupported());
    };
    let endian = match order {
        _ if dt.size() == 1 && matches!(order, Some('<' | '>' | '|')) => None,
        Some('<') => Some(Endian::Little),
        Some('>') => Some(Endian::Big),
        Some('|') => {
            return Err(Error::InvalidField {
                field: "dtype",
                reason: format!("`{s}` has no byte order; a multi-byte type needs `<` or `>`"),
            });
        }
        _ => return Err(unsupported()),
    };
    Ok((dt, endian))
}

/// The dtype string of `dt` stored with `endian`.
fn dtype_name(dt: DataType, endian: Option<Endian>) -> Result<String> {
    let Some(&(code, _)) = TYPE_CODES.iter().find(|(_, d)| *d == dt) else {
        return Err(Error::NotV2 { reason: "bfloat16 has no zarr v2 dtype" });
    };
    let order = match endian {
        _ if dt.size() == 1 => '|',
        Some(Endian::Little) => '<',
        Some(Endian::Big) => '>',
        None => return Err(Error::NotV2 { reason: "a multi-byte type needs a byte order" }),
    };
    Ok(format!("{order}{code}"))
}

/// `fill_value` in v2's spellings (see the module documentation), as the v3 parser reads
/// them once the v2-only spellings are normalized.
fn parse_fill(v: &Value, dt: DataType) -> Result<FillValue> {
    let bad = |reason| Error::FillValue { data_type: dt.name(), reason };
    match v {
        Value::Null => Ok(FillValue::zero(dt)),
        // v3 also takes hex bit patterns; v2 has only these three strings.
        Value::String(s) if !matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => {
            Err(bad("a string must be \"NaN\", \"Infinity\" or \"-Infinity\""))
        }
        Value::Number(n) if dt == DataType::Bool => match n.as_u64() {
            Some(b @ (0 | 1)) => parse_fill_value(&Value::Bool(b == 1), dt),
            _ => Err(bad("must be true, false, 0 or 1")),
        },
        Value::Number(n) if !dt.is_float() && n.is_f64() => {
            // zarr-python reads an integral float such as 1.0 as an integer fill value.
            let x = n.as_f64().unwrap_or(f64::NAN);
            let integral = if x.fract() != 0.0 || !x.is_finite() {
                return Err(bad("must be a JSON integer (or an integral number)"));
            } else if (0.0..18_446_744_073_709_551_616.0).contains(&x) {
                Value::from(x as u64)
            } else if (-9_223_372_036_854_775_808.0..0.0).contains(&x) {
                Value::from(x as i64)
            } else {
                return Err(bad("integer out of range for the data type"));
            };
            parse_fill_value(&integral, dt)
        }
        _ => parse_fill_value(v, dt),
    }
}

/// `filters`: absent, `null` or an empty list; a filter is refused by its `id`.
fn check_filters(v: Option<&Value>) -> Result<()> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(list)) => match list.first() {
            None => Ok(()),
            Some(first) => match first.get("id").and_then(Value::as_str) {
                Some(id) => Err(Error::UnsupportedFilter { id: id.to_owned() }),
                None => Err(Error::InvalidField {
                    field: "filters",
                    reason: format!("filter {first} has no string `id`"),
                }),
            },
        },
        Some(other) => Err(Error::InvalidField {
            field: "filters",
            reason: format!("{other} is neither null nor a list"),
        }),
    }
}

/// `compressor`: `null` (or absent, which zarr-python reads as `null`) or a numcodecs
/// configuration `{"id": ..., ...}`.
fn parse_compressor(v: Option<&Value>, dt: DataType) -> Result<Option<BytesToBytes>> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(obj)) => obj,
        Some(other) => {
            return Err(Error::InvalidField {
                field: "compressor",
                reason: format!("{other} is neither null nor an object"),
            });
        }
    };
    let Some(id) = obj.get("id").and_then(Value::as_str) else {
        return Err(Error::InvalidField {
            field: "compressor",
            reason: "has no string `id`".into(),
        });
    };
    let codec = COMPRESSORS
        .into_iter()
        .find(|c| *c == id)
        .ok_or_else(|| Error::Unsupported { codec: id.to_owned() })?;
    let mut map = obj.clone();
    map.remove("id");
    let mut cfg = Config { codec, map };
    let parsed = match codec {
        "blosc" => {
            let shuffle = match cfg.take("shuffle") {
                None => BloscShuffle::Shuffle,
                Some(v) => match cfg.int("shuffle", &v, -1, 2)? {
                    -1 if dt.size() == 1 => BloscShuffle::BitShuffle,
                    -1 | 1 => BloscShuffle::Shuffle,
                    0 => BloscShuffle::NoShuffle,
                    _ => BloscShuffle::BitShuffle,
                },
            };
            parse_blosc(&mut cfg, shuffle, Required::NumcodecsDefault)?
        }
        "zstd" => parse_zstd(&mut cfg)?,
        "gzip" => BytesToBytes::Gzip { level: parse_deflate_level(&mut cfg)? },
        "zlib" => BytesToBytes::Zlib { level: parse_deflate_level(&mut cfg)? },
        // "lz4" is the only id left.
        _ => parse_lz4(&mut cfg)?,
    };
    cfg.finish()?;
    Ok(Some(parsed))
}

/// The numcodecs configuration of a compressor.
fn compressor_json(codec: &BytesToBytes) -> Result<Value> {
    Ok(match *codec {
        BytesToBytes::Blosc { cname, clevel, shuffle, typesize, blocksize } => {
            let mut m = Map::new();
            m.insert("id".into(), "blosc".into());
            m.insert("cname".into(), cname.name().into());
            m.insert("clevel".into(), clevel.into());
            let shuffle = match shuffle {
                BloscShuffle::NoShuffle => 0,
                BloscShuffle::Shuffle => 1,
                BloscShuffle::BitShuffle => 2,
            };
            m.insert("shuffle".into(), shuffle.into());
            m.insert("blocksize".into(), blocksize.into());
            if let Some(t) = typesize {
                m.insert("typesize".into(), t.into());
            }
            Value::Object(m)
        }
        BytesToBytes::Zstd { level, checksum } => {
            json!({"id": "zstd", "level": level, "checksum": checksum})
        }
        BytesToBytes::Gzip { level } => json!({"id": "gzip", "level": level}),
        BytesToBytes::Zlib { level } => json!({"id": "zlib", "level": level}),
        BytesToBytes::Lz4 { acceleration } => json!({"id": "lz4", "acceleration": acceleration}),
        BytesToBytes::Crc32c => {
            return Err(Error::NotV2 { reason: "crc32c has no zarr v2 compressor" });
        }
    })
}

/// `.zattrs`: a JSON object, or nothing.
fn parse_zattrs(zattrs: Option<&[u8]>) -> Result<Map<String, Value>> {
    let Some(bytes) = zattrs else { return Ok(Map::new()) };
    let bad = |reason| Error::InvalidField { field: ".zattrs", reason };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(bad(format!("{} is not a JSON object", json_kind(&other)))),
        Err(e) => {
            Err(bad(format!("not valid JSON (line {}, column {}): {e}", e.line(), e.column())))
        }
    }
}

/// What kind of JSON value `v` is, for messages that should not repeat a large value.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
