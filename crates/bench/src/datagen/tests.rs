//! Tests of the generator: values equal `voxel()`, files decode through the zarr crate,
//! output is independent of the thread count, caching, and the compression ratio.

use std::collections::BTreeMap;
use std::path::Path;

use zarr::{ArrayMetadata, ChunkRepr, DataType};

use super::*;

/// Elements of a native-endian buffer as f64.
fn elements(dtype: DataType, bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(dtype.size())
        .map(|e| match dtype {
            DataType::UInt8 => f64::from(e[0]),
            DataType::Int8 => f64::from(e[0] as i8),
            DataType::UInt16 => f64::from(u16::from_ne_bytes([e[0], e[1]])),
            DataType::Int16 => f64::from(i16::from_ne_bytes([e[0], e[1]])),
            DataType::Float16 => half::f16::from_ne_bytes([e[0], e[1]]).to_f64(),
            DataType::BFloat16 => half::bf16::from_ne_bytes([e[0], e[1]]).to_f64(),
            DataType::UInt32 => f64::from(u32::from_ne_bytes(e.try_into().unwrap())),
            DataType::Int32 => f64::from(i32::from_ne_bytes(e.try_into().unwrap())),
            DataType::Float32 => f64::from(f32::from_ne_bytes(e.try_into().unwrap())),
            DataType::UInt64 => u64::from_ne_bytes(e.try_into().unwrap()) as f64,
            DataType::Int64 => i64::from_ne_bytes(e.try_into().unwrap()) as f64,
            DataType::Float64 => f64::from_ne_bytes(e.try_into().unwrap()),
            DataType::Bool => f64::from(e[0]),
        })
        .collect()
}

/// C-order coordinates of element `i` of a block of `shape` at `origin`.
fn coords_of(mut i: u64, origin: &[u64], shape: &[u64]) -> Vec<u64> {
    let mut c = vec![0; shape.len()];
    for a in (0..shape.len()).rev() {
        c[a] = origin[a] + i % shape[a];
        i /= shape[a];
    }
    c
}

/// Reads every object of every array of a generated scenario back through
/// `zarr::decode_chunk` and compares each voxel with `voxel()`; returns voxels checked.
fn check_dataset(scenario: &Scenario, dir: &Path) -> u64 {
    let mut checked = 0;
    for inst in scenario.array_instances() {
        let adir = dir.join(&inst.name);
        let meta = if inst.group.zarr_format == 2 {
            assert!(!adir.join("zarr.json").exists(), "{}", inst.name);
            ArrayMetadata::parse_v2(&std::fs::read(adir.join(".zarray")).unwrap(), None).unwrap()
        } else {
            ArrayMetadata::parse(&std::fs::read(adir.join("zarr.json")).unwrap()).unwrap()
        };
        assert_eq!(meta, array_metadata(inst.group).unwrap());
        let dt = meta.data_type;
        let obj = inst.group.shard_shape.clone().unwrap_or_else(|| inst.group.chunk_shape.clone());
        let grid: Vec<u64> = meta.shape.iter().zip(&obj).map(|(e, s)| e.div_ceil(*s)).collect();
        let n: u64 = grid.iter().product();
        for j in 0..n {
            let gc = coords_of(j, &vec![0; grid.len()], &grid);
            let bytes = std::fs::read(adir.join(meta.chunk_key_encoding.chunk_key(&gc))).unwrap();
            let repr = ChunkRepr { shape: obj.clone(), data_type: dt, fill_value: meta.fill_value };
            let mut out = vec![0xA5u8; repr.num_bytes().unwrap()];
            zarr::decode_chunk(&meta.codecs, &repr, &bytes, &mut out).unwrap();
            let origin: Vec<u64> = gc.iter().zip(&obj).map(|(c, s)| c * s).collect();
            for (i, v) in elements(dt, &out).into_iter().enumerate() {
                let c = coords_of(i as u64, &origin, &obj);
                let expected = if c.iter().zip(&meta.shape).all(|(c, e)| c < e) {
                    checked += 1;
                    stored_value(dt, voxel(inst.seed, &c))
                } else {
                    0.0 // the fill value outside the array
                };
                assert!(
                    v == expected,
                    "{} at {c:?}: stored {v}, voxel() says {expected}",
                    inst.name
                );
            }
        }
    }
    checked
}

/// Hash of every file under `dir` but the marker, by relative path.
fn tree_hashes(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.file_name().unwrap() != MARKER_FILE {
                let bytes = std::fs::read(&p).unwrap();
                let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
                out.insert(p.strip_prefix(root).unwrap().to_str().unwrap().to_owned(), h);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A small scenario covering every codec, unsharded arrays, ragged edges and several
/// dtypes and ranks.
fn varied() -> Scenario {
    let g = |count,
             prefix: &str,
             shape: Vec<u64>,
             dtype,
             shard: Option<Vec<u64>>,
             chunk: Vec<u64>,
             codec| ArrayGroup {
        count,
        name_prefix: prefix.into(),
        shape,
        dtype,
        shard_shape: shard,
        chunk_shape: chunk,
        codec,
        zarr_format: 3,
    };
    let v2 = |group: ArrayGroup| ArrayGroup { zarr_format: 2, ..group };
    Scenario {
        name: "varied".into(),
        arrays: vec![
            g(
                1,
                "bz",
                vec![40, 50, 30],
                DataType::UInt16,
                Some(vec![32, 32, 32]),
                vec![16, 16, 16],
                Codec::BloscZstd { level: 3, shuffle: Shuffle::Byte },
            ),
            g(
                1,
                "bit",
                vec![20, 33, 17],
                DataType::Float32,
                None,
                vec![8, 16, 16],
                Codec::BloscZstd { level: 5, shuffle: Shuffle::Bit },
            ),
            g(1, "raw", vec![24, 24, 24], DataType::UInt8, None, vec![10, 10, 24], Codec::Raw),
            g(
                1,
                "i16",
                vec![18, 18, 18],
                DataType::Int16,
                Some(vec![18, 18, 18]),
                vec![9, 6, 18],
                Codec::Zstd { level: 1 },
            ),
            g(
                1,
                "half",
                vec![16, 16, 16],
                DataType::Float16,
                Some(vec![16, 16, 16]),
                vec![8, 8, 8],
                Codec::Zstd { level: 3 },
            ),
            g(
                1,
                "bf",
                vec![16, 16, 16],
                DataType::BFloat16,
                None,
                vec![16, 16, 16],
                Codec::Zstd { level: 3 },
            ),
            v2(g(
                1,
                "v2z",
                vec![20, 17, 9],
                DataType::UInt16,
                None,
                vec![8, 8, 8],
                Codec::Zstd { level: 3 },
            )),
            v2(g(
                1,
                "v2b",
                vec![12, 10, 16],
                DataType::Float32,
                None,
                vec![5, 10, 8],
                Codec::BloscZstd { level: 5, shuffle: Shuffle::Bit },
            )),
            v2(g(1, "v2r", vec![9, 9, 9], DataType::Int8, None, vec![4, 4, 4], Codec::Raw)),
        ],
        sample_shape: vec![8, 8, 8],
        samples_per_batch: 2,
        warmup_batches: 0,
        timed_batches: 1,
        seed: 9,
        output_dtype: damacy::OutDtype::F32,
        latency: None,
    }
}

#[test]
fn fill_block_equals_voxel_for_every_rank_and_dtype() {
    for (rank, dtype) in [
        (1, DataType::UInt16),
        (2, DataType::UInt8),
        (3, DataType::Float32),
        (4, DataType::Int16),
        (5, DataType::Float64),
        (3, DataType::BFloat16),
        (2, DataType::UInt64),
    ] {
        let field = Field::new(123 + rank as u64);
        let shape: Vec<u64> = (0..rank).map(|a| 5 + a as u64).collect();
        let origin: Vec<u64> = (0..rank).map(|a| 1000 * a as u64 + 7).collect();
        // The array ends inside the block on every axis: the rest must stay untouched.
        let array_shape: Vec<u64> = origin.iter().zip(&shape).map(|(o, s)| o + s - 1).collect();
        let n: u64 = shape.iter().product();
        let mut buf = vec![0u8; n as usize * dtype.size()];
        fill_block(&field, dtype, &array_shape, &origin, &shape, &mut buf);
        for (i, v) in elements(dtype, &buf).into_iter().enumerate() {
            let c = coords_of(i as u64, &origin, &shape);
            let inside = c.iter().zip(&array_shape).all(|(c, e)| c < e);
            let expected = if inside { stored_value(dtype, field.voxel(&c)) } else { 0.0 };
            assert!(v == expected, "rank {rank} {dtype} at {c:?}: {v} vs {expected}");
        }
    }
}

#[test]
fn voxels_look_like_structure_plus_noise() {
    let f = Field::new(1);
    let vals: Vec<f64> =
        (0..32768u64).map(|i| f.voxel(&[i / 1024 * 9, i / 32 % 32 * 9, i % 32 * 9])).collect();
    let (min, max) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    // A dim background and bright objects up to about full scale.
    assert!(min > 0.0 && min < 0.1 && max > 0.6, "{min}..{max}");
    let bright = vals.iter().filter(|&&v| v > min + 0.1).count() as f64 / vals.len() as f64;
    assert!((0.01..0.3).contains(&bright), "bright fraction {bright}");
    // Background neighbours differ by the noise alone; the noise is not constant.
    let bg: Vec<u64> = (0..2000u64).filter(|&i| (f.voxel(&[i, 7, 9]) - min).abs() < 0.05).collect();
    assert!(bg.len() > 100);
    let near: f64 =
        bg.iter().map(|&i| (f.voxel(&[i, 7, 9]) - f.voxel(&[i, 7, 10])).abs()).sum::<f64>()
            / bg.len() as f64;
    assert!(near > 0.2 * NOISE && near < 2.0 * NOISE, "near {near}");
    assert_eq!(voxel(5, &[1, 2, 3]), Field::new(5).voxel(&[1, 2, 3]));
    assert_ne!(voxel(5, &[1, 2, 3]), voxel(6, &[1, 2, 3]));
}

#[test]
fn stored_values_are_quantized_as_documented() {
    assert_eq!(stored_value(DataType::UInt16, 0.5), 2048.0);
    assert_eq!(stored_value(DataType::UInt16, 2.0), 4095.0);
    assert_eq!(stored_value(DataType::UInt16, -0.1), 0.0);
    assert_eq!(stored_value(DataType::UInt8, 1.0), 255.0);
    assert_eq!(stored_value(DataType::Int8, 1.0), 127.0);
    assert_eq!(stored_value(DataType::UInt32, 1.0), 65535.0);
    assert_eq!(stored_value(DataType::Float32, 0.1), f64::from(0.1f32));
    assert_eq!(stored_value(DataType::Float64, 0.1), 0.1);
}

#[test]
fn smoke_generates_and_decodes_to_voxel() {
    let s = Scenario::builtin("smoke").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let calls = std::cell::RefCell::new(Vec::new());
    let report = generate(&s, dir.path(), 2, &|p| calls.borrow_mut().push(p)).unwrap();
    assert_eq!(report.arrays, 2);
    assert_eq!(report.objects, 2 * 2 * 2);
    assert_eq!(report.raw_bytes, 2 * 64 * 64 * 64 * 2);
    assert!(!report.cached);
    let calls = calls.into_inner();
    assert_eq!(calls.first().unwrap().objects_done, 0);
    let last = calls.last().unwrap();
    assert_eq!((last.objects_done, last.raw_bytes_done), (8, report.raw_bytes));
    let on_disk: u64 = tree_hashes(dir.path())
        .keys()
        .filter(|k| k.contains("/c/"))
        .map(|k| std::fs::metadata(dir.path().join(k)).unwrap().len())
        .sum();
    assert_eq!(report.stored_bytes, on_disk);
    assert!((report.ratio - report.raw_bytes as f64 / report.stored_bytes as f64).abs() < 1e-12);
    assert_eq!(check_dataset(&s, dir.path()), 2 * 64 * 64 * 64);
}

#[test]
fn every_codec_dtype_and_ragged_edge_decodes_to_voxel() {
    let s = varied();
    s.validate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = generate(&s, dir.path(), 3, &|_| {}).unwrap();
    assert_eq!(report.arrays, 9);
    let expected: u64 = s.arrays.iter().map(|g| g.shape.iter().product::<u64>()).sum();
    assert_eq!(check_dataset(&s, dir.path()), expected);
    // The ragged shard of `bz0000` leaves inner chunks wholly outside the array empty.
    let meta = array_metadata(&s.arrays[0]).unwrap();
    let zarr::ArrayToBytes::Sharding(sc) = &meta.codecs.array_to_bytes else { panic!("sharded") };
    let shard = std::fs::read(dir.path().join("bz0000/c/1/0/0")).unwrap();
    let index = zarr::ShardIndex::of_shard(sc, 8, &shard).unwrap();
    // Shard (1,0,0) covers z 32..64 of 40: inner chunks at z 48..64 are outside.
    let empty: Vec<bool> =
        index.entries().iter().map(|e| *e == zarr::ChunkLocation::Empty).collect();
    assert_eq!(empty, [false, false, false, false, true, true, true, true]);
    // The v2 arrays are `.zarray` documents with numcodecs compressors and `.` keys.
    let zarray = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(name).join(".zarray")).unwrap())
            .unwrap()
    };
    assert_eq!(zarray("v2z0000")["compressor"]["id"], "zstd");
    assert_eq!(zarray("v2b0000")["compressor"]["shuffle"], 2);
    assert_eq!(zarray("v2r0000")["compressor"], serde_json::Value::Null);
    assert_eq!(zarray("v2z0000")["dtype"], "<u2");
    assert!(dir.path().join("v2z0000/2.2.1").is_file());
}

#[test]
fn output_is_independent_of_thread_count() {
    let s = varied();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ra = generate(&s, a.path(), 1, &|_| {}).unwrap();
    let rb = generate(&s, b.path(), 4, &|_| {}).unwrap();
    let (ha, hb) = (tree_hashes(a.path()), tree_hashes(b.path()));
    assert!(ha.len() > 20, "{} files", ha.len());
    assert_eq!(ha, hb);
    assert_eq!((ra.stored_bytes, ra.key), (rb.stored_bytes, rb.key));
}

#[test]
fn cache_skips_complete_data_and_redoes_interrupted_data() {
    let s = Scenario::builtin("smoke").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = generate(&s, dir.path(), 2, &|_| {}).unwrap();
    let hashes = tree_hashes(dir.path());

    // Complete: nothing is written (a removed object stays removed) and the report is kept.
    let victim = dir.path().join("vol_0001/c/1/1/0");
    std::fs::remove_file(&victim).unwrap();
    let calls = std::cell::Cell::new(0);
    let second = generate(&s, dir.path(), 2, &|_| calls.set(calls.get() + 1)).unwrap();
    assert!(second.cached);
    assert_eq!(calls.get(), 0);
    assert_eq!(GenReport { cached: false, ..second }, first);
    assert!(!victim.exists());

    // Interrupted (no marker): regenerated from scratch, stale files included.
    std::fs::remove_file(dir.path().join(MARKER_FILE)).unwrap();
    std::fs::write(dir.path().join("vol_0000/c/9"), b"stale").unwrap();
    let third = generate(&s, dir.path(), 1, &|_| {}).unwrap();
    assert!(!third.cached);
    assert_eq!(tree_hashes(dir.path()), hashes);

    // Another seed is other data: regenerated.
    let mut other = s.clone();
    other.seed += 1;
    let fourth = generate(&other, dir.path(), 2, &|_| {}).unwrap();
    assert!(!fourth.cached);
    assert_ne!(fourth.key, first.key);
    assert_ne!(tree_hashes(dir.path()), hashes);
}

/// The keys of datasets already generated stay valid while the data does not change:
/// pinned for two built-ins (they hash the JSON spelling of the arrays, dtype included).
#[test]
fn dataset_keys_are_pinned() {
    let key = |name| dataset_key(&Scenario::builtin(name).unwrap());
    assert_eq!(key("smoke"), "88fdd7efacd0e398");
    assert_eq!(key("mixed-dtype"), "62391b2f5f8257bc");
}

#[test]
fn dataset_key_ignores_what_does_not_change_the_data() {
    let s = Scenario::builtin("smoke").unwrap();
    let mut t = s.clone();
    t.samples_per_batch = 99;
    t.timed_batches = 99;
    t.sample_shape = vec![8, 8, 8];
    t.name = "renamed".into();
    assert_eq!(dataset_key(&s), dataset_key(&t));
    t.arrays[0].codec = Codec::Zstd { level: 4 };
    assert_ne!(dataset_key(&s), dataset_key(&t));
}

#[test]
fn errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = generate(&Scenario::builtin("smoke").unwrap(), &file, 1, &|_| {}).unwrap_err();
    assert!(matches!(&err, GenError::Io { path, .. } if path == &file), "{err}");
    assert!(err.to_string().contains("not-a-dir"));

    let mut bad = Scenario::builtin("smoke").unwrap();
    bad.arrays[0].count = 0;
    let err = generate(&bad, dir.path(), 1, &|_| {}).unwrap_err();
    assert!(matches!(err, GenError::Scenario(ScenarioError::Invalid { .. })), "{err}");
}

#[test]
fn quickstart_chunks_compress_two_to_three_times_at_zstd_3() {
    let s = Scenario::builtin("quickstart").unwrap();
    let g = &s.arrays[0];
    assert_eq!((g.dtype, g.codec), (DataType::UInt16, Codec::Zstd { level: 3 }));
    let field = Field::new(s.array_seed(0));
    let chunk = &g.chunk_shape;
    let repr = ChunkRepr {
        shape: chunk.clone(),
        data_type: DataType::UInt16,
        fill_value: zarr::FillValue::zero(DataType::UInt16),
    };
    let (mut raw, mut stored) = (0usize, 0usize);
    // Eight chunks spread over the array.
    for i in 0..8u64 {
        let origin = [(i * 3 % 8) * 32, (i * 5 % 4) * 64, (i % 4) * 64];
        let mut buf = vec![0u8; repr.num_bytes().unwrap()];
        fill_block(&field, DataType::UInt16, &g.shape, &origin, chunk, &mut buf);
        let enc = zarr::encode_chunk(&chunk_codecs(g), &repr, &buf).unwrap();
        raw += buf.len();
        stored += enc.len();
    }
    let ratio = raw as f64 / stored as f64;
    println!("quickstart u16 32x64x64 chunks at zstd 3: ratio {ratio:.3}");
    assert!((1.8..=3.5).contains(&ratio), "ratio {ratio}");
}

/// FNV-1a 64 of `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The voxels of the `smoke` dataset, pinned: its array seeds and a digest of every
/// array's values (little-endian u16, C order), so a change to the generator's arithmetic
/// or to the PRNG under it shows here (the cache key would not notice: it hashes the
/// scenario, not the data).
#[test]
fn smoke_voxels_are_pinned() {
    let s = Scenario::builtin("smoke").unwrap();
    let pinned = [
        ("vol_0000", 0xf1f1_cd85_4bbc_b7e8u64, 0x4f7e_013c_1afe_71abu64),
        ("vol_0001", 0x04d1_a60c_0cca_9b0a, 0xabd0_0503_80f4_35d7),
    ];
    let got: Vec<(String, u64, u64)> = s
        .array_instances()
        .into_iter()
        .map(|inst| {
            let mut buf = vec![0u8; 64 * 64 * 64 * 2];
            let field = Field::new(inst.seed);
            fill_block(&field, DataType::UInt16, &[64; 3], &[0; 3], &[64; 3], &mut buf);
            let le: Vec<u8> = buf
                .chunks_exact(2)
                .flat_map(|e| u16::from_ne_bytes([e[0], e[1]]).to_le_bytes())
                .collect();
            (inst.name, inst.seed, fnv1a(&le))
        })
        .collect();
    let pinned: Vec<(String, u64, u64)> =
        pinned.iter().map(|&(n, seed, digest)| (n.to_owned(), seed, digest)).collect();
    assert_eq!(got, pinned);
    assert_eq!(voxel(42, &[1, 2, 3]).to_bits(), 4_589_618_142_366_233_393);
}
