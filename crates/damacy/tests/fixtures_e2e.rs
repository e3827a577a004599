//! Every fixture crop read through the whole pipeline equals zarr-python's `.npy`.

use damacy::{Config, Error, OutDtype, Pipeline, Sample, SampleError};

use crate::support::{fixtures, npy_native, sub_box};

/// Arrays whose layout the loader refuses (with `Unsupported`) instead of reading.
const UNSUPPORTED: &[&str] = &["shard_outer_zstd_crc_i16"];

fn read_one(
    path: &std::path::Path,
    lo: &[u64],
    hi: &[u64],
    dtype: OutDtype,
) -> damacy::Result<Vec<u8>> {
    let shape: Vec<u64> = lo.iter().zip(hi).map(|(l, h)| h - l).collect();
    let cfg = Config::builder()
        .sample_shape(&shape)
        .samples_per_batch(1)
        .dtype(dtype)
        .decode_threads(2)
        // Unsharded fixtures with tiny chunks: a whole-array crop touches many objects.
        .max_shards_per_sample(4096)
        .build()?;
    let mut p = Pipeline::new(cfg)?;
    p.push([Sample::new(path, lo.to_vec(), hi.to_vec())?])?;
    p.finish();
    let batch = p.pop()?.expect("one batch");
    assert_eq!(batch.shape()[0], 1);
    assert!(p.pop()?.is_none(), "exactly one batch");
    Ok(batch.data()?.to_vec())
}

#[test]
fn every_fixture_crop_equals_the_zarr_python_reference() {
    let mut checked = 0;
    for f in fixtures() {
        for (i, c) in f.crops.iter().enumerate() {
            let got = read_one(&f.path, &c.lo, &c.hi, OutDtype::Native);
            if UNSUPPORTED.contains(&f.name.as_str()) {
                assert!(
                    matches!(&got, Err(Error::Sample { source, .. }) if matches!(**source, SampleError::Unsupported { .. })),
                    "{}: expected Unsupported, got {got:?}",
                    f.name
                );
                continue;
            }
            let got = got.unwrap_or_else(|e| panic!("{} crop {i}: {e}", f.name));
            let (_, shape, want) = npy_native(&c.npy);
            let extent: Vec<u64> = c.lo.iter().zip(&c.hi).map(|(l, h)| h - l).collect();
            assert_eq!(shape, extent, "{} crop {i}: npy shape", f.name);
            if got != want {
                let size = f.dtype.size();
                let first = got.chunks(size).zip(want.chunks(size)).position(|(a, b)| a != b);
                panic!(
                    "{} crop {i} ({:?}..{:?}): first differing element {first:?}",
                    f.name, c.lo, c.hi
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 150, "only {checked} crops checked");
}

/// Several arrays of different data types in one batch, cast to f32: each sample equals
/// the reference values converted to f32.
#[test]
fn mixed_dtype_batch_casts_each_sample_to_f32() {
    let fx = fixtures();
    let names = [
        "zstd_u16",
        "zstd_checksum_i32",
        "blosc_zstd_shuffle_f32",
        "bytes_be_f64_zstd",
        "gzip_crc32c_u8",
        "transpose_be_i32",
        "shard_end_u16_zstd",
        "shard_nested_u16",
    ];
    let picked: Vec<_> =
        names.iter().map(|n| fx.iter().find(|f| f.name == *n).expect(n).clone()).collect();
    let (lo, hi) = (vec![3u64, 17, 2], vec![12u64, 33, 15]);
    let cfg = Config::builder()
        .sample_shape([9, 16, 13])
        .samples_per_batch(picked.len())
        .dtype(OutDtype::F32)
        .build()
        .unwrap();
    let mut p = Pipeline::new(cfg).unwrap();
    let samples: Vec<Sample> =
        picked.iter().map(|f| Sample::new(&f.path, lo.clone(), hi.clone()).unwrap()).collect();
    p.push(samples).unwrap();
    p.finish();
    let batch = p.pop().unwrap().unwrap();
    let t = batch.as_f32().unwrap().unwrap();
    let per = 9 * 16 * 13;
    for (k, f) in picked.iter().enumerate() {
        // crop0 of every fixture is the whole array.
        let (_, shape, full) = npy_native(&f.crops[0].npy);
        let want_bytes = sub_box(&full, &shape, f.dtype.size(), &lo, &hi);
        let want: Vec<f32> = want_bytes
            .chunks(f.dtype.size())
            .map(|b| match f.dtype {
                damacy::DataType::UInt16 => f32::from(u16::from_ne_bytes([b[0], b[1]])),
                damacy::DataType::Int32 => i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f32,
                damacy::DataType::Float32 => f32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                damacy::DataType::Float64 => {
                    f64::from_ne_bytes(b.try_into().expect("8 bytes")) as f32
                }
                damacy::DataType::UInt8 => f32::from(b[0]),
                other => panic!("unexpected {other}"),
            })
            .collect();
        let got = &t[k * per..(k + 1) * per];
        assert!(
            got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
            "sample {k} ({}) differs",
            f.name
        );
    }
}

/// bf16 and f16 outputs equal the documented rounding of the f32 values.
#[test]
fn half_precision_outputs_round_the_f32_values() {
    let f = fixtures().into_iter().find(|f| f.name == "dtype_float32").unwrap();
    let (lo, hi) = (vec![0u64, 0], f.shape.clone());
    let f32s = read_one(&f.path, &lo, &hi, OutDtype::F32).unwrap();
    let bf = read_one(&f.path, &lo, &hi, OutDtype::Bf16).unwrap();
    let h = read_one(&f.path, &lo, &hi, OutDtype::F16).unwrap();
    for (i, v) in f32s.chunks(4).enumerate() {
        let x = f32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
        let b = u16::from_ne_bytes([bf[2 * i], bf[2 * i + 1]]);
        let hh = u16::from_ne_bytes([h[2 * i], h[2 * i + 1]]);
        assert_eq!(b, damacy::cast::f32_to_bf16_bits(x), "bf16 element {i}");
        assert_eq!(hh, half::f16::from_f32(x).to_bits(), "f16 element {i}");
    }
}
