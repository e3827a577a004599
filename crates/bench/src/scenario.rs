//! Benchmark scenarios: which synthetic arrays to generate and which crop sequence to read.
//!
//! # File format (JSON; unknown fields are errors)
//!
//! ```json
//! {
//!   "name": "smoke",
//!   "arrays": [
//!     {
//!       "count": 2,                      // arrays in this group
//!       "name_prefix": "vol_",           // array i of the group is `<prefix><i:04>`
//!       "shape": [64, 64, 64],           // rank 1..=8
//!       "dtype": "uint16",               // zarr spelling; any numeric type but bool
//!       "shard_shape": [32, 32, 64],     // or null for an unsharded array
//!       "chunk_shape": [16, 16, 16],     // inner chunk (sharded) or chunk (unsharded)
//!       "codec": {"id": "zstd", "level": 3},
//!                // or {"id": "blosc_zstd", "level": 3, "shuffle": "byte" | "bit" | "none"}
//!                // or {"id": "raw"}
//!       "zarr_format": 2                 // optional: 3 (zarr.json, the default) or 2
//!                // (.zarray with the numcodecs compressor; unsharded only)
//!     }
//!   ],
//!   "sample_shape": [16, 16, 16],        // crop extent, same rank as every array
//!   "samples_per_batch": 4,
//!   "warmup_batches": 1,
//!   "timed_batches": 4,
//!   "seed": 42,                          // drives both the data and the crop sequence
//!   "output_dtype": "f32",               // "f32" | "bf16" | "f16" | "native"
//!   "latency": {"metadata_median_ms": 5.0}   // optional: wrap the store in a LatencyStore
//! }
//! ```
//! (Comments are for this documentation only; JSON has none.)
//!
//! # Arrays and their order
//!
//! The arrays of a scenario are the groups in file order, each expanded to
//! `count` arrays named `format!("{name_prefix}{i:04}")` (Python: `f"{prefix}{i:04d}"`),
//! `i = 0..count`. Array `g` (0-based over that whole list) lives at `data_dir/<name>`.
//!
//! # Crop sequence ([`Scenario::samples`])
//!
//! With `rng = SplitMix64::new(seed)` (see the `splitmix` crate) and `n` the number of arrays, each
//! sample draws, in this order: `g = rng.below(n)`, then for each axis `a` in order
//! `lo[a] = rng.below(shape_g[a] - sample_shape[a] + 1)`; `hi[a] = lo[a] + sample_shape[a]`.
//! The sequence is infinite; batch `b` is samples `b*samples_per_batch ..
//! (b+1)*samples_per_batch`, warm-up batches first.

use std::path::{Path, PathBuf};

use damacy::OutDtype;
use serde::{Deserialize, Serialize};
use zarr::DataType;

use splitmix::{SplitMix64, mix64};

/// Highest array rank a scenario may use.
pub const MAX_RANK: usize = 8;

/// Names of the built-in scenarios, in documentation order.
pub const BUILTIN_NAMES: [&str; 15] = [
    "smoke",
    "quickstart",
    "default",
    "blosc",
    "bitshuffle",
    "mixed-dtype",
    "many-arrays",
    "latency",
    "v2",
    "v2-blosc",
    "small-batch",
    "many-arrays-10k",
    "many-arrays-8",
    "latency-50ms",
    "latency-none",
];

/// Errors loading or validating a scenario.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// A name that is neither a built-in nor a file.
    #[error("unknown scenario `{name}`: built-ins are {known}; or pass a path to a .json file", known = BUILTIN_NAMES.join(", "))]
    UnknownBuiltin { name: String },
    /// The scenario file could not be read.
    #[error("reading scenario file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The scenario file is not a valid scenario document.
    #[error("scenario file {path} is invalid (line {line}, column {column}): {message}")]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    /// A field has a value the generator or the bench cannot use.
    #[error("scenario `{scenario}`: `{field}` {reason}")]
    Invalid { scenario: String, field: String, reason: String },
}

/// blosc shuffle filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shuffle {
    None,
    Byte,
    Bit,
}

/// The compressor of an array's (inner) chunks. The chain is always `bytes` (little
/// endian) followed by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "id", rename_all = "snake_case", deny_unknown_fields)]
pub enum Codec {
    /// `zstd` at `level` (1..=22), no checksum.
    Zstd { level: i32 },
    /// `blosc` with `cname = "zstd"`, `clevel = level` (0..=9) and the given shuffle.
    BloscZstd { level: u8, shuffle: Shuffle },
    /// No compressor: `bytes` only.
    Raw,
}

/// Added store latency, for the `latency` scenario.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Median added delay of each metadata operation, in milliseconds.
    pub metadata_median_ms: f64,
}

/// A group of identically shaped and encoded arrays.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayGroup {
    pub count: u64,
    pub name_prefix: String,
    pub shape: Vec<u64>,
    /// Any numeric zarr data type (not bool), spelled as in `zarr.json` (`"uint16"`).
    #[serde(with = "dtype_name")]
    pub dtype: DataType,
    /// `None` (JSON `null`) for an unsharded array.
    pub shard_shape: Option<Vec<u64>>,
    pub chunk_shape: Vec<u64>,
    pub codec: Codec,
    /// The format the generator writes: 3 (`zarr.json`) or 2 (`.zarray`, unsharded
    /// only). Left out of the JSON when 3, so the keys of existing datasets stay.
    #[serde(default = "zarr_v3", skip_serializing_if = "is_zarr_v3")]
    pub zarr_format: u8,
}

fn zarr_v3() -> u8 {
    3
}

fn is_zarr_v3(format: &u8) -> bool {
    *format == 3
}

/// [`ArrayGroup::dtype`] in JSON: the zarr spelling, through [`DataType::name`] and
/// [`DataType::parse`] (the one place names are mapped); `bool` is refused, as the
/// generator's voxels are intensities.
mod dtype_name {
    use serde::de::{Error as _, Expected, Unexpected};
    use serde::{Deserialize, Deserializer, Serializer};
    use zarr::DataType;

    pub(super) fn serialize<S: Serializer>(dtype: &DataType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(dtype.name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DataType, D::Error> {
        let name = String::deserialize(d)?;
        match DataType::parse(&name) {
            Ok(DataType::Bool) | Err(_) => {
                Err(D::Error::invalid_value(Unexpected::Str(&name), &NumericName))
            }
            Ok(dtype) => Ok(dtype),
        }
    }

    /// What the error says was expected: every numeric type's name.
    struct NumericName;

    impl Expected for NumericName {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a numeric zarr data type (")?;
            let numeric = DataType::ALL.into_iter().filter(|&d| d != DataType::Bool);
            for (i, d) in numeric.enumerate() {
                f.write_str(if i == 0 { "" } else { ", " })?;
                f.write_str(d.name())?;
            }
            f.write_str(")")
        }
    }
}

/// A benchmark scenario; see the module documentation for the format and semantics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub arrays: Vec<ArrayGroup>,
    pub sample_shape: Vec<u64>,
    pub samples_per_batch: u64,
    pub warmup_batches: u64,
    pub timed_batches: u64,
    pub seed: u64,
    /// The batches' element type (`native`: every array must share one dtype).
    pub output_dtype: OutDtype,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

/// One array of a scenario, with everything the generator needs to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayInstance<'a> {
    /// Position in the scenario's array list (the `g` of the crop sequence).
    pub index: u64,
    /// Directory name under the data directory.
    pub name: String,
    pub group: &'a ArrayGroup,
    /// Seed of this array's voxels ([`Scenario::array_seed`]).
    pub seed: u64,
}

fn group(
    count: u64,
    name_prefix: &str,
    shape: [u64; 3],
    dtype: DataType,
    shard: Option<[u64; 3]>,
    chunk: [u64; 3],
    codec: Codec,
) -> ArrayGroup {
    ArrayGroup {
        count,
        name_prefix: name_prefix.to_owned(),
        shape: shape.to_vec(),
        dtype,
        shard_shape: shard.map(|s| s.to_vec()),
        chunk_shape: chunk.to_vec(),
        codec,
        zarr_format: 3,
    }
}

impl Scenario {
    /// The built-in scenario `name` (one of [`BUILTIN_NAMES`]).
    ///
    /// # Errors
    /// `UnknownBuiltin` for any other name.
    pub fn builtin(name: &str) -> Result<Self, ScenarioError> {
        use DataType::{Float32, UInt8, UInt16};
        let zstd3 = Codec::Zstd { level: 3 };
        let default_group =
            |codec| group(8, "vol_", [512; 3], UInt16, Some([256, 256, 512]), [32, 64, 64], codec);
        let base = |name: &str, arrays, sample: u64, per_batch, warmup, timed| Scenario {
            name: name.to_owned(),
            arrays,
            sample_shape: vec![sample; 3],
            samples_per_batch: per_batch,
            warmup_batches: warmup,
            timed_batches: timed,
            seed: 42,
            output_dtype: OutDtype::F32,
            latency: None,
        };
        let s = match name {
            "smoke" => base(
                name,
                vec![group(2, "vol_", [64; 3], UInt16, Some([32, 32, 64]), [16, 16, 16], zstd3)],
                16,
                4,
                1,
                4,
            ),
            "quickstart" => base(
                name,
                vec![group(
                    2,
                    "vol_",
                    [256; 3],
                    UInt16,
                    Some([128, 128, 256]),
                    [32, 64, 64],
                    zstd3,
                )],
                64,
                32,
                4,
                40,
            ),
            "default" => base(name, vec![default_group(zstd3)], 128, 128, 2, 20),
            "blosc" => base(
                name,
                vec![default_group(Codec::BloscZstd { level: 3, shuffle: Shuffle::Byte })],
                128,
                128,
                2,
                20,
            ),
            "bitshuffle" => base(
                name,
                vec![default_group(Codec::BloscZstd { level: 3, shuffle: Shuffle::Bit })],
                128,
                128,
                2,
                20,
            ),
            "mixed-dtype" => {
                let g = |prefix, dtype| {
                    group(2, prefix, [256; 3], dtype, Some([128, 128, 256]), [32, 64, 64], zstd3)
                };
                base(
                    name,
                    vec![g("u8_", UInt8), g("u16_", UInt16), g("f32_", Float32)],
                    64,
                    64,
                    2,
                    20,
                )
            }
            "many-arrays" => base(
                name,
                vec![group(1000, "small_", [64; 3], UInt16, Some([64; 3]), [32; 3], zstd3)],
                32,
                128,
                2,
                20,
            ),
            // The default scenario's arrays as zarr v2 (so unsharded): what a dataset
            // written by zarr-python 2 or OME-Zarr 0.4 tools looks like.
            "v2" | "v2-blosc" => {
                let codec = if name == "v2" {
                    zstd3
                } else {
                    Codec::BloscZstd { level: 3, shuffle: Shuffle::Byte }
                };
                let g = ArrayGroup {
                    zarr_format: 2,
                    ..group(8, "vol_", [512; 3], UInt16, None, [32, 64, 64], codec)
                };
                base(name, vec![g], 128, 128, 2, 20)
            }
            // Many small crops per batch from small arrays: the per-batch fixed cost of an
            // engine shows here (a training loop's typical batch).
            "small-batch" => Scenario {
                sample_shape: vec![32, 64, 64],
                ..base(
                    name,
                    vec![group(
                        8,
                        "vol_",
                        [64, 128, 128],
                        UInt16,
                        Some([64, 128, 128]),
                        [32, 64, 64],
                        zstd3,
                    )],
                    0,
                    128,
                    4,
                    200,
                )
            },
            // Scale: the same array shape and crops from 10,000 arrays and from 8 (compare
            // each on its share of the same-run ceiling). Long enough to time (>= 5 s on
            // the GPU host).
            "many-arrays-10k" | "many-arrays-8" => base(
                name,
                vec![group(
                    if name == "many-arrays-8" { 8 } else { 10_000 },
                    "small_",
                    [64; 3],
                    UInt16,
                    Some([64; 3]),
                    [32; 3],
                    zstd3,
                )],
                32,
                512,
                4,
                1000,
            ),
            // Latency at scale: 64 arrays of 4 shards (256 shard indexes), lognormal
            // metadata latency with a 50 ms median, against the same crops with none.
            "latency-50ms" | "latency-none" => Scenario {
                latency: (name == "latency-50ms").then_some(Latency { metadata_median_ms: 50.0 }),
                ..base(
                    name,
                    vec![group(
                        64,
                        "vol_",
                        [256; 3],
                        UInt16,
                        Some([128, 128, 256]),
                        [32, 64, 64],
                        zstd3,
                    )],
                    64,
                    64,
                    0,
                    2000,
                )
            },
            "latency" => Scenario {
                latency: Some(Latency { metadata_median_ms: 5.0 }),
                ..base(
                    name,
                    vec![group(
                        4,
                        "vol_",
                        [256; 3],
                        UInt16,
                        Some([128, 128, 256]),
                        [32, 64, 64],
                        zstd3,
                    )],
                    64,
                    32,
                    2,
                    20,
                )
            },
            _ => return Err(ScenarioError::UnknownBuiltin { name: name.to_owned() }),
        };
        Ok(s)
    }

    /// Loads a scenario: `arg` is a file when it ends in `.json` or contains a path
    /// separator, and a built-in name otherwise. The result is validated.
    ///
    /// # Errors
    /// `UnknownBuiltin`, `Read`, `Parse`, `Invalid`.
    pub fn load(arg: &str) -> Result<Self, ScenarioError> {
        let is_file =
            arg.ends_with(".json") || arg.contains('/') || arg.contains(std::path::MAIN_SEPARATOR);
        if !is_file {
            return Self::builtin(arg);
        }
        let path = Path::new(arg);
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: path.to_owned(), source })?;
        Self::from_json(&text, path)
    }

    /// Parses and validates a scenario document; `path` only names it in errors.
    ///
    /// # Errors
    /// `Parse`, `Invalid`.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, ScenarioError> {
        let s: Scenario = serde_json::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        s.validate()?;
        Ok(s)
    }

    /// The scenario as pretty-printed JSON (the `bench/scenarios/*.json` format).
    pub fn to_json(&self) -> String {
        // Serializing plain structs of numbers and strings to a String cannot fail.
        let pretty = serde_json::to_string_pretty(self).unwrap_or_default();
        let mut s = collapse_number_arrays(&pretty);
        s.push('\n');
        s
    }

    /// Checks every rule of the format.
    ///
    /// # Errors
    /// `Invalid` naming the first field that breaks a rule.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |field: String, reason: String| ScenarioError::Invalid {
            scenario: self.name.clone(),
            field,
            reason,
        };
        if self.name.is_empty() {
            return Err(bad("name".into(), "must not be empty".into()));
        }
        if self.arrays.is_empty() {
            return Err(bad("arrays".into(), "must list at least one array group".into()));
        }
        let rank = self.sample_shape.len();
        if rank == 0 || rank > MAX_RANK {
            return Err(bad(
                "sample_shape".into(),
                format!("has rank {rank}, must be 1..={MAX_RANK}"),
            ));
        }
        if self.sample_shape.contains(&0) {
            return Err(bad("sample_shape".into(), "must not have a zero extent".into()));
        }
        if self.samples_per_batch == 0 {
            return Err(bad("samples_per_batch".into(), "must be at least 1".into()));
        }
        if self.timed_batches == 0 {
            return Err(bad("timed_batches".into(), "must be at least 1".into()));
        }
        if let Some(l) = self.latency
            && !(l.metadata_median_ms.is_finite() && l.metadata_median_ms >= 0.0)
        {
            return Err(bad(
                "latency.metadata_median_ms".into(),
                "must be a finite number ≥ 0".into(),
            ));
        }
        let mut total: u64 = 0;
        for (gi, g) in self.arrays.iter().enumerate() {
            let f = |name: &str| format!("arrays[{gi}].{name}");
            if g.count == 0 {
                return Err(bad(f("count"), "must be at least 1".into()));
            }
            total = total
                .checked_add(g.count)
                .ok_or_else(|| bad(f("count"), "overflows the array total".into()))?;
            if g.name_prefix.is_empty()
                || g.name_prefix.contains(['/', '\\'])
                || g.name_prefix.starts_with('.')
                || g.name_prefix == "zarr.json"
            {
                return Err(bad(
                    f("name_prefix"),
                    "must be a non-empty file name without separators, not starting with '.'"
                        .into(),
                ));
            }
            if self.arrays[..gi].iter().any(|o| o.name_prefix == g.name_prefix) {
                return Err(bad(
                    f("name_prefix"),
                    format!("`{}` is used by an earlier group", g.name_prefix),
                ));
            }
            if g.dtype == DataType::Bool {
                return Err(bad(f("dtype"), "is bool; scenario arrays hold numeric voxels".into()));
            }
            if g.shape.len() != rank {
                return Err(bad(
                    f("shape"),
                    format!("has rank {}, sample_shape has rank {rank}", g.shape.len()),
                ));
            }
            for (a, (&e, &s)) in g.shape.iter().zip(&self.sample_shape).enumerate() {
                if e < s {
                    return Err(bad(
                        f("shape"),
                        format!("extent {e} on axis {a} is smaller than the sample extent {s}"),
                    ));
                }
            }
            if g.chunk_shape.len() != rank || g.chunk_shape.contains(&0) {
                return Err(bad(
                    f("chunk_shape"),
                    format!("must have rank {rank} and no zero extent"),
                ));
            }
            if let Some(shard) = &g.shard_shape {
                if shard.len() != rank {
                    return Err(bad(f("shard_shape"), format!("must have rank {rank}")));
                }
                if let Some(a) =
                    (0..rank).find(|&a| shard[a] == 0 || shard[a] % g.chunk_shape[a] != 0)
                {
                    return Err(bad(
                        f("shard_shape"),
                        format!(
                            "extent {} on axis {a} is not a positive multiple of the chunk extent {}",
                            shard[a], g.chunk_shape[a]
                        ),
                    ));
                }
            }
            // Keep one chunk (and one shard) addressable in memory on every platform.
            let elems = |shape: &[u64]| shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            let chunk_bytes =
                elems(&g.chunk_shape).and_then(|n| n.checked_mul(g.dtype.size() as u64));
            if chunk_bytes.is_none_or(|b| b > 1 << 30) {
                return Err(bad(f("chunk_shape"), "makes chunks larger than 1 GiB".into()));
            }
            if let Some(shard) = &g.shard_shape
                && elems(shard)
                    .and_then(|n| n.checked_mul(g.dtype.size() as u64))
                    .is_none_or(|b| b > 4 << 30)
            {
                return Err(bad(f("shard_shape"), "makes shards larger than 4 GiB".into()));
            }
            match (g.zarr_format, &g.shard_shape) {
                (3, _) | (2, None) => {}
                (2, Some(_)) => {
                    return Err(bad(
                        f("shard_shape"),
                        "must be null for a zarr v2 array (v2 has no sharding)".into(),
                    ));
                }
                (other, _) => {
                    return Err(bad(f("zarr_format"), format!("is {other}, must be 2 or 3")));
                }
            }
            match g.codec {
                Codec::Zstd { level } if !(1..=22).contains(&level) => {
                    return Err(bad(
                        f("codec.level"),
                        format!("is {level}, zstd levels are 1..=22"),
                    ));
                }
                Codec::BloscZstd { level, .. } if level > 9 => {
                    return Err(bad(
                        f("codec.level"),
                        format!("is {level}, blosc levels are 0..=9"),
                    ));
                }
                _ => {}
            }
        }
        if self.output_dtype == OutDtype::Native
            && self.arrays.iter().any(|g| g.dtype != self.arrays[0].dtype)
        {
            return Err(bad(
                "output_dtype".into(),
                "is `native` but the arrays do not share one dtype".into(),
            ));
        }
        Ok(())
    }

    /// Total number of arrays.
    pub fn n_arrays(&self) -> u64 {
        self.arrays.iter().map(|g| g.count).fold(0, u64::saturating_add)
    }

    /// The seed of array `index`'s voxels:
    /// `mix64(mix64(seed ^ 0x6461_7461_7365_6564) + index)` (wrapping add; the constant
    /// is ASCII "dataseed"), so the data never reuses the crop sequence's stream.
    pub fn array_seed(&self, index: u64) -> u64 {
        mix64(mix64(self.seed ^ 0x6461_7461_7365_6564).wrapping_add(index))
    }

    /// Every array in order (see the module documentation).
    pub fn array_instances(&self) -> Vec<ArrayInstance<'_>> {
        let mut out = Vec::new();
        let mut index = 0u64;
        for g in &self.arrays {
            for i in 0..g.count {
                out.push(ArrayInstance {
                    index,
                    name: format!("{}{i:04}", g.name_prefix),
                    group: g,
                    seed: self.array_seed(index),
                });
                index += 1;
            }
        }
        out
    }

    /// Voxels of one sample.
    pub fn sample_voxels(&self) -> u64 {
        self.sample_shape.iter().product()
    }

    /// The deterministic, infinite crop sequence over the arrays under `data_dir`: each
    /// item is `(array path, lo, hi)` with `hi` exclusive. See the module documentation
    /// for the exact draw order. A scenario that fails [`Scenario::validate`] yields
    /// nothing.
    pub fn samples(&self, data_dir: &Path) -> SampleIter {
        let valid = self.validate().is_ok();
        let arrays = if valid {
            self.array_instances()
                .into_iter()
                .map(|a| (data_dir.join(&a.name), a.group.shape.clone()))
                .collect()
        } else {
            Vec::new()
        };
        SampleIter {
            rng: SplitMix64::new(self.seed),
            arrays,
            sample_shape: self.sample_shape.clone(),
        }
    }
}

/// Puts arrays of plain numbers on one line (`[64, 64, 64]`) in pretty-printed JSON, so
/// shapes read as shapes.
fn collapse_number_arrays(pretty: &str) -> String {
    let lines: Vec<&str> = pretty.lines().collect();
    let mut out = String::with_capacity(pretty.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.ends_with('[') {
            let items: Vec<&str> = lines[i + 1..]
                .iter()
                .map(|l| l.trim())
                .take_while(|l| l.trim_end_matches(',').parse::<f64>().is_ok())
                .collect();
            let close = lines.get(i + 1 + items.len()).map(|l| l.trim());
            if !items.is_empty() && matches!(close, Some("]" | "],")) {
                let joined: Vec<&str> = items.iter().map(|l| l.trim_end_matches(',')).collect();
                out.push_str(line);
                out.push_str(&joined.join(", "));
                out.push_str(close.unwrap_or("]"));
                out.push('\n');
                i += items.len() + 2;
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    out.pop();
    out
}

/// The crop sequence of [`Scenario::samples`].
#[derive(Debug, Clone)]
pub struct SampleIter {
    rng: SplitMix64,
    /// (path, shape) of every array, in order.
    arrays: Vec<(PathBuf, Vec<u64>)>,
    sample_shape: Vec<u64>,
}

impl Iterator for SampleIter {
    type Item = (PathBuf, Vec<u64>, Vec<u64>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.arrays.is_empty() {
            return None;
        }
        let g = self.rng.below(self.arrays.len() as u64);
        // `below` returns < len, so the index is in range.
        let (path, shape) = &self.arrays[g as usize];
        let mut lo = Vec::with_capacity(shape.len());
        let mut hi = Vec::with_capacity(shape.len());
        for (&e, &s) in shape.iter().zip(&self.sample_shape) {
            // Validation guarantees s <= e.
            let l = self.rng.below(e - s + 1);
            lo.push(l);
            hi.push(l + s);
        }
        Some((path.clone(), lo, hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenarios_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/scenarios")
    }

    #[test]
    fn builtins_validate_and_round_trip() {
        for name in BUILTIN_NAMES {
            let s = Scenario::builtin(name).unwrap();
            assert_eq!(s.name, name);
            s.validate().unwrap();
            let back = Scenario::from_json(&s.to_json(), Path::new("mem")).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn builtin_files_equal_builtins() {
        // Regenerate the files with DAMACY_BLESS_SCENARIOS=1 after changing a built-in.
        let dir = scenarios_dir();
        if std::env::var_os("DAMACY_BLESS_SCENARIOS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            for name in BUILTIN_NAMES {
                std::fs::write(
                    dir.join(format!("{name}.json")),
                    Scenario::builtin(name).unwrap().to_json(),
                )
                .unwrap();
            }
        }
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".json"))
            .collect();
        files.sort();
        let mut expected: Vec<String> = BUILTIN_NAMES.iter().map(|n| format!("{n}.json")).collect();
        expected.sort();
        assert_eq!(files, expected);
        for name in BUILTIN_NAMES {
            let path = dir.join(format!("{name}.json"));
            let loaded = Scenario::load(path.to_str().unwrap()).unwrap();
            assert_eq!(loaded, Scenario::builtin(name).unwrap(), "{}", path.display());
        }
    }

    #[test]
    fn zarr_v2_groups_are_unsharded_and_only_2_or_3() {
        let v2 = Scenario::builtin("v2").unwrap();
        assert_eq!((v2.arrays[0].zarr_format, v2.arrays[0].shard_shape.as_ref()), (2, None));
        assert!(v2.to_json().contains("\"zarr_format\": 2"));
        // A v3 group's JSON does not mention the format, so dataset keys stay.
        assert!(!Scenario::builtin("default").unwrap().to_json().contains("zarr_format"));
        let field = |s: Scenario| match s.validate() {
            Err(ScenarioError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        let mut sharded = v2.clone();
        sharded.arrays[0].shard_shape = Some(vec![64, 128, 128]);
        assert_eq!(field(sharded), "arrays[0].shard_shape");
        let mut four = v2;
        four.arrays[0].zarr_format = 4;
        assert_eq!(field(four), "arrays[0].zarr_format");
    }

    #[test]
    fn documented_shapes() {
        let d = Scenario::builtin("default").unwrap();
        assert_eq!(d.n_arrays(), 8);
        assert_eq!(d.arrays[0].shape, [512, 512, 512]);
        assert_eq!(d.arrays[0].shard_shape.as_deref(), Some(&[256, 256, 512][..]));
        assert_eq!(d.arrays[0].chunk_shape, [32, 64, 64]);
        assert_eq!(d.arrays[0].codec, Codec::Zstd { level: 3 });
        assert_eq!(d.sample_shape, [128, 128, 128]);
        assert_eq!(d.samples_per_batch, 128);
        assert_eq!(d.output_dtype, OutDtype::F32);
        assert_eq!(Scenario::builtin("many-arrays").unwrap().n_arrays(), 1000);
        assert_eq!(
            Scenario::builtin("bitshuffle").unwrap().arrays[0].codec,
            Codec::BloscZstd { level: 3, shuffle: Shuffle::Bit }
        );
        assert!(Scenario::builtin("latency").unwrap().latency.is_some());
        let q = Scenario::builtin("quickstart").unwrap();
        let raw: u64 = q.arrays.iter().map(|g| g.count * g.shape.iter().product::<u64>() * 2).sum();
        assert_eq!(raw, 64 << 20);
    }

    #[test]
    fn json_format_is_as_documented() {
        let text = r#"{
          "name": "t",
          "arrays": [{"count": 1, "name_prefix": "a", "shape": [10, 20], "dtype": "uint8",
                      "shard_shape": null, "chunk_shape": [5, 5], "codec": {"id": "raw"}},
                     {"count": 2, "name_prefix": "b", "shape": [10, 20], "dtype": "float32",
                      "shard_shape": [10, 10], "chunk_shape": [5, 5],
                      "codec": {"id": "blosc_zstd", "level": 5, "shuffle": "none"}}],
          "sample_shape": [4, 4], "samples_per_batch": 2, "warmup_batches": 0, "timed_batches": 1,
          "seed": 7, "output_dtype": "bf16"
        }"#;
        let s = Scenario::from_json(text, Path::new("t.json")).unwrap();
        assert_eq!(s.arrays[0].codec, Codec::Raw);
        assert_eq!(s.arrays[0].shard_shape, None);
        assert_eq!(s.arrays[1].codec, Codec::BloscZstd { level: 5, shuffle: Shuffle::None });
        assert_eq!(s.output_dtype, OutDtype::Bf16);
        assert_eq!(s.latency, None);
        let names: Vec<String> = s.array_instances().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["a0000", "b0000", "b0001"]);
        assert_eq!((s.arrays[0].dtype, s.arrays[1].dtype), (DataType::UInt8, DataType::Float32));
    }

    #[test]
    fn dtypes_are_spelled_as_in_zarr_json() {
        let mut s = Scenario::builtin("smoke").unwrap();
        for dtype in DataType::ALL.into_iter().filter(|&d| d != DataType::Bool) {
            s.arrays[0].dtype = dtype;
            let text = s.to_json();
            assert!(text.contains(&format!("\"dtype\": \"{}\"", dtype.name())), "{text}");
            assert_eq!(Scenario::from_json(&text, Path::new("x")).unwrap(), s);
        }
        let good = Scenario::builtin("smoke").unwrap().to_json();
        for bad in ["bool", "uint12", "UInt16", "u2"] {
            let text = good.replacen("\"uint16\"", &format!("\"{bad}\""), 1);
            let err = Scenario::from_json(&text, Path::new("x")).unwrap_err();
            assert!(
                matches!(&err, ScenarioError::Parse { message, .. }
                    if message.contains(bad) && message.contains("uint16, uint32")),
                "{bad}: {err}"
            );
        }
        s.arrays[0].dtype = DataType::Bool;
        assert!(
            matches!(s.validate(), Err(ScenarioError::Invalid { field, .. }) if field == "arrays[0].dtype")
        );
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        let good = Scenario::builtin("smoke").unwrap().to_json();
        let extra = good.replacen("\"seed\"", "\"sneed\": 1, \"seed\"", 1);
        assert!(matches!(
            Scenario::from_json(&extra, Path::new("x")),
            Err(ScenarioError::Parse { .. })
        ));
        let codec_extra = good.replacen("\"level\": 3", "\"level\": 3, \"foo\": 1", 1);
        assert!(matches!(
            Scenario::from_json(&codec_extra, Path::new("x")),
            Err(ScenarioError::Parse { .. })
        ));

        let mut s = Scenario::builtin("smoke").unwrap();
        s.sample_shape = vec![65, 16, 16];
        assert!(
            matches!(s.validate(), Err(ScenarioError::Invalid { field, .. }) if field == "arrays[0].shape")
        );
        let mut s = Scenario::builtin("smoke").unwrap();
        s.arrays[0].shard_shape = Some(vec![24, 32, 64]);
        assert!(
            matches!(s.validate(), Err(ScenarioError::Invalid { field, .. }) if field == "arrays[0].shard_shape")
        );
        let mut s = Scenario::builtin("mixed-dtype").unwrap();
        s.output_dtype = OutDtype::Native;
        assert!(
            matches!(s.validate(), Err(ScenarioError::Invalid { field, .. }) if field == "output_dtype")
        );
        let mut s = Scenario::builtin("smoke").unwrap();
        s.arrays[0].name_prefix = "../x".into();
        assert!(
            matches!(s.validate(), Err(ScenarioError::Invalid { field, .. }) if field == "arrays[0].name_prefix")
        );
        assert_eq!(s.samples(Path::new("/d")).next(), None);

        assert!(matches!(Scenario::load("nope"), Err(ScenarioError::UnknownBuiltin { .. })));
        assert!(matches!(Scenario::load("/nonexistent/x.json"), Err(ScenarioError::Read { .. })));
    }

    #[test]
    fn samples_are_deterministic_and_in_bounds() {
        let s = Scenario::builtin("mixed-dtype").unwrap();
        let dir = Path::new("/data");
        let a: Vec<_> = s.samples(dir).take(500).collect();
        let b: Vec<_> = s.samples(dir).take(500).collect();
        assert_eq!(a, b);
        let names: Vec<PathBuf> = s.array_instances().iter().map(|i| dir.join(&i.name)).collect();
        let mut used = vec![false; names.len()];
        for (path, lo, hi) in &a {
            let g = names.iter().position(|n| n == path).unwrap();
            used[g] = true;
            for axis in 0..3 {
                assert_eq!(hi[axis] - lo[axis], s.sample_shape[axis]);
                assert!(hi[axis] <= s.arrays[0].shape[axis]);
            }
        }
        assert!(used.iter().all(|&u| u));
        let mut other = s.clone();
        other.seed += 1;
        assert_ne!(other.samples(dir).take(10).collect::<Vec<_>>(), a[..10]);
    }

    #[test]
    fn samples_follow_the_documented_draws() {
        let s = Scenario::builtin("smoke").unwrap();
        let mut rng = SplitMix64::new(s.seed);
        for (path, lo, hi) in s.samples(Path::new("d")).take(20) {
            let g = rng.below(2);
            assert_eq!(path, Path::new("d").join(format!("vol_{g:04}")));
            for axis in 0..3 {
                let l = rng.below(64 - 16 + 1);
                assert_eq!((lo[axis], hi[axis]), (l, l + 16));
            }
        }
    }

    // The first crops of `smoke` (seed 42, 2 arrays of 64³, 16³ samples), computed with
    // the Python of the splitmix crate's documentation:
    // python3 -c "
    // M=(1<<64)-1
    // s=42
    // def nx():
    //     global s
    //     s=(s+0x9E3779B97F4A7C15)&M; z=s
    //     z=((z^(z>>30))*0xBF58476D1CE4E5B9)&M; z=((z^(z>>27))*0x94D049BB133111EB)&M; return z^(z>>31)
    // def below(n):
    //     t=(1<<64)%n
    //     while True:
    //         x=nx()
    //         if x>=t: return x%n
    // print([(below(2),[below(49) for _ in range(3)]) for _ in range(3)])"
    #[test]
    fn smoke_golden_crops() {
        let s = Scenario::builtin("smoke").unwrap();
        let got: Vec<(String, Vec<u64>)> = s
            .samples(Path::new(""))
            .take(3)
            .map(|(p, lo, _)| (p.to_str().unwrap().to_owned(), lo))
            .collect();
        let expected: Vec<(String, Vec<u64>)> =
            SMOKE_GOLDEN.iter().map(|(g, lo)| (format!("vol_{g:04}"), lo.to_vec())).collect();
        assert_eq!(got, expected);
    }
    const SMOKE_GOLDEN: [(u64, [u64; 3]); 3] =
        [(1, [47, 35, 37]), (0, [25, 2, 27]), (1, [12, 12, 48])];
}
