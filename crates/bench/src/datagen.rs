//! The deterministic synthetic dataset generator: writes a [`Scenario`]'s arrays as zarr
//! v3 (sharded or not) with this project's encoders, in parallel, cached by a marker file.
//!
//! # The voxels
//!
//! Every array `g` has a seed ([`Scenario::array_seed`]); its voxel at `coords` is the
//! pure function [`voxel`]`(seed, coords)` (an intensity, mostly in `0..1`), stored as
//! [`stored_value`]`(dtype, intensity)`. The intensity imitates fluorescence microscopy:
//! a dim background, [`TERMS`] overlapping lattices of compact bright blobs ("cells")
//! with random periods (48–256 voxels per axis) and phases, and low per-voxel noise:
//!
//! ```text
//! p(k, a, c) = w^16,  w = 4 u (1 - u),  u = frac(c * inv_period[k][a] + phase[k][a])
//! voxel = base + Σ_k ( amp[k] * p(k,0,c0) * p(k,1,c1) * ... )  + NOISE * tri(hash(seed, coords))
//! ```
//!
//! Most voxels are background (about 250 of 4095 in u16, ±6 of noise), a few percent lie
//! in blobs up to full scale: zstd level 3 compresses u16 chunks of this about 2.2×.
//! Only IEEE basic arithmetic and `floor` are used (no libm `exp`/`cos`), so the values are
//! bit-identical on every platform. The generator evaluates the same expression in the
//! same order with per-shard tables, so its output equals [`voxel`] exactly; the tests
//! check that by decoding the written chunks.
//!
//! # Layout on disk
//!
//! `out_dir/<array name>/zarr.json` and the shard (or chunk) objects under
//! `out_dir/<array name>/c/...` (`default` key encoding, `/`). Sharded arrays use
//! zarr-python's default index (`bytes` little-endian + `crc32c`, at the end); inner
//! chunks are `bytes` (little-endian) followed by the scenario's compressor; fill value 0.
//! A group with `"zarr_format": 2` is written as zarr v2 instead: `.zarray` (dtype `<`,
//! order `C`, the compressor as numcodecs spells it) and chunk objects `0.0.0`, ... (the
//! same chunk bytes as the v3 array's).
//! A dataset is complete when `out_dir/.damacy-gen.json` exists and names the dataset's
//! key ([`dataset_key`]); it is written last, so an interrupted run is redone.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use zarr::codec::{BloscCname, BloscShuffle};
use zarr::odometer::advance;
use zarr::{ArrayMetadata, BytesToBytes, ChunkRepr, CodecChain, DataType, Endian, FillValue};

use crate::scenario::{ArrayGroup, Codec, MAX_RANK, Scenario, ScenarioError, Shuffle};
use splitmix::{SplitMix64, mix64};

/// Bumped whenever the bytes written for a scenario change, so caches are redone.
pub const GENERATOR_VERSION: u32 = 1;

/// Name of the completion marker inside the output directory.
pub const MARKER_FILE: &str = ".damacy-gen.json";

/// Number of blob lattices summed per array.
pub const TERMS: usize = 6;

/// Amplitude of the per-voxel noise, in intensity units.
pub const NOISE: f64 = 0.0015;

/// Everything that can go wrong generating a dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenError {
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A file or directory could not be written, read or removed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The zarr metadata of an array could not be built.
    #[error("array {array}: cannot build its zarr metadata: {source}")]
    Metadata { array: PathBuf, source: zarr::Error },
    /// Encoding a shard or chunk failed.
    #[error("encoding {path}: {source}")]
    Encode { path: PathBuf, source: zarr::Error },
    /// An array's objects do not fit in this machine's address space.
    #[error("array {array}: {what} overflows")]
    Overflow { array: PathBuf, what: &'static str },
    /// A generator thread panicked (a bug; the dataset is left incomplete).
    #[error("a generator thread panicked while writing into {out_dir}")]
    WorkerPanicked { out_dir: PathBuf },
}

/// Progress of a running generation, reported on the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenProgress {
    /// Shard (or chunk) objects written so far.
    pub objects_done: u64,
    pub objects_total: u64,
    /// Uncompressed bytes of array data written so far (voxels inside the arrays).
    pub raw_bytes_done: u64,
    pub raw_bytes_total: u64,
}

/// What a generation wrote (or, when `cached`, what the earlier run wrote).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenReport {
    pub scenario: String,
    /// The dataset key ([`dataset_key`]).
    pub key: String,
    pub arrays: u64,
    /// Shard (or chunk) objects written.
    pub objects: u64,
    /// Bytes of the arrays' voxels (`Σ prod(shape) * dtype size`).
    pub raw_bytes: u64,
    /// Bytes of the written objects (compressed chunks plus shard indexes).
    pub stored_bytes: u64,
    /// `raw_bytes / stored_bytes`.
    pub ratio: f64,
    /// Wall time of the generation that wrote the data.
    pub seconds: f64,
    /// True when the data was already present and nothing was written.
    #[serde(default)]
    pub cached: bool,
}

/// The marker file's contents.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    generator_version: u32,
    report: GenReport,
}

/// The key of the data a scenario generates: FNV-1a 64 (hex) over the JSON of
/// `(GENERATOR_VERSION, seed, arrays)`. Batch sizes, sample shape and latency do not
/// change the data and are not part of it.
pub fn dataset_key(scenario: &Scenario) -> String {
    let text = serde_json::to_string(&(GENERATOR_VERSION, scenario.seed, &scenario.arrays))
        .unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The report of a complete dataset for `scenario` in `out_dir`, or `None` when it is
/// absent, incomplete or for other data.
pub fn cached_report(scenario: &Scenario, out_dir: &Path) -> Option<GenReport> {
    let text = std::fs::read(out_dir.join(MARKER_FILE)).ok()?;
    let marker: Marker = serde_json::from_slice(&text).ok()?;
    (marker.generator_version == GENERATOR_VERSION && marker.report.key == dataset_key(scenario))
        .then_some(GenReport { cached: true, ..marker.report })
}

/// The codec chain of one (inner) chunk of `group`.
pub fn chunk_codecs(group: &ArrayGroup) -> CodecChain {
    let dt = group.dtype;
    let endian = (dt.size() > 1).then_some(Endian::Little);
    let b2b = match group.codec {
        Codec::Zstd { level } => vec![BytesToBytes::Zstd { level, checksum: false }],
        Codec::BloscZstd { level, shuffle } => vec![BytesToBytes::Blosc {
            cname: BloscCname::Zstd,
            clevel: level,
            shuffle: match shuffle {
                Shuffle::None => BloscShuffle::NoShuffle,
                Shuffle::Byte => BloscShuffle::Shuffle,
                Shuffle::Bit => BloscShuffle::BitShuffle,
            },
            typesize: Some(dt.size() as u32),
            blocksize: 0,
        }],
        Codec::Raw => Vec::new(),
    };
    CodecChain { bytes_to_bytes: b2b, ..CodecChain::bytes(endian) }
}

/// The metadata model of an array of `group` (zarr v3, or v2 for `zarr_format: 2`).
///
/// # Errors
/// The zarr crate's validation errors (which a validated scenario does not cause).
pub fn array_metadata(group: &ArrayGroup) -> Result<ArrayMetadata, zarr::Error> {
    let dt = group.dtype;
    let fill = FillValue::zero(dt);
    let meta = match &group.shard_shape {
        Some(shard) => ArrayMetadata::sharded(
            group.shape.clone(),
            shard.clone(),
            group.chunk_shape.clone(),
            dt,
            chunk_codecs(group),
            fill,
        ),
        None => ArrayMetadata::chunked(
            group.shape.clone(),
            group.chunk_shape.clone(),
            dt,
            chunk_codecs(group),
            fill,
        ),
    }?;
    if group.zarr_format == 2 { meta.into_v2() } else { Ok(meta) }
}

/// The random parameters of one array's intensity field (see the module documentation).
#[derive(Debug, Clone)]
pub struct Field {
    base: f64,
    amp: [f64; TERMS],
    inv_period: [[f64; MAX_RANK]; TERMS],
    phase: [[f64; MAX_RANK]; TERMS],
    noise_key: u64,
}

impl Field {
    /// Draws the parameters from `SplitMix64::new(array_seed)`: `base`, then per term `amp` and
    /// per axis (all [`MAX_RANK`] of them) the period and phase.
    pub fn new(array_seed: u64) -> Self {
        let mut r = SplitMix64::new(array_seed);
        let base = 0.04 + 0.04 * r.next_f64();
        let mut amp = [0.0; TERMS];
        let mut inv_period = [[0.0; MAX_RANK]; TERMS];
        let mut phase = [[0.0; MAX_RANK]; TERMS];
        for k in 0..TERMS {
            amp[k] = 0.3 + 0.5 * r.next_f64();
            for a in 0..MAX_RANK {
                inv_period[k][a] = 1.0 / (48.0 + 208.0 * r.next_f64());
                phase[k][a] = r.next_f64();
            }
        }
        Self { base, amp, inv_period, phase, noise_key: mix64(array_seed ^ 0x6e6f_6973_6500_0000) }
    }

    /// The soft periodic bump of term `k` along axis `a` at coordinate `c`, in `0..=1`.
    #[inline]
    fn profile(&self, k: usize, a: usize, c: u64) -> f64 {
        let u = c as f64 * self.inv_period[k][a] + self.phase[k][a];
        let u = u - u.floor();
        let w = 4.0 * u * (1.0 - u);
        let w2 = w * w;
        let w4 = w2 * w2;
        let w8 = w4 * w4;
        w8 * w8
    }

    /// Symmetric triangular noise in `[-1, 1)` from a 64-bit hash.
    #[inline]
    fn tri(h: u64) -> f64 {
        let a = (h >> 40) as f64;
        let b = ((h >> 16) & 0xFF_FFFF) as f64;
        (a + b) * (1.0 / 16_777_216.0) - 1.0
    }

    /// The intensity at `coords` (rank ≤ [`MAX_RANK`]; extra axes are ignored).
    pub fn voxel(&self, coords: &[u64]) -> f64 {
        let coords = &coords[..coords.len().min(MAX_RANK)];
        let mut s = self.base;
        for k in 0..TERMS {
            let mut t = self.amp[k];
            for (a, &c) in coords.iter().enumerate() {
                t *= self.profile(k, a, c);
            }
            s += t;
        }
        let mut h = self.noise_key;
        for &c in coords {
            h = mix64(h ^ c);
        }
        s + NOISE * Self::tri(h)
    }
}

/// The intensity of the voxel at `coords` of the array with seed `array_seed`: a pure
/// function, so tests and parity checks can recompute any voxel without the files.
pub fn voxel(array_seed: u64, coords: &[u64]) -> f64 {
    Field::new(array_seed).voxel(coords)
}

/// Full scale of an integer dtype: intensity 1.0 maps to this value.
fn full_scale(dtype: DataType) -> f64 {
    match dtype {
        DataType::UInt8 => 255.0,
        DataType::Int8 => 127.0,
        // A 12-bit camera's range, as microscopes record into u16.
        DataType::UInt16 | DataType::Int16 => 4095.0,
        _ => 65535.0,
    }
}

/// The value stored for `intensity` in `dtype`, as an `f64` that the stored element
/// equals exactly: integers are `round(clamp(intensity, 0, 1) * full_scale)` (full
/// scale 255 for u8, 127 for i8, 4095 for 16-bit, 65535 wider); floats are the intensity
/// rounded to the dtype; bool is `intensity > 0.5`.
pub fn stored_value(dtype: DataType, intensity: f64) -> f64 {
    match dtype {
        DataType::Float64 => intensity,
        DataType::Float32 => f64::from(intensity as f32),
        DataType::Float16 => half::f16::from_f64(intensity).to_f64(),
        DataType::BFloat16 => half::bf16::from_f64(intensity).to_f64(),
        DataType::Bool => f64::from(u8::from(intensity > 0.5)),
        _ => (intensity.clamp(0.0, 1.0) * full_scale(dtype)).round(),
    }
}

/// Writes `value` (a [`stored_value`]) as one native-endian element of `dtype` into `out`
/// (`out.len() == dtype.size()`).
fn put(dtype: DataType, value: f64, out: &mut [u8]) {
    match dtype {
        DataType::Bool | DataType::UInt8 => out.copy_from_slice(&(value as u8).to_ne_bytes()),
        DataType::Int8 => out.copy_from_slice(&(value as i8).to_ne_bytes()),
        DataType::UInt16 => out.copy_from_slice(&(value as u16).to_ne_bytes()),
        DataType::Int16 => out.copy_from_slice(&(value as i16).to_ne_bytes()),
        DataType::UInt32 => out.copy_from_slice(&(value as u32).to_ne_bytes()),
        DataType::Int32 => out.copy_from_slice(&(value as i32).to_ne_bytes()),
        DataType::UInt64 => out.copy_from_slice(&(value as u64).to_ne_bytes()),
        DataType::Int64 => out.copy_from_slice(&(value as i64).to_ne_bytes()),
        DataType::Float16 => out.copy_from_slice(&half::f16::from_f64(value).to_ne_bytes()),
        DataType::BFloat16 => out.copy_from_slice(&half::bf16::from_f64(value).to_ne_bytes()),
        DataType::Float32 => out.copy_from_slice(&(value as f32).to_ne_bytes()),
        DataType::Float64 => out.copy_from_slice(&value.to_ne_bytes()),
    }
}

/// Fills `out` (a C-order block of `block_shape` elements of `dtype`, native-endian) with
/// the array's values for the block at `origin`; elements outside `array_shape` are left
/// as they are (the caller zeroes them: the fill value). Equal, element for element, to
/// `stored_value(dtype, field.voxel(coords))`.
pub fn fill_block(
    field: &Field,
    dtype: DataType,
    array_shape: &[u64],
    origin: &[u64],
    block_shape: &[u64],
    out: &mut [u8],
) {
    let rank = block_shape.len();
    if rank == 0 || rank > MAX_RANK || array_shape.len() != rank || origin.len() != rank {
        return;
    }
    let size = dtype.size();
    let last = rank - 1;
    // Extent of the block inside the array, per axis.
    let inside: Vec<u64> =
        (0..rank).map(|a| array_shape[a].saturating_sub(origin[a]).min(block_shape[a])).collect();
    if inside.contains(&0) {
        return;
    }
    let row_len = inside[last] as usize;
    let row_stride = block_shape[last] as usize * size;
    // Tables along the last axis, evaluated exactly as `Field::voxel` evaluates them.
    let tables: Vec<Vec<f64>> = (0..TERMS)
        .map(|k| (0..row_len as u64).map(|x| field.profile(k, last, origin[last] + x)).collect())
        .collect();
    let mut acc = vec![0.0f64; row_len];
    let mut outer = vec![0u64; last];
    loop {
        // Row offset in the block, and the partial products of the outer axes.
        let mut row = 0usize;
        for a in 0..last {
            row = row * block_shape[a] as usize + outer[a] as usize;
        }
        let row_off = row * row_stride;
        acc.fill(field.base);
        for (k, table) in tables.iter().enumerate() {
            let mut p = field.amp[k];
            for a in 0..last {
                p *= field.profile(k, a, origin[a] + outer[a]);
            }
            for (s, &t) in acc.iter_mut().zip(table) {
                *s += p * t;
            }
        }
        let mut h_row = field.noise_key;
        for a in 0..last {
            h_row = mix64(h_row ^ (origin[a] + outer[a]));
        }
        let dst = &mut out[row_off..row_off + row_len * size];
        for (x, (s, e)) in acc.iter().zip(dst.chunks_exact_mut(size)).enumerate() {
            let h = mix64(h_row ^ (origin[last] + x as u64));
            put(dtype, stored_value(dtype, s + NOISE * Field::tri(h)), e);
        }
        if !advance(&mut outer, &inside[..last]) {
            return;
        }
    }
}

/// One object (shard or unsharded chunk) to write.
#[derive(Debug, Clone)]
struct Job {
    array: usize,
    coords: Vec<u64>,
    raw_bytes: u64,
}

/// Per-array facts the workers share.
#[derive(Debug)]
struct ArrayPlan {
    dir: PathBuf,
    meta: ArrayMetadata,
    field: Field,
    /// Shard shape (sharded) or chunk shape (unsharded): the extent of one object.
    object_shape: Vec<u64>,
    object_bytes: usize,
}

/// Writes one object; returns its stored size.
fn write_object(plan: &ArrayPlan, coords: &[u64], buf: &mut Vec<u8>) -> Result<u64, GenError> {
    let meta = &plan.meta;
    let key = meta.chunk_key_encoding.chunk_key(coords);
    let path = plan.dir.join(&key);
    let origin: Vec<u64> = coords.iter().zip(&plan.object_shape).map(|(c, s)| c * s).collect();
    buf.clear();
    buf.resize(plan.object_bytes, 0);
    fill_block(&plan.field, meta.data_type, &meta.shape, &origin, &plan.object_shape, buf);
    let repr = ChunkRepr {
        shape: plan.object_shape.clone(),
        data_type: meta.data_type,
        fill_value: meta.fill_value,
    };
    let encoded = zarr::encode_chunk(&meta.codecs, &repr, buf)
        .map_err(|source| GenError::Encode { path: path.clone(), source })?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|source| GenError::Io { path: parent.to_owned(), source })?;
    }
    std::fs::write(&path, &encoded)
        .map_err(|source| GenError::Io { path: path.clone(), source })?;
    Ok(encoded.len() as u64)
}

/// Work handed to the threads per round, in raw bytes per thread: small enough for
/// regular progress, large enough that starting threads costs nothing.
const ROUND_BYTES_PER_THREAD: u64 = 64 << 20;

/// Generates `scenario`'s dataset into `out_dir` with `threads` threads (0 means 1),
/// unless a complete dataset with the same key is already there (then it returns the
/// earlier report with `cached: true` and writes nothing). `progress` is called on the
/// calling thread at the start and after each round of objects.
///
/// The bytes written depend only on the scenario, never on `threads`.
///
/// # Errors
/// `Scenario` when it fails validation; `Io` naming the path for any file system
/// failure; `Metadata`, `Encode`, `Overflow` naming the array or object;
/// `WorkerPanicked` if a thread panicked.
pub fn generate(
    scenario: &Scenario,
    out_dir: &Path,
    threads: usize,
    progress: &dyn Fn(GenProgress),
) -> Result<GenReport, GenError> {
    scenario.validate()?;
    if let Some(report) = cached_report(scenario, out_dir) {
        return Ok(report);
    }
    let start = Instant::now();
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| GenError::Io { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let marker = out_dir.join(MARKER_FILE);
    match std::fs::remove_file(&marker) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&marker)(e)),
        _ => {}
    }

    // Plan every array and write its metadata; stale objects of an earlier run go first.
    let mut plans = Vec::new();
    let mut jobs = Vec::new();
    let mut raw_total = 0u64;
    for inst in scenario.array_instances() {
        let dir = out_dir.join(&inst.name);
        let meta = array_metadata(inst.group)
            .map_err(|source| GenError::Metadata { array: dir.clone(), source })?;
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&dir)(e)),
            _ => {}
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let documents =
            meta.documents().map_err(|source| GenError::Metadata { array: dir.clone(), source })?;
        for (key, text) in documents {
            let path = dir.join(key);
            std::fs::write(&path, text).map_err(io(&path))?;
        }

        let overflow = |what| GenError::Overflow { array: dir.clone(), what };
        let object_shape =
            inst.group.shard_shape.clone().unwrap_or_else(|| inst.group.chunk_shape.clone());
        let size = meta.data_type.size() as u64;
        let object_bytes = object_shape
            .iter()
            .try_fold(size, |acc, &d| acc.checked_mul(d))
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| overflow("object size"))?;
        let grid: Vec<u64> =
            meta.shape.iter().zip(&object_shape).map(|(e, s)| e.div_ceil(*s)).collect();
        let n_objects = grid
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| overflow("object count"))?;
        let array_index = plans.len();
        // The object grid in C order.
        let mut next_coords = vec![0u64; grid.len()];
        for _ in 0..n_objects {
            let coords = next_coords.clone();
            advance(&mut next_coords, &grid);
            // Raw bytes of the part of this object inside the array.
            let raw_bytes = (0..grid.len())
                .map(|a| {
                    meta.shape[a].min((coords[a] + 1) * object_shape[a])
                        - coords[a] * object_shape[a]
                })
                .fold(size, u64::saturating_mul);
            raw_total = raw_total.saturating_add(raw_bytes);
            jobs.push(Job { array: array_index, coords, raw_bytes });
        }
        plans.push(ArrayPlan {
            dir,
            meta,
            field: Field::new(inst.seed),
            object_shape,
            object_bytes,
        });
    }

    let threads = threads.max(1);
    let objects_total = jobs.len() as u64;
    let mut done = GenProgress {
        objects_done: 0,
        objects_total,
        raw_bytes_done: 0,
        raw_bytes_total: raw_total,
    };
    progress(done);
    let mut stored_total = 0u64;
    let mut next = 0usize;
    while next < jobs.len() {
        // One round: consecutive jobs up to the byte budget (at least one per thread).
        let budget = ROUND_BYTES_PER_THREAD.saturating_mul(threads as u64);
        let mut end = next;
        let mut bytes = 0u64;
        while end < jobs.len() && (bytes < budget || end - next < threads) {
            bytes = bytes.saturating_add(jobs[end].raw_bytes);
            end += 1;
        }
        let round = &jobs[next..end];
        let plans = &plans;
        // Thread t takes jobs t, t + threads, ...; each object's bytes depend on nothing
        // but the object, so the split does not change the output.
        let results: Vec<Result<u64, GenError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads.min(round.len()))
                .map(|t| {
                    s.spawn(move || {
                        let mut buf = Vec::new();
                        let mut stored = 0u64;
                        for job in round.iter().skip(t).step_by(threads) {
                            stored += write_object(&plans[job.array], &job.coords, &mut buf)?;
                        }
                        Ok(stored)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(GenError::WorkerPanicked { out_dir: out_dir.to_owned() })
                    })
                })
                .collect()
        });
        for r in results {
            stored_total += r?;
        }
        done.objects_done += round.len() as u64;
        done.raw_bytes_done += bytes;
        progress(done);
        next = end;
    }

    let report = GenReport {
        scenario: scenario.name.clone(),
        key: dataset_key(scenario),
        arrays: plans.len() as u64,
        objects: objects_total,
        raw_bytes: raw_total,
        stored_bytes: stored_total,
        ratio: if stored_total == 0 { 0.0 } else { raw_total as f64 / stored_total as f64 },
        seconds: start.elapsed().as_secs_f64(),
        cached: false,
    };
    let text = serde_json::to_string_pretty(&Marker {
        generator_version: GENERATOR_VERSION,
        report: report.clone(),
    })
    .unwrap_or_default();
    // Written under a temporary name and renamed, so a marker is never half written.
    let tmp = out_dir.join(format!("{MARKER_FILE}.tmp"));
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &marker).map_err(io(&marker))?;
    Ok(report)
}

#[cfg(test)]
mod tests;
