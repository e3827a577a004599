//! OME-NGFF image groups in the prefetcher and `image::open_image`: a sample naming an
//! image group resolves to its level's array (cached per `(uri, level)`), a plain array
//! costs exactly the requests it always did, and every failure is a typed error naming
//! the file. The images are ome-zarr-py's (`tests/data/ngff`); 0.4 tests here need no
//! zarr v2 array reads (those that do are in `ngff_v04.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prefetch_cache::image::{self, ImageError};
use prefetch_cache::{Error, PrefetchConfig, Prefetcher, ReadySample, SampleRequest};
use store::{ReadRequest, Span, SpanRead, Store, StoreStats, Ticket, TrySubmitError};
use zarr::ngff::{NgffError, NgffVersion};

use crate::fixtures::*;

pub fn ngff_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/ngff")
}

/// A store that records every key it is asked about, in order.
#[derive(Debug)]
pub struct Recording {
    inner: Arc<dyn Store>,
    keys: Mutex<Vec<String>>,
}

impl Recording {
    pub fn over(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self { inner, keys: Mutex::new(Vec::new()) })
    }

    fn log(&self, key: &str) {
        self.keys.lock().unwrap().push(key.to_owned());
    }

    pub fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }
}

impl Store for Recording {
    fn stat(&self, key: &str) -> store::Result<Option<u64>> {
        self.log(key);
        self.inner.stat(key)
    }
    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> store::Result<usize> {
        self.log(key);
        self.inner.read(key, offset, buf)
    }
    fn read_all(&self, key: &str) -> store::Result<Vec<u8>> {
        self.log(key);
        self.inner.read_all(key)
    }
    fn read_span(&self, key: &str, span: Span) -> store::Result<Option<SpanRead>> {
        self.log(key);
        self.inner.read_span(key, span)
    }
    fn submit(&self, reads: Vec<ReadRequest>) -> store::Result<Ticket> {
        self.inner.submit(reads)
    }
    fn try_submit(&self, reads: Vec<ReadRequest>) -> Result<Ticket, TrySubmitError> {
        self.inner.try_submit(reads)
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

fn config() -> PrefetchConfig {
    let mut c = PrefetchConfig::for_batch(2);
    c.lookahead = 16;
    c.max_shards_per_sample = 64;
    c.fetch_threads = 2;
    c.size_caches();
    c
}

fn req(uri: &str, lo: &[u64], hi: &[u64], level: Option<usize>) -> SampleRequest {
    SampleRequest { uri: uri.into(), lo: lo.to_vec(), hi: hi.to_vec(), level }
}

fn resolve_all(store: Arc<dyn Store>, reqs: Vec<SampleRequest>) -> (Vec<ReadySample>, Prefetcher) {
    let p = Prefetcher::new(store, config()).unwrap();
    let n = reqs.len();
    for r in reqs {
        p.push(r).unwrap();
    }
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(p.wait_ready(n - out.len()));
    }
    (out, p)
}

fn image_error(r: &ReadySample) -> &ImageError {
    match &r.outcome {
        Err(Error::Image(e)) => e,
        other => panic!("sample {}: expected an image error, got {other:?}", r.seq),
    }
}

/// A plain array is read as it always was: its `zarr.json`, then its shards; nothing is
/// asked about group metadata (`.zattrs`, `.zgroup`, `labels`).
#[test]
fn a_plain_array_costs_no_extra_request() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_sharded_meta();
    write_meta(dir.path(), "raw", &raw);
    write_file(dir.path(), "raw/c/0/0", &shard_bytes(&raw, &[Some(vec![5; 4]), None, None, None]));
    let rec = Recording::over(fs_store(dir.path()));
    let (out, _p) = resolve_all(rec.clone(), vec![req("raw", &[0, 0], &[4, 4], None)]);
    assert!(out[0].outcome.is_ok(), "{:?}", out[0].outcome);
    assert_eq!(rec.keys(), ["raw/zarr.json", "raw/c/0/0"]);
}

/// A sample naming an image group reads the level's array (level 0 by default), with the
/// box in that level's voxels; each `(uri, level)` is fetched once.
#[test]
fn an_image_group_resolves_to_its_level_once_per_uri_and_level() {
    let rec = Recording::over(fs_store(&ngff_dir()));
    let img = "v05/image3d.zarr";
    let reqs = vec![
        req(img, &[0, 0, 0], &[16, 32, 28], None),
        req(img, &[0, 0, 0], &[16, 8, 7], Some(2)),
        req(img, &[8, 4, 4], &[16, 8, 8], Some(1)),
        req(img, &[0, 0, 0], &[1, 1, 1], Some(2)),
        req(img, &[1, 1, 1], &[2, 2, 2], None),
    ];
    let (out, p) = resolve_all(rec.clone(), reqs);
    let arrays: Vec<String> =
        out.iter().map(|r| r.outcome.as_ref().unwrap().array.uri.to_string()).collect();
    assert_eq!(
        arrays,
        [
            format!("{img}/s0"),
            format!("{img}/s2"),
            format!("{img}/s1"),
            format!("{img}/s2"),
            format!("{img}/s0")
        ]
    );
    let shapes: Vec<Vec<u64>> =
        out.iter().map(|r| r.outcome.as_ref().unwrap().array.meta.shape.clone()).collect();
    assert_eq!(shapes[0], [16, 32, 28]);
    assert_eq!(shapes[1], [16, 8, 7]);
    assert_eq!(shapes[2], [16, 16, 14]);
    // Three (uri, level) keys: None, Some(2), Some(1); the repeats hit the cache.
    assert_eq!(p.stats().metadata.misses, 3);
    let metadata_reads = rec.keys().iter().filter(|k| k.ends_with("zarr.json")).count();
    // Per key: the group's zarr.json as an array, again as a group, then the level's.
    assert_eq!(metadata_reads, 3 * 3);
}

#[test]
fn image_failures_are_typed_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A 0.5 image whose level 1 path holds nothing, and a plain v3 group.
    let ome = |datasets: &str| {
        format!(
            r#"{{"zarr_format": 3, "node_type": "group", "attributes": {{"ome": {{"version": "0.5",
            "multiscales": [{{"axes": [{{"name": "y", "type": "space"}}, {{"name": "x", "type": "space"}}],
            "datasets": {datasets}}}]}}}}}}"#
        )
    };
    let scale = r#"[{"type": "scale", "scale": [1, 1]}]"#;
    let two = format!(
        r#"[{{"path": "raw", "coordinateTransformations": {scale}}}, {{"path": "gone", "coordinateTransformations": {scale}}}]"#
    );
    write_file(root, "img/zarr.json", ome(&two).as_bytes());
    write_meta(root, "img/raw", &raw_sharded_meta());
    write_file(root, "bad/zarr.json", ome("[]").as_bytes());
    write_file(root, "group/zarr.json", br#"{"zarr_format": 3, "node_type": "group"}"#);
    write_file(root, "v2group/.zgroup", br#"{"zarr_format": 2}"#);
    write_meta(root, "raw", &raw_sharded_meta());
    let reqs = vec![
        req("img", &[0, 0], &[1, 1], Some(5)),
        req("img", &[0, 0], &[1, 1], Some(1)),
        req("bad", &[0, 0], &[1, 1], None),
        req("group", &[0, 0], &[1, 1], None),
        req("v2group", &[0, 0], &[1, 1], None),
        req("raw", &[0, 0], &[1, 1], Some(0)),
        req("nothing", &[0, 0], &[1, 1], None),
        req("img", &[0, 0], &[2, 2], None),
    ];
    let (out, _p) = resolve_all(fs_store(root), reqs);
    assert_eq!(
        *image_error(&out[0]),
        ImageError::LevelOutOfRange { key: "img/zarr.json".into(), level: 5, levels: 2 }
    );
    assert!(image_error(&out[0]).to_string().contains("the image has 2 levels (0..=1)"));
    assert_eq!(
        *image_error(&out[1]),
        ImageError::MissingLevel {
            key: "img/zarr.json".into(),
            level: 1,
            path: "gone".into(),
            uri: "img/gone".into()
        }
    );
    assert!(matches!(
        image_error(&out[2]),
        ImageError::Metadata { key, source: NgffError::Empty { .. } } if key == "bad/zarr.json"
    ));
    assert!(matches!(
        image_error(&out[3]),
        ImageError::NotAnImage { key, source: NgffError::NotAnImage { .. } } if key == "group/zarr.json"
    ));
    assert!(
        matches!(image_error(&out[4]), ImageError::NotAnImage { key, .. } if key == "v2group/.zgroup")
    );
    assert_eq!(*image_error(&out[5]), ImageError::LevelOnArray { uri: "raw".into(), level: 0 });
    assert!(
        matches!(&out[6].outcome, Err(Error::MetadataNotFound { key, .. }) if key == "nothing/zarr.json"),
        "nothing at all is still 'not found': {:?}",
        out[6].outcome
    );
    let ok = out[7].outcome.as_ref().unwrap();
    assert_eq!(&*ok.array.uri, "img/raw");
    assert_eq!(ok.shards.len(), 1);
}

/// 0.4 metadata, and the 0.4 failures that read no level array (which are zarr v2).
#[test]
fn version_0_4_groups_are_read_from_zattrs() {
    let store = fs_store(&ngff_dir());
    let group = image::read_group(&*store, &"v04/image5d.zarr".into()).unwrap();
    assert_eq!(group.key, "v04/image5d.zarr/.zattrs");
    assert_eq!(group.meta.version, NgffVersion::V0_4);
    let ms = group.meta.image().unwrap();
    assert_eq!(ms.datasets.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(), ["s0", "s1", "s2"]);
    assert_eq!(ms.axes.iter().map(|a| a.name.as_str()).collect::<String>(), "tczyx");

    let dir = tempfile::tempdir().unwrap();
    let zattrs = std::fs::read(ngff_dir().join("v04/image3d.zarr/.zattrs")).unwrap();
    let text = String::from_utf8(zattrs).unwrap().replace("\"s2\"", "\"missing\"");
    write_file(dir.path(), "img/.zattrs", text.as_bytes());
    let (out, _p) = resolve_all(
        fs_store(dir.path()),
        vec![req("img", &[0; 3], &[1; 3], Some(3)), req("img", &[0; 3], &[1; 3], Some(2))],
    );
    assert_eq!(
        *image_error(&out[0]),
        ImageError::LevelOutOfRange { key: "img/.zattrs".into(), level: 3, levels: 3 }
    );
    assert!(matches!(
        image_error(&out[1]),
        ImageError::MissingLevel { key, path, .. } if key == "img/.zattrs" && path == "missing"
    ));
}

/// `open_image` lists every level of an ome-zarr-py 0.5 image with its array's metadata,
/// and the labels its `labels` group lists.
#[test]
fn open_image_lists_levels_and_labels() {
    let store = fs_store(&ngff_dir());
    let info = image::open_image(&*store, &"v05/image5d.zarr".into()).unwrap();
    assert_eq!(info.group.meta.version, NgffVersion::V0_5);
    let shapes: Vec<&[u64]> = info.levels.iter().map(|l| &l.meta.shape[..]).collect();
    assert_eq!(shapes, [&[2, 2, 4, 16, 12][..], &[2, 2, 4, 8, 6], &[2, 2, 2, 4, 3]]);
    assert_eq!(info.labels, ["cells"]);
    let label = image::open_image(&*store, &"v05/image5d.zarr/labels/cells".into()).unwrap();
    assert_eq!(label.levels[0].meta.shape, [2, 1, 4, 16, 12]);
    assert!(label.labels.is_empty(), "a label image has no labels of its own");
    let on_array = image::open_image(&*store, &"v05/image5d.zarr/s0".into()).unwrap_err();
    assert!(matches!(
        on_array,
        Error::Image(ImageError::NotAnImage { source: NgffError::NotAGroup { .. }, .. })
    ));
    let nothing = image::open_image(&*store, &"v05/none.zarr".into()).unwrap_err();
    assert_eq!(nothing, Error::Image(ImageError::NotFound { uri: "v05/none.zarr".into() }));
}
