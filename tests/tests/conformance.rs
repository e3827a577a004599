//! Conformance against arrays written by zarr-python (tests/data, see
//! `tests/data/make_fixtures.py`): every manifest crop is read through the `zarr` crate
//! (via the reference reader in `tests::reference`) and compared value for value with
//! the `.npy` zarr-python saved. The zarr v2 arrays are also read through the pipeline,
//! on the host engine and on the CUDA engine's simulated device (v3 arrays go through the
//! engines in `crates/damacy/tests`). One test per array, so a failure names the case.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use bench::npy::Npy;
use damacy::{Backend, Config, OutDtype, Pipeline, Sample, SampleError};
use tests::compare::compare;
use tests::manifest::{FixtureArray, Manifest, data_dir};
use tests::reference::ReferenceArray;
use zarr::{ArrayMetadata, DataType};

/// The engines a zarr v2 fixture is read through besides the reference reader.
const ENGINES: [Backend; 2] = [Backend::Host, Backend::Simulated];

/// Reads `[lo, hi)` of the array at `path` through a one-sample pipeline on `backend`,
/// in the array's own dtype.
fn read_through(backend: Backend, path: &Path, lo: &[u64], hi: &[u64]) -> damacy::Result<Vec<u8>> {
    let shape: Vec<u64> = lo.iter().zip(hi).map(|(l, h)| h - l).collect();
    let cfg = Config::builder()
        .sample_shape(&shape)
        .samples_per_batch(1)
        .dtype(OutDtype::Native)
        .backend(backend)
        .decode_threads(2)
        // Small chunks: a whole-array crop touches many objects.
        .max_shards_per_sample(4096)
        // The fixtures are tiny: the simulated device's memory (host memory) need not
        // be the default gigabytes.
        .max_gpu_memory_bytes(256 << 20)
        .max_pinned_host_bytes(80 << 20)
        .max_read_op_bytes(1 << 20)
        .build()?;
    let mut p = Pipeline::new(cfg)?;
    p.push([Sample::new(path, lo.to_vec(), hi.to_vec())?])?;
    p.finish();
    let batch = p.pop()?.ok_or(damacy::Error::Closed)?;
    batch.to_host()
}

/// The sample error of reading `[lo, hi)` of `path` on the host engine, which must fail.
fn sample_error(path: &Path, lo: &[u64], hi: &[u64]) -> SampleError {
    match read_through(Backend::Host, path, lo, hi) {
        Err(damacy::Error::Sample { source, .. }) => *source,
        other => {
            panic!("{}: expected a sample error, got {:?}", path.display(), other.map(|v| v.len()))
        }
    }
}

/// Reads every crop of `fixture` through each engine and compares it with `reference`'s
/// crop values; returns one message per difference.
fn check_engines(fixture: &FixtureArray, dtype: DataType) -> Result<Vec<String>> {
    let path = std::path::absolute(data_dir().join(&fixture.path))?;
    let mut failures = Vec::new();
    for backend in ENGINES {
        for crop in &fixture.crops {
            let reference = Npy::read(&data_dir().join(&crop.npy))?;
            let shape: Vec<u64> = crop.lo.iter().zip(&crop.hi).map(|(l, h)| h - l).collect();
            match read_through(backend, &path, &crop.lo, &crop.hi) {
                Ok(got) => {
                    if let Some(m) = compare(dtype, &shape, &reference.data, &got) {
                        failures
                            .push(format!("{backend:?} crop {:?}..{:?}: {m}", crop.lo, crop.hi));
                    }
                }
                Err(e) => {
                    failures.push(format!("{backend:?} crop {:?}..{:?}: {e}", crop.lo, crop.hi))
                }
            }
        }
    }
    Ok(failures)
}

/// Reads every crop of array `name` and compares it with its reference values.
fn check_array(name: &str) -> Result<()> {
    let manifest = Manifest::load()?;
    let fixture = manifest.array(name)?;
    let array = ReferenceArray::open(&data_dir().join(&fixture.path))
        .with_context(|| format!("opening `{name}` ({})", fixture.codecs))?;
    ensure!(
        array.meta.shape == fixture.shape,
        "{name}: shape {:?} != manifest {:?}",
        array.meta.shape,
        fixture.shape
    );
    ensure!(
        array.meta.data_type == DataType::parse(&fixture.dtype)?,
        "{name}: data type {} != manifest {}",
        array.meta.data_type,
        fixture.dtype
    );
    ensure!(
        array.meta.zarr_format.number() == fixture.zarr_format,
        "{name}: read as {} but written as zarr v{}",
        array.meta.zarr_format,
        fixture.zarr_format
    );
    ensure!(!fixture.crops.is_empty(), "{name}: no crops in the manifest");
    let mut failures = Vec::new();
    for crop in &fixture.crops {
        let reference = Npy::read(&data_dir().join(&crop.npy))?;
        let shape: Vec<u64> = crop.lo.iter().zip(&crop.hi).map(|(l, h)| h - l).collect();
        ensure!(
            reference.shape == shape,
            "{}: .npy shape {:?} != crop shape {shape:?}",
            crop.npy,
            reference.shape
        );
        ensure!(
            reference.data_type == array.meta.data_type,
            "{}: .npy dtype {}",
            crop.npy,
            reference.data_type
        );
        let got = match array.read(&crop.lo, &crop.hi) {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("crop {:?}..{:?}: read failed: {e:#}", crop.lo, crop.hi));
                continue;
            }
        };
        if let Some(m) = compare(array.meta.data_type, &shape, &reference.data, &got) {
            failures.push(format!("crop {:?}..{:?}: {m}", crop.lo, crop.hi));
        }
    }
    if fixture.zarr_format == 2 {
        failures.extend(check_engines(fixture, array.meta.data_type)?);
    }
    if !failures.is_empty() {
        bail!("{name} ({}):\n  {}", fixture.codecs, failures.join("\n  "));
    }
    Ok(())
}

/// One `#[test]` per fixture array, plus the list of names for the coverage check.
macro_rules! conformance_arrays {
    ($($name:ident),* $(,)?) => {
        const TESTED: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() -> Result<()> {
                check_array(stringify!($name))
            }
        )*
    };
}

conformance_arrays!(
    zstd_u16,
    zstd_checksum_i32,
    blosc_zstd_shuffle_f32,
    blosc_zstd_bitshuffle_u16,
    blosc_lz4_shuffle_i32,
    blosc_lz4_bitshuffle_f64,
    blosc_blosclz_shuffle_u32,
    blosc_lz4_noshuffle_u8,
    blosc_zstd_shuffle_blocks_i16,
    blosc_lz4_bitshuffle_blocks_u16,
    blosc_lz4_memcpyed_u8,
    gzip_i16,
    bytes_be_u32,
    bytes_be_f64_zstd,
    zstd_crc32c_f32,
    gzip_crc32c_u8,
    transpose_u16_zstd,
    transpose_be_i32,
    keys_dot_u16,
    keys_v2_dot_i16,
    keys_v2_slash_u8,
    dtype_bool,
    dtype_int8,
    dtype_uint8,
    dtype_int16,
    dtype_uint16,
    dtype_int32,
    dtype_uint32,
    dtype_int64,
    dtype_uint64,
    dtype_float16,
    dtype_float32,
    dtype_float64,
    rank1_u16_zstd,
    rank2_f32_blosc,
    rank5_i16_zstd,
    rank5_u8_sharded,
    shard_end_u16_zstd,
    shard_start_f32_blosc,
    shard_start_index_nocrc_i32,
    shard_index_be_u32,
    shard_transpose_inner_u16,
    shard_outer_zstd_crc_i16,
    shard_nested_u16,
    shard_missing_u16,
    shard_empty_inner_i32_fill,
    shard_start_empty_inner_f64_nan,
    missing_chunks_f32_fill,
    missing_chunks_u64_fill,
    numcodecs_zlib_u16,
    numcodecs_lz4_i32,
    v2_blosc_zstd_shuffle_u16,
    v2_blosc_zstd_bitshuffle_f32,
    v2_blosc_zstd_noshuffle_i16_blocks,
    v2_blosc_lz4_shuffle_i32,
    v2_blosc_lz4hc_bitshuffle_u32,
    v2_blosc_zlib_shuffle_f64,
    v2_blosc_blosclz_noshuffle_u16,
    v2_blosc_lz4_autoshuffle_u8,
    v2_zstd_u16,
    v2_zstd_checksum_i64,
    v2_gzip_i16,
    v2_zlib_u32,
    v2_lz4_f32,
    v2_none_u8,
    v2_zstd_be_u16,
    v2_blosc_zstd_be_f32,
    v2_zstd_f_u16,
    v2_blosc_zstd_f_i32,
    v2_blosc_zstd_f_be_i16,
    v2_none_f_be_f64,
    v2_slash_zstd_i16,
    v2_slash_f_lz4_u16,
    v2_dtype_bool,
    v2_dtype_int8,
    v2_dtype_uint8,
    v2_dtype_int16,
    v2_dtype_uint16,
    v2_dtype_int32,
    v2_dtype_uint32,
    v2_dtype_int64,
    v2_dtype_uint64,
    v2_dtype_float16,
    v2_dtype_float32,
    v2_dtype_float64,
    v2_dtype_float16_le_blosc,
    v2_fill_nan_f32,
    v2_fill_inf_f64,
    v2_fill_neginf_f16,
    v2_fill_int_u16,
    v2_fill_negative_i32,
    v2_fill_true_bool,
    v2_fill_null_i16,
    v2_fill_null_f32,
    v2_fill_nan_blosc_f64,
    v2_rank1_zstd_u16,
    v2_rank4_gzip_f_u8,
    v2_rank5_blosc_zstd_f_i16,
);

#[test]
fn every_manifest_array_has_a_test_and_vice_versa() -> Result<()> {
    let manifest = Manifest::load()?;
    let mut in_manifest: Vec<&str> = manifest.arrays.iter().map(|a| a.name.as_str()).collect();
    let mut tested = TESTED.to_vec();
    in_manifest.sort_unstable();
    tested.sort_unstable();
    assert_eq!(in_manifest, tested, "add new fixture arrays to conformance_arrays!");
    Ok(())
}

/// Reads a reject's metadata and returns what the parser of its format says about it.
fn parse_reject(name: &str) -> Result<zarr::Result<ArrayMetadata>> {
    let manifest = Manifest::load()?;
    let reject = manifest.rejects.iter().find(|r| r.name == name).context("no such reject")?;
    let bytes = std::fs::read(data_dir().join(&reject.metadata))?;
    Ok(if reject.metadata.ends_with(".zarray") {
        ArrayMetadata::parse_v2(&bytes, None)
    } else {
        ArrayMetadata::parse(&bytes)
    })
}

/// Asserts the zarr v2 reject `name` fails with `want`: parsed, and read through the
/// pipeline as a metadata error naming its `.zarray`.
fn assert_v2_reject(name: &str, want: zarr::Error) -> Result<()> {
    assert_eq!(parse_reject(name)?, Err(want.clone()), "{name}");
    let dir = std::path::absolute(data_dir().join("zarr").join(name))?;
    match sample_error(&dir, &[0, 0], &[2, 2]) {
        SampleError::Metadata { path, source } => {
            assert_eq!((path, source), (dir.join(".zarray"), want), "{name}");
        }
        other => panic!("{name}: expected Metadata, got {other:?}"),
    }
    Ok(())
}

/// A zarr v2 array with a filter (zarr-python wrote `Delta`) is refused by the filter's
/// id, and one with a compressor this crate does not decode (`BZ2`) by the compressor's.
#[test]
fn v2_filter_and_unknown_compressor_are_rejected_naming_them() -> Result<()> {
    assert_v2_reject("v2_filter_delta", zarr::Error::UnsupportedFilter { id: "delta".into() })?;
    assert_v2_reject("v2_compressor_bz2", zarr::Error::Unsupported { codec: "bz2".into() })
}

/// A copy of fixture `name` in a fresh directory, for corrupting.
fn copy_fixture(name: &str, tmp: &Path) -> Result<PathBuf> {
    let src = data_dir().join("zarr").join(name);
    let dst = tmp.join(name);
    std::fs::create_dir_all(&dst)?;
    for e in std::fs::read_dir(&src)? {
        let e = e?;
        ensure!(e.file_type()?.is_file(), "{name}: nested keys are not copied");
        std::fs::copy(e.path(), dst.join(e.file_name()))?;
    }
    Ok(dst)
}

/// A `.zarray` that is not JSON is a metadata error naming the `.zarray`.
#[test]
fn garbage_zarray_is_a_json_error_naming_the_file() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = copy_fixture("v2_zstd_u16", tmp.path())?;
    std::fs::write(dir.join(".zarray"), b"\x00{zarr_format: 2,,]")?;
    match sample_error(&dir, &[0, 0, 0], &[2, 2, 2]) {
        SampleError::Metadata { path, source: zarr::Error::Json { .. } } => {
            assert_eq!(path, dir.join(".zarray"));
        }
        other => panic!("expected a Json metadata error, got {other:?}"),
    }
    Ok(())
}

/// A truncated chunk is a decode error naming the chunk object and its grid coordinates,
/// for a zstd chunk and for a blosc frame.
#[test]
fn truncated_v2_chunk_is_a_decode_error_naming_the_chunk() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    for name in ["v2_zstd_u16", "v2_blosc_lz4_shuffle_i32"] {
        let dir = copy_fixture(name, tmp.path())?;
        let chunk = dir.join("1.0.0");
        let bytes = std::fs::read(&chunk)?;
        std::fs::write(&chunk, &bytes[..bytes.len() / 2])?;
        for backend in ENGINES {
            let e = match read_through(backend, &dir, &[6, 0, 0], &[8, 2, 2]) {
                Err(damacy::Error::Sample { source, .. }) => *source,
                other => {
                    panic!("{name}: expected a sample error, got {:?}", other.map(|v| v.len()))
                }
            };
            match e {
                SampleError::Decode { path, chunk: coords, source } => {
                    assert_eq!(path, chunk, "{name} {backend:?}");
                    assert_eq!(coords, vec![1, 0, 0], "{name} {backend:?}");
                    assert!(
                        matches!(
                            source,
                            zarr::Error::Decompress { .. } | zarr::Error::DecodedSize { .. }
                        ),
                        "{name} {backend:?}: {source:?}"
                    );
                }
                // A blosc array's layout is probed from the sample's first chunk: the
                // truncated frame is found there, before any decode.
                SampleError::Metadata {
                    path,
                    source: zarr::Error::BloscLength { cbytes, len },
                } => {
                    assert_eq!(path, chunk, "{name} {backend:?}");
                    assert_eq!(cbytes, 2 * len, "{name} {backend:?}");
                }
                other => panic!("{name} {backend:?}: expected Decode, got {other:?}"),
            }
        }
    }
    Ok(())
}

#[test]
fn group_is_rejected_as_not_an_array() -> Result<()> {
    match parse_reject("group")? {
        Err(zarr::Error::NotAnArray { node_type }) => assert_eq!(node_type, "group"),
        other => panic!("expected NotAnArray {{ node_type: \"group\" }}, got {other:?}"),
    }
    Ok(())
}

/// The fixtures must really contain what the sparse cases claim: a missing shard, an
/// empty index entry in a present shard, a missing unsharded chunk. Otherwise the
/// fill-value tests above would pass without exercising those paths.
#[test]
fn sparse_fixtures_are_really_sparse() -> Result<()> {
    let dir = data_dir().join("zarr");
    assert!(dir.join("shard_missing_u16/c/0/0").is_file());
    assert!(!dir.join("shard_missing_u16/c/2/2").exists());
    assert!(!dir.join("missing_chunks_f32_fill/c/1/1").exists());
    assert!(dir.join("v2_fill_null_i16/0.0").is_file());
    assert!(!dir.join("v2_fill_null_i16/1.0").exists());
    assert!(!dir.join("v2_fill_nan_f32/2.2").exists());

    let array = ReferenceArray::open(&dir.join("shard_empty_inner_i32_fill"))?;
    let zarr::ArrayToBytes::Sharding(sharding) = &array.meta.codecs.array_to_bytes else {
        panic!("shard_empty_inner_i32_fill is not sharded");
    };
    let shard = std::fs::read(dir.join("shard_empty_inner_i32_fill/c/0/0"))?;
    let index = zarr::ShardIndex::of_shard(sharding, 4, &shard)?;
    use zarr::shard_index::ChunkLocation::{Empty, Range};
    assert_eq!(index.get(0), Some(Empty));
    assert!(matches!(index.get(1), Some(Range { .. })));
    assert!(matches!(index.get(2), Some(Range { .. })));
    assert_eq!(index.get(3), Some(Empty));
    Ok(())
}

/// The reference reader poisons its output: a region of fill value reads as the fill,
/// not as leftover poison, which shows the fill path writes every element.
#[test]
fn fill_regions_read_as_fill_not_poison() -> Result<()> {
    let array = ReferenceArray::open(&data_dir().join("zarr/missing_chunks_u64_fill"))?;
    let got = array.read(&[10, 10], &[12, 13])?;
    let fill = (1u64 << 63) + 12345;
    let values: Vec<u64> =
        got.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).collect();
    assert_eq!(values, vec![fill; 6]);
    Ok(())
}
