//! The seed corpus generator (`cargo run -p fuzz -- seeds`): rewrites `corpus/<target>/`
//! from the repository's fixtures and from inputs built here.
//!
//! Fixtures written by other implementations are preferred (zarr-python's `zarr.json`
//! documents, chunks and shards in `tests/data/zarr`; c-blosc's frames in
//! `crates/zarr/tests/data/blosc`). Built inputs fill the gaps: shard indexes of every
//! encoding, blosc frames with split streams, and zstd frames of every header shape.
//! Each built input is checked to be accepted by its parser before it is written.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use zarr::blosc::{self, Compressor, EncodeOptions, Shuffle};
use zarr::codec::{BloscCname, BloscShuffle};
use zarr::{
    ArrayMetadata, BytesToBytes, ChunkLocation, ChunkRepr, CodecChain, DataType, FillValue,
    ShardIndex,
};

use crate::campaign::corpus_root;
use crate::rng::SplitMix64;
use crate::targets::{chunk, shard_index};

/// `zarr.json` fixtures for the metadata corpus: every codec, both byte orders, nested
/// and start-index sharding, v2 chunk keys, a NaN fill value, a group (rejected). The
/// `chunk` target's chains are read from these files.
const METADATA_FIXTURES: [&str; 14] = [
    "zstd_u16",
    "gzip_crc32c_u8",
    "blosc_lz4_shuffle_i32",
    "blosc_zstd_bitshuffle_u16",
    "transpose_be_i32",
    "shard_end_u16_zstd",
    "shard_start_f32_blosc",
    "shard_outer_zstd_crc_i16",
    "shard_nested_u16",
    "shard_index_be_u32",
    "keys_v2_dot_i16",
    "shard_start_empty_inner_f64_nan",
    "dtype_bool",
    "group",
];

/// `.zarray` fixtures for the `metadata_v2` corpus: every numcodecs compressor (blosc with
/// AUTOSHUFFLE), both byte orders, Fortran order, both separators, NaN, -Infinity and null
/// fill values, bool and float16, rank 5, and two rejects (a delta filter, bz2). The
/// `chunk` target's v2 chains are read from these files.
const METADATA_V2_FIXTURES: [&str; 18] = [
    "v2_zstd_u16",
    "v2_zstd_checksum_i64",
    "v2_blosc_zstd_shuffle_u16",
    "v2_blosc_lz4_autoshuffle_u8",
    "v2_blosc_zstd_f_be_i16",
    "v2_gzip_i16",
    "v2_zlib_u32",
    "v2_lz4_f32",
    "v2_none_f_be_f64",
    "v2_slash_f_lz4_u16",
    "v2_dtype_bool",
    "v2_dtype_float16",
    "v2_fill_nan_f32",
    "v2_fill_null_i16",
    "v2_fill_neginf_f16",
    "v2_rank5_blosc_zstd_f_i16",
    "v2_filter_delta",
    "v2_compressor_bz2",
];

/// c-blosc frames under 20 KB covering each compressor, both shuffles, split streams,
/// leftover blocks and memcpyed frames.
const BLOSC_FIXTURES: [&str; 12] = [
    "blosclz_bit_v32_blocks_leftover",
    "blosclz_byte_f32_split",
    "blosclz_none_u8_runs",
    "lz4_bit_u16_short",
    "lz4hc_byte_f32",
    "memcpyed_clevel0",
    "memcpyed_tiny",
    "noise_u8",
    "noise_zstd_u32",
    "zlib_byte_u16",
    "zstd_bit_u16",
    "zstd_byte_v3",
];

/// Named seed files of one target.
type Files = Vec<(String, Vec<u8>)>;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Rewrites every target's corpus folder and returns the number of files written.
///
/// # Errors
/// A fixture that cannot be read, a built input its parser rejects, or a write that
/// fails.
pub fn write_all() -> Result<usize> {
    // The metadata comes first: the `chunk` target's chains are compiled in from it (so a
    // new chain takes two runs, with a build between).
    type Make = fn() -> Result<Files>;
    let sets: [(&str, Make); 7] = [
        ("metadata", metadata),
        ("ngff", ngff_metadata),
        ("metadata_v2", metadata_v2),
        ("shard_index", shard_indexes),
        ("blosc", blosc_frames),
        ("chunk", chunks),
        ("zstd_frame", zstd_frames),
    ];
    let mut written = 0;
    for (target, make) in sets {
        let files = make()?;
        let dir = corpus_root().join(target);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, bytes) in files {
            let path = dir.join(name);
            fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            written += 1;
        }
    }
    Ok(written)
}

/// Arrays with chains that no fixture has, written by zarr's own serializer: shards
/// compressed whole by blosc, and zstd under gzip. Both put a decoder of unknown output
/// size (the shard, the zstd stream) under the stage cap that guards forged sizes.
fn built_metadata() -> Result<Vec<(&'static str, ArrayMetadata)>> {
    let inner = CodecChain::little_endian(vec![BytesToBytes::Gzip { level: 1 }]);
    let zero16 = FillValue::zero(DataType::UInt16);
    let mut sharded = ArrayMetadata::sharded(
        vec![32, 16],
        vec![16, 16],
        vec![8, 8],
        DataType::UInt16,
        inner,
        zero16,
    )?;
    sharded.codecs.bytes_to_bytes.push(BytesToBytes::Blosc {
        cname: BloscCname::Zstd,
        clevel: 5,
        shuffle: BloscShuffle::Shuffle,
        typesize: Some(2),
        blocksize: 0,
    });
    sharded.validate()?;
    let layered = CodecChain {
        bytes_to_bytes: vec![
            BytesToBytes::Zstd { level: 1, checksum: false },
            BytesToBytes::Gzip { level: 1 },
        ],
        ..CodecChain::bytes(None)
    };
    let layered = ArrayMetadata::chunked(
        vec![64, 32],
        vec![32, 32],
        DataType::UInt8,
        layered,
        FillValue::zero(DataType::UInt8),
    )?;
    Ok(vec![("built_shard_outer_blosc_u16", sharded), ("built_zstd_gzip_u8", layered)])
}

fn metadata() -> Result<Files> {
    let fixtures = repo_root().join("tests/data/zarr");
    let mut out: Vec<(String, Vec<u8>)> = METADATA_FIXTURES
        .iter()
        .map(|f| Ok((format!("{f}.json"), read(&fixtures.join(f).join("zarr.json"))?)))
        .collect::<Result<_>>()?;
    for (name, meta) in built_metadata()? {
        out.push((format!("{name}.json"), meta.to_json().into_bytes()));
    }
    Ok(out)
}

/// OME-NGFF image and labels metadata ome-zarr-py wrote (`tests/data/ngff`), 0.4 and 0.5.
fn ngff_metadata() -> Result<Files> {
    let dir = repo_root().join("tests/data/ngff");
    let mut out = Vec::new();
    for (version, file) in [("v04", ".zattrs"), ("v05", "zarr.json")] {
        for image in ["image3d", "image5d"] {
            for (what, rel) in [("image", ""), ("labels", "labels/"), ("label", "labels/cells/")] {
                let bytes = read(&dir.join(version).join(format!("{image}.zarr/{rel}{file}")))?;
                out.push((format!("{version}_{image}_{what}.json"), bytes));
            }
        }
    }
    Ok(out)
}

fn metadata_v2() -> Result<Files> {
    let fixtures = repo_root().join("tests/data/zarr");
    METADATA_V2_FIXTURES
        .iter()
        .map(|f| Ok((format!("{f}.zarray"), read(&fixtures.join(f).join(".zarray"))?)))
        .collect()
}

/// Shard index inputs: the flags byte, the chunk count, the shard length (u64 LE) and
/// the index bytes, as [`shard_index::run_one`] reads them.
fn shard_index_input(flags: u8, entries: &[ChunkLocation], shard_len: u64) -> Result<Vec<u8>> {
    let codec = shard_index::codec(flags);
    let n = u8::try_from(entries.len()).context("at most 255 entries")?;
    let index = ShardIndex::encode(&codec, entries)?;
    ShardIndex::decode(&codec, entries.len() as u64, shard_len, &index)
        .with_context(|| format!("built shard index (flags {flags}) does not decode"))?;
    Ok([&[flags, n][..], &shard_len.to_le_bytes(), &index].concat())
}

fn shard_indexes() -> Result<Files> {
    use ChunkLocation::{Empty, Range};
    let mut out = vec![
        (
            "end_le_crc.bin".to_owned(),
            shard_index_input(
                4,
                &[
                    Range { offset: 0, nbytes: 10 },
                    Empty,
                    Range { offset: 10, nbytes: 5 },
                    Range { offset: 15, nbytes: 0 },
                ],
                15 + 4 * 16 + 4,
            )?,
        ),
        (
            "start_le.bin".to_owned(),
            shard_index_input(
                1,
                &[Range { offset: 48, nbytes: 100 }, Range { offset: 148, nbytes: 20 }, Empty],
                168,
            )?,
        ),
        ("end_be_crc_all_empty.bin".to_owned(), shard_index_input(2 | 4, &[Empty, Empty], 36)?),
        ("none.bin".to_owned(), shard_index_input(0, &[], 0)?),
    ];
    // Start, big-endian, crc32c: eight 16-byte chunks after the index.
    let eight: Vec<ChunkLocation> =
        (0..8).map(|i| Range { offset: 132 + 16 * i, nbytes: 16 }).collect();
    out.push(("start_be_crc.bin".to_owned(), shard_index_input(1 | 2 | 4, &eight, 132 + 128)?));
    // The largest count the layout can state, with empty chunks scattered through it.
    let mut rng = SplitMix64::new(255);
    let mut offset = 0;
    let many: Vec<ChunkLocation> = (0..255)
        .map(|_| {
            if rng.chance(20) {
                return Empty;
            }
            let nbytes = rng.below(4096);
            let e = Range { offset, nbytes };
            offset += nbytes;
            e
        })
        .collect();
    out.push((
        "end_le_crc_255.bin".to_owned(),
        shard_index_input(4, &many, offset + 255 * 16 + 4)?,
    ));
    // Indexes zarr-python wrote: (fixture, flags, index at the start).
    for (fixture, flags) in [
        ("shard_end_u16_zstd", 4u8),
        ("shard_index_be_u32", 2 | 4),
        ("shard_start_f32_blosc", 1 | 4),
    ] {
        let shard = read(&repo_root().join("tests/data/zarr").join(fixture).join("c/0/0/0"))?;
        // Shards of 16³ with inner chunks of 8³: 8 entries, 132 index bytes.
        let index_len = 8 * 16 + 4;
        ensure!(shard.len() >= index_len, "{fixture}: shard shorter than its index");
        let index =
            if flags & 1 == 0 { &shard[shard.len() - index_len..] } else { &shard[..index_len] };
        let input = [&[flags, 8][..], &(shard.len() as u64).to_le_bytes(), index].concat();
        let codec = shard_index::codec(flags);
        ShardIndex::decode(&codec, 8, shard.len() as u64, index)
            .with_context(|| format!("{fixture}: index does not decode"))?;
        out.push((format!("{fixture}.bin"), input));
    }
    Ok(out)
}

fn blosc_frames() -> Result<Files> {
    let dir = repo_root().join("crates/zarr/tests/data/blosc");
    let mut out: Vec<(String, Vec<u8>)> = BLOSC_FIXTURES
        .iter()
        .map(|f| Ok((format!("{f}.blosc"), read(&dir.join(format!("{f}.blosc")))?)))
        .collect::<Result<_>>()?;
    // Small frames of each compressor with split streams and a short last block, which
    // the c-blosc fixtures cover only in large frames. Split blocks are at least 64 KiB
    // (c-blosc's rule), so 70,000 bytes make one full block and a short one.
    let data: Vec<u8> = (0u32..17_500).flat_map(|i| (i / 7).to_le_bytes()).collect();
    for (compressor, shuffle) in [
        (Compressor::BloscLz, Shuffle::Byte),
        (Compressor::Lz4, Shuffle::Bit),
        (Compressor::Zlib, Shuffle::Byte),
        (Compressor::Zstd, Shuffle::None),
    ] {
        let opts = EncodeOptions {
            compressor,
            clevel: 5,
            shuffle,
            typesize: 4,
            blocksize: 512,
            split: true,
        };
        let frame = blosc::encode(&data, &opts)?;
        let lay = blosc::layout(&frame)?;
        ensure!(
            lay.split && lay.leftover > 0,
            "{compressor:?}: frame is not split with a leftover"
        );
        let mut check = vec![0u8; lay.nbytes];
        blosc::decode(&frame, &mut check)?;
        ensure!(check == data, "{compressor:?}: built frame does not decode to its data");
        out.push((format!("built_split_{}.blosc", compressor.name()), frame));
    }
    Ok(out)
}

/// The chunk files of a fixture array, first and last in C order of their keys: under
/// `c/` for a v3 array, and for a v2 array in the array's folder (`0.1.2` or `0/1/2`).
fn first_and_last_chunk(fixture: &str) -> Result<[Vec<u8>; 2]> {
    fn walk(dir: &Path, key: &mut Vec<u64>, out: &mut Vec<(Vec<u64>, PathBuf)>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            // A name of numbers joined by `.` is one key (v2's `.` separator); metadata
            // files such as `.zarray` are not numbers.
            let Some(coords) = path.file_name().and_then(|n| n.to_str()).and_then(|n| {
                n.split('.').map(str::parse::<u64>).collect::<Result<Vec<_>, _>>().ok()
            }) else {
                continue;
            };
            let depth = key.len();
            key.extend(coords);
            if path.is_dir() {
                walk(&path, key, out)?;
            } else {
                out.push((key.clone(), path));
            }
            key.truncate(depth);
        }
        Ok(())
    }
    let array = repo_root().join("tests/data/zarr").join(fixture);
    let root = if array.join("c").is_dir() { array.join("c") } else { array };
    let mut files = Vec::new();
    walk(&root, &mut Vec::new(), &mut files)?;
    files.sort();
    let (Some((_, first)), Some((_, last))) = (files.first(), files.last()) else {
        bail!("{fixture}: no chunk files");
    };
    Ok([read(first)?, read(last)?])
}

fn chunks() -> Result<Files> {
    let mut out = Vec::new();
    for (selector, name) in chunk::chain_names().enumerate() {
        let (chain, repr) = &chunk::PARSED[selector];
        let stored: Vec<(&str, Vec<u8>)> = if name.starts_with("built_") {
            built_chunks(chain, repr)?
        } else {
            let [first, last] = first_and_last_chunk(name)?;
            vec![("first", first), ("last", last)]
        };
        let mut decoded = vec![0u8; repr.num_bytes()?];
        let selector = u8::try_from(selector)?;
        for (which, stored) in stored {
            zarr::decode_chunk(chain, repr, &stored, &mut decoded)
                .with_context(|| format!("{name}: {which} chunk does not decode"))?;
            out.push((
                format!("{selector:02}_{name}_{which}.bin"),
                [&[selector][..], &stored].concat(),
            ));
        }
    }
    Ok(out)
}

/// A dense chunk and a sparse one (mostly fill value, so that shards hold empty inner
/// chunks), encoded through `chain`.
fn built_chunks(chain: &CodecChain, repr: &ChunkRepr) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let n = repr.num_bytes()?;
    let dense: Vec<u8> = (0..n).map(|i| (i / 3 % 251) as u8).collect();
    let sparse: Vec<u8> = (0..n).map(|i| if i < n / 5 { (i % 7) as u8 } else { 0 }).collect();
    Ok(vec![
        ("dense", zarr::encode_chunk(chain, repr, &dense)?),
        ("sparse", zarr::encode_chunk(chain, repr, &sparse)?),
    ])
}

/// A zstd frame input: the content size (u64 LE), then the frame.
fn zstd_input(content: &[u8], frame: Vec<u8>) -> Result<Vec<u8>> {
    kernels::check_zstd_frame(&frame, content.len() as u64)?;
    ensure!(zstd::bulk::decompress(&frame, content.len())? == content, "frame does not round-trip");
    Ok([&(content.len() as u64).to_le_bytes()[..], &frame].concat())
}

fn compress(
    content: &[u8],
    level: i32,
    checksum: bool,
    window_log: Option<u32>,
) -> Result<Vec<u8>> {
    use zstd::zstd_safe::CParameter;
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(CParameter::ChecksumFlag(checksum))?;
    if let Some(w) = window_log {
        c.set_parameter(CParameter::WindowLog(w))?;
    }
    Ok(c.compress(content)?)
}

fn zstd_frames() -> Result<Files> {
    let mut rng = SplitMix64::new(8878);
    let noise: Vec<u8> = (0..3000).map(|_| rng.next_u64() as u8).collect();
    let text: Vec<u8> =
        (0..5000u32).map(|i| b"zarr shard chunk "[(i % 17) as usize] ^ (i / 97) as u8).collect();
    // Long enough for several 128 KiB blocks and a 4-byte content size field.
    let long: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 ^ (i >> 12) as u8).collect();
    let mut out = vec![
        ("empty_checksum.bin", zstd_input(&[], compress(&[], 3, true, None)?)?),
        ("one_byte_fcs1.bin", zstd_input(&[7], compress(&[7], 3, false, None)?)?),
        ("zeros_rle.bin", zstd_input(&[0; 1024], compress(&[0; 1024], 1, false, None)?)?),
        ("noise_raw.bin", zstd_input(&noise, compress(&noise, 3, false, None)?)?),
        ("text_checksum.bin", zstd_input(&text, compress(&text, 19, true, None)?)?),
        // A 1 KiB window below the content size: no single-segment flag, so the header
        // has a window descriptor.
        ("text_window_1k.bin", zstd_input(&text, compress(&text, 3, false, Some(10))?)?),
        ("long_multi_block.bin", zstd_input(&long, compress(&long, 1, true, None)?)?),
    ]
    .into_iter()
    .map(|(n, b)| (n.to_owned(), b))
    .collect::<Vec<_>>();
    // Frames zarr-python wrote (zstd level 3 without checksum; level 1 with one).
    for (fixture, size) in [("zstd_u16", 8 * 8 * 8 * 2), ("zstd_checksum_i32", 8 * 8 * 8 * 4)] {
        let frame = read(&repo_root().join("tests/data/zarr").join(fixture).join("c/0/0/0"))?;
        let content = zstd::bulk::decompress(&frame, size)?;
        out.push((format!("{fixture}.bin"), zstd_input(&content, frame)?));
    }
    Ok(out)
}
