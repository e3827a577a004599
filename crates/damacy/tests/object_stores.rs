//! The whole pipeline over object stores: every fixture crop (zarr v3 and v2) read through
//! `s3://` (a real S3 server on 127.0.0.1, `loopback::S3Server`) and `http://`
//! (`loopback::HttpServer`) equals zarr-python's `.npy` exactly as through files; a
//! missing array is an error naming its URL; a failing object fails its batch only.

use damacy::{Config, ObjectStoreConfig, OnError, OutDtype, Pipeline, Sample};
use loopback::{BUCKET, Fault, HttpServer, S3Server};

use crate::support::{data_dir, fixtures, npy_native, sub_box};

/// Arrays whose layout the loader refuses; `fixtures_e2e` checks the refusal.
const UNSUPPORTED: &[&str] = &["shard_outer_zstd_crc_i16"];

pub fn s3_options(server: &S3Server) -> ObjectStoreConfig {
    let mut o = ObjectStoreConfig { max_retries: 2, ..Default::default() };
    let s3 = o.options.entry("s3".into()).or_default();
    for (k, v) in server.client_options() {
        s3.insert(k.into(), v);
    }
    o
}

fn read_one(uri: &str, lo: &[u64], hi: &[u64], os: &ObjectStoreConfig) -> damacy::Result<Vec<u8>> {
    let shape: Vec<u64> = lo.iter().zip(hi).map(|(l, h)| h - l).collect();
    let cfg = Config::builder()
        .sample_shape(&shape)
        .samples_per_batch(1)
        .dtype(OutDtype::Native)
        .decode_threads(1)
        .io_threads(1)
        .max_shards_per_sample(4096)
        .object_store(os.clone())
        .build()?;
    let mut p = Pipeline::new(cfg)?;
    p.push([Sample::new(uri, lo.to_vec(), hi.to_vec())?])?;
    p.finish();
    let batch = p.pop()?.expect("one batch");
    assert!(p.pop()?.is_none(), "exactly one batch");
    Ok(batch.data()?.to_vec())
}

/// Every crop of every supported fixture through `base/zarr/<name>`; returns the crops
/// checked, and how many of them were of zarr v2 arrays.
fn every_crop_through(base: &str, os: &ObjectStoreConfig) -> (usize, usize) {
    let data = data_dir();
    let (mut checked, mut v2) = (0, 0);
    for f in fixtures() {
        if UNSUPPORTED.contains(&f.name.as_str()) {
            continue;
        }
        let rel = f.path.strip_prefix(&data).expect("fixture under tests/data");
        let uri = format!("{base}/{}", rel.display());
        for (i, c) in f.crops.iter().enumerate() {
            let got =
                read_one(&uri, &c.lo, &c.hi, os).unwrap_or_else(|e| panic!("{uri} crop {i}: {e}"));
            let (_, _, want) = npy_native(&c.npy);
            assert!(
                got == want,
                "{uri} crop {i} ({:?}..{:?}) differs from the reference",
                c.lo,
                c.hi
            );
            checked += 1;
            v2 += usize::from(f.zarr_format == 2);
        }
    }
    (checked, v2)
}

#[test]
fn every_fixture_crop_through_s3_equals_the_reference() {
    let server = S3Server::serve(&data_dir()).unwrap();
    let (checked, v2) = every_crop_through(&format!("s3://{BUCKET}"), &s3_options(&server));
    assert!(checked >= 350 && v2 >= 180, "only {checked} crops checked, {v2} of zarr v2");
    assert!(server.requests() as usize > checked, "the crops were served by the S3 server");
}

#[test]
fn every_fixture_crop_through_http_equals_the_reference() {
    let server = HttpServer::serve(&data_dir()).unwrap();
    let os = ObjectStoreConfig { max_retries: 2, ..Default::default() };
    let (checked, v2) = every_crop_through(&server.endpoint(), &os);
    assert!(checked >= 350 && v2 >= 180, "only {checked} crops checked, {v2} of zarr v2");
}

/// A zarr v2 array through both object stores: a chunk never written reads as the fill
/// value (here `null`, read as zero as zarr-python reads it), and a v2 array that cannot
/// be read is an error naming its `.zarray` URL.
#[test]
fn zarr_v2_missing_chunks_read_as_fill_and_errors_name_the_zarray_url() {
    let s3 = S3Server::serve(&data_dir()).unwrap();
    let http = HttpServer::serve(&data_dir()).unwrap();
    let plain = ObjectStoreConfig { max_retries: 2, ..Default::default() };
    let stores = [(format!("s3://{BUCKET}"), s3_options(&s3)), (http.endpoint(), plain)];
    let f = fixtures().into_iter().find(|f| f.name == "v2_fill_null_i16").unwrap();
    assert!(f.path.join("0.0").is_file() && !f.path.join("1.0").exists());
    let (_, shape, full) = npy_native(&f.crops[0].npy);
    // Rows 4.. were never written: chunks (1, *) and (2, *) are absent.
    let (lo, hi) = (vec![3u64, 2], vec![10u64, 12]);
    let want = sub_box(&full, &shape, 2, &lo, &hi);
    assert!(want[2 * 10..].iter().all(|&b| b == 0), "the fill region is zero");
    for (base, os) in &stores {
        let uri = format!("{base}/zarr/v2_fill_null_i16");
        assert_eq!(read_one(&uri, &lo, &hi, os).unwrap(), want, "{uri}");
        let bad = format!("{base}/zarr/v2_filter_delta");
        let e = read_one(&bad, &[0, 0], &[2, 2], os).unwrap_err();
        let text = format!("{e}");
        assert!(text.contains(&format!("{bad}/.zarray")) && text.contains("delta"), "{text}");
    }
}

#[test]
fn a_missing_array_is_an_error_naming_its_url() {
    let server = S3Server::serve(&data_dir()).unwrap();
    let uri = format!("s3://{BUCKET}/zarr/no_such_array");
    let e = read_one(&uri, &[0], &[4], &s3_options(&server)).unwrap_err();
    let text = format!("{e}");
    assert!(text.contains(&format!("{uri}/zarr.json")), "{text}");
    assert!(text.contains("not found"), "{text}");
}

/// A missing shard of a present array reads as the fill value: `shard_missing_u16` is a
/// 3×3 grid of 16×16 shards of which only row 0 was written; its reference holds the
/// fill value in the rest.
#[test]
fn a_missing_shard_through_s3_reads_as_fill() {
    let server = S3Server::serve(&data_dir()).unwrap();
    let f = fixtures().into_iter().find(|f| f.name == "shard_missing_u16").unwrap();
    let rows = std::fs::read_dir(f.path.join("c")).unwrap().count();
    let written = std::fs::read_dir(f.path.join("c/0")).unwrap().count();
    assert_eq!((rows, written), (1, 3), "6 of the 9 shards are missing");
    let (_, shape, full) = npy_native(&f.crops[0].npy);
    let (lo, hi) = (vec![0u64; shape.len()], shape.clone());
    let uri = format!("s3://{BUCKET}/zarr/shard_missing_u16");
    let got = read_one(&uri, &lo, &hi, &s3_options(&server)).unwrap();
    assert_eq!(got, sub_box(&full, &shape, 2, &lo, &hi));
}

/// A chunk that fails for good (connection resets past the retry budget) fails its own
/// batch with an error naming the URL; the batches before and after are delivered.
#[test]
fn a_failing_object_fails_its_batch_and_later_batches_arrive() {
    let server = HttpServer::serve(&data_dir()).unwrap();
    let good = fixtures().into_iter().find(|f| f.name == "zstd_u16").unwrap();
    let bad = fixtures().into_iter().find(|f| f.name == "shard_end_u16_zstd").unwrap();
    let rel = |p: &std::path::Path| p.strip_prefix(data_dir()).unwrap().display().to_string();
    let (good_uri, bad_uri) = (
        format!("{}/{}", server.endpoint(), rel(&good.path)),
        format!("{}/{}", server.endpoint(), rel(&bad.path)),
    );
    let os = ObjectStoreConfig { max_retries: 1, ..Default::default() };
    let cfg = Config::builder()
        .sample_shape([4, 4, 4])
        .samples_per_batch(1)
        .dtype(OutDtype::Native)
        .decode_threads(1)
        .on_error(OnError::Fail)
        .object_store(os)
        .build()
        .unwrap();
    // The shard's index reads fine; its chunk data (ranged GETs of the shard after the
    // index) fails: faults armed once the index is cached.
    let mut p = Pipeline::new(cfg).unwrap();
    let boxes = (vec![1u64, 1, 1], vec![5u64, 5, 5]);
    p.push([Sample::new(&good_uri, boxes.0.clone(), boxes.1.clone()).unwrap()]).unwrap();
    let first = p.pop().unwrap().expect("batch 1");
    let (_, shape, full) = npy_native(&good.crops[0].npy);
    assert_eq!(first.data().unwrap(), sub_box(&full, &shape, 2, &boxes.0, &boxes.1));
    drop(first);
    server.inject(Fault::Reset, 1000, &format!("{}/c/", rel(&bad.path)));
    p.push([Sample::new(&bad_uri, boxes.0.clone(), boxes.1.clone()).unwrap()]).unwrap();
    let e = p.pop().unwrap_err();
    assert!(format!("{e}").contains(&rel(&bad.path)), "{e}");
    p.push([Sample::new(&good_uri, boxes.0.clone(), boxes.1.clone()).unwrap()]).unwrap();
    p.finish();
    let third = p.pop().unwrap().expect("batch 3 after the failure");
    assert_eq!(third.data().unwrap(), sub_box(&full, &shape, 2, &boxes.0, &boxes.1));
}
