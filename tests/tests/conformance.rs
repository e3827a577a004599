//! Conformance against arrays written by zarr-python (tests/data, see
//! `tests/data/make_fixtures.py`): every manifest crop is read through the `zarr` crate
//! (via the reference reader in `tests::reference`) and compared value for value with
//! the `.npy` zarr-python saved. One test per array, so a failure names the case.

use anyhow::{Context, Result, bail, ensure};
use bench::npy::Npy;
use tests::compare::compare;
use tests::manifest::{Manifest, data_dir};
use tests::reference::ReferenceArray;
use zarr::{ArrayMetadata, DataType};

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

/// Reads a reject's metadata and returns what `ArrayMetadata::parse` says about it.
fn parse_reject(name: &str) -> Result<zarr::Result<ArrayMetadata>> {
    let manifest = Manifest::load()?;
    let reject = manifest.rejects.iter().find(|r| r.name == name).context("no such reject")?;
    let bytes = std::fs::read(data_dir().join(&reject.metadata))?;
    Ok(ArrayMetadata::parse(&bytes))
}

#[test]
fn v2_array_is_rejected_as_unsupported_format() -> Result<()> {
    match parse_reject("v2_array")? {
        Err(zarr::Error::UnsupportedFormat { zarr_format }) => assert_eq!(zarr_format, 2),
        other => panic!("expected UnsupportedFormat {{ zarr_format: 2 }}, got {other:?}"),
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
