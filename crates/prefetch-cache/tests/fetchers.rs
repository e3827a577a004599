//! The three fetchers against files: every outcome the issue names is a distinct value.

use std::sync::Arc;

use prefetch_cache::fetch::{
    fetch_layout, fetch_metadata, fetch_shard, layout_probe, needs_layout, read_metadata,
};
use prefetch_cache::{Error, ShardState};
use zarr::ChunkLocation;
use zarr::blosc::Compressor;

use crate::fixtures::*;

fn setup(
    meta: &zarr::ArrayMetadata,
) -> (tempfile::TempDir, Arc<dyn store::Store>, prefetch_cache::ArrayInfo) {
    let dir = tempfile::tempdir().unwrap();
    write_meta(dir.path(), "a", meta);
    let store = fs_store(dir.path());
    let info = fetch_metadata(&*store, &Arc::from("a")).unwrap();
    (dir, store, info)
}

#[test]
fn metadata_fetch_parses_and_derives_geometry() {
    let (_d, _s, info) = setup(&raw_sharded_meta());
    assert_eq!(*info.meta, raw_sharded_meta());
    assert_eq!(info.geometry.shard_shape, vec![4, 4]);
    assert_eq!(info.geometry.chunk_shape, vec![2, 2]);
    assert!(info.geometry.sharded);
}

#[test]
fn missing_and_invalid_metadata_are_distinct_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = fs_store(dir.path());
    assert!(matches!(
        fetch_metadata(&*store, &Arc::from("nope")),
        Err(Error::MetadataNotFound { key, .. }) if key == "nope/zarr.json"
    ));
    write_file(dir.path(), "bad/zarr.json", b"{not json");
    assert!(matches!(
        fetch_metadata(&*store, &Arc::from("bad")),
        Err(Error::Metadata { source: zarr::Error::Json { .. }, .. })
    ));
}

/// A zarr v2 array is read from `.zarray` and `.zattrs`; its chunks are whole objects
/// under v2 keys, and a missing one is `Absent` (the fill value).
#[test]
fn a_zarr_v2_array_is_read_from_zarray_and_zattrs() {
    let dir = tempfile::tempdir().unwrap();
    let store = fs_store(dir.path());
    let mut meta = unsharded_meta().into_v2().unwrap();
    meta.attributes.insert("units".into(), "nm".into());
    write_meta(dir.path(), "v2", &meta);
    assert!(dir.path().join("v2/.zattrs").is_file() && !dir.path().join("v2/zarr.json").exists());
    let read = read_metadata(&*store, "v2").unwrap();
    assert_eq!(read.key, "v2/.zarray");
    assert_eq!(read.meta, meta);
    assert_eq!(read.meta.zarr_format, zarr::ZarrFormat::V2);
    assert_eq!(read.meta.attributes["units"], "nm");
    let info = fetch_metadata(&*store, &Arc::from("v2")).unwrap();
    assert_eq!(*info.meta, meta);
    assert!(!info.geometry.sharded);
    assert_eq!(info.meta.chunk_key_encoding.chunk_key(&[1, 0]), "1.0");
    write_file(dir.path(), "v2/1.0", &[3; 16]);
    assert_eq!(fetch_shard(&*store, &info, "v2/1.0").unwrap(), ShardState::Whole { len: 16 });
    assert_eq!(fetch_shard(&*store, &info, "v2/0.1").unwrap(), ShardState::Absent);
    // Where both exist, zarr.json (v3) is the array's metadata.
    write_meta(dir.path(), "v2", &unsharded_meta());
    assert_eq!(read_metadata(&*store, "v2").unwrap().key, "v2/zarr.json");
}

/// A v2 array's errors name the document that is wrong: `.zarray`, or `.zattrs`.
#[test]
fn v2_metadata_errors_name_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = fs_store(dir.path());
    write_file(dir.path(), "v2/.zarray", br#"{"zarr_format": 2}"#);
    assert!(matches!(
        fetch_metadata(&*store, &Arc::from("v2")),
        Err(Error::Metadata { key, source: zarr::Error::MissingField { field: "shape" }, .. })
            if key == "v2/.zarray"
    ));
    let meta = unsharded_meta().into_v2().unwrap();
    write_meta(dir.path(), "attrs", &meta);
    write_file(dir.path(), "attrs/.zattrs", b"[1, 2]");
    assert!(matches!(
        fetch_metadata(&*store, &Arc::from("attrs")),
        Err(Error::Metadata { key, source: zarr::Error::InvalidField { field: ".zattrs", .. }, .. })
            if key == "attrs/.zattrs"
    ));
    let text = meta.to_zarray().unwrap();
    let filtered = text.replace(r#""filters": null"#, r#""filters": [{"id": "delta"}]"#);
    assert_ne!(filtered, text);
    write_file(dir.path(), "filtered/.zarray", filtered.as_bytes());
    let e = fetch_metadata(&*store, &Arc::from("filtered")).unwrap_err();
    assert!(
        matches!(&e, Error::Metadata { key, source: zarr::Error::UnsupportedFilter { id }, .. }
            if key == "filtered/.zarray" && id == "delta"),
        "{e:?}"
    );
    assert!(e.to_string().contains("filtered/.zarray") && e.to_string().contains("delta"), "{e}");
}

#[test]
fn codecs_around_sharding_are_refused_before_any_shard_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = fs_store(dir.path());
    let mut meta = raw_sharded_meta();
    meta.codecs.bytes_to_bytes.push(zarr::BytesToBytes::Crc32c);
    write_meta(dir.path(), "outer", &meta);
    assert!(matches!(
        fetch_metadata(&*store, &Arc::from("outer")),
        Err(Error::UnsupportedLayout { .. })
    ));
}

#[test]
fn shard_present_absent_and_unsharded_whole() {
    let meta = raw_sharded_meta();
    let (dir, store, info) = setup(&meta);
    let chunks = vec![Some(vec![7; 4]), None, Some(vec![9; 4]), None];
    write_file(dir.path(), "a/c/0/0", &shard_bytes(&meta, &chunks));
    let ShardState::Present(index) = fetch_shard(&*store, &info, "a/c/0/0").unwrap() else {
        panic!("expected a present shard")
    };
    assert_eq!(
        index.entries(),
        &[
            ChunkLocation::Range { offset: 0, nbytes: 4 },
            ChunkLocation::Empty,
            ChunkLocation::Range { offset: 4, nbytes: 4 },
            ChunkLocation::Empty
        ]
    );
    // An absent shard is not an error: it means "fill".
    assert_eq!(fetch_shard(&*store, &info, "a/c/1/1").unwrap(), ShardState::Absent);

    let flat = unsharded_meta();
    let (dir2, store2, info2) = setup(&flat);
    write_file(dir2.path(), "a/c/0/1", &[0; 16]);
    assert_eq!(fetch_shard(&*store2, &info2, "a/c/0/1").unwrap(), ShardState::Whole { len: 16 });
    assert_eq!(fetch_shard(&*store2, &info2, "a/c/1/1").unwrap(), ShardState::Absent);
}

#[test]
fn empty_short_corrupt_and_out_of_range_shards_are_distinct_errors() {
    let meta = raw_sharded_meta();
    let (dir, store, info) = setup(&meta);
    write_file(dir.path(), "a/c/0/0", b"");
    assert_eq!(
        fetch_shard(&*store, &info, "a/c/0/0"),
        Err(Error::EmptyShard { key: "a/c/0/0".into() })
    );

    write_file(dir.path(), "a/c/0/1", &[1, 2, 3]);
    assert_eq!(
        fetch_shard(&*store, &info, "a/c/0/1"),
        Err(Error::ShardTooShort { key: "a/c/0/1".into(), shard_len: 3, index_len: 68 })
    );

    let mut bytes = shard_bytes(&meta, &[Some(vec![1; 4]), None, None, None]);
    bytes[6] ^= 0xff; // inside the index table, so the checksum no longer matches
    write_file(dir.path(), "a/c/1/0", &bytes);
    assert!(matches!(
        fetch_shard(&*store, &info, "a/c/1/0"),
        Err(Error::IndexChecksum { key, stored, computed }) if key == "a/c/1/0" && stored != computed
    ));

    // A valid checksum over an entry that points past the data.
    let entries = [
        ChunkLocation::Range { offset: 0, nbytes: 100 },
        ChunkLocation::Empty,
        ChunkLocation::Empty,
        ChunkLocation::Empty,
    ];
    let mut bytes = vec![0u8; 4];
    bytes.extend(zarr::ShardIndex::encode(sharding(&meta), &entries).unwrap());
    write_file(dir.path(), "a/c/1/1", &bytes);
    assert_eq!(
        fetch_shard(&*store, &info, "a/c/1/1"),
        Err(Error::IndexEntryOutOfRange {
            key: "a/c/1/1".into(),
            entry: 0,
            offset: 0,
            nbytes: 100,
            shard_len: 72
        })
    );
}

#[test]
fn layout_probe_finds_the_first_stored_non_empty_chunk() {
    let meta = raw_sharded_meta();
    let present = ShardState::Present(Arc::new(zarr::ShardIndex::from_entries(vec![
        ChunkLocation::Empty,
        ChunkLocation::Range { offset: 10, nbytes: 0 },
        ChunkLocation::Range { offset: 10, nbytes: 5 },
    ])));
    let shards =
        [("k0", &ShardState::Absent), ("k1", &present), ("k2", &ShardState::Whole { len: 3 })];
    assert_eq!(layout_probe(shards), Some(("k1".to_owned(), 10, 5)));
    assert_eq!(
        layout_probe([("k0", &ShardState::Absent), ("k1", &ShardState::Whole { len: 0 })]),
        None
    );
    assert!(!needs_layout(&meta));
    assert!(needs_layout(&blosc_sharded_meta()));
}

#[test]
fn layout_fetch_reads_the_frame_and_refuses_undecodable_compressors() {
    let meta = blosc_sharded_meta();
    let (dir, store, info) = setup(&meta);
    let frame = blosc_chunk(Compressor::Zstd);
    let n = frame.len() as u64;
    write_file(dir.path(), "a/c/0/0", &shard_bytes(&meta, &[None, Some(frame), None, None]));
    let all = [Compressor::Zstd, Compressor::Lz4];
    let layout = fetch_layout(&*store, &info.uri, "a/c/0/0", 0, n, &all).unwrap();
    assert_eq!((layout.typesize, layout.nbytes, layout.compressor), (1, 4, Compressor::Zstd));
    assert_eq!(
        fetch_layout(&*store, &info.uri, "a/c/0/0", 0, n, &[Compressor::Lz4]),
        Err(Error::UnsupportedBloscCompressor {
            uri: info.uri.clone(),
            key: "a/c/0/0".into(),
            compressor: "zstd"
        })
    );
    // Bytes that are not a blosc frame.
    write_file(dir.path(), "a/c/0/1", &[0xff; 20]);
    assert!(matches!(
        fetch_layout(&*store, &info.uri, "a/c/0/1", 0, 20, &all),
        Err(Error::Layout { .. })
    ));
}

/// Through an object store a shard index costs one request (a suffix, or for an index at
/// the start a prefix, range GET that also tells the shard's length), not a HEAD and a
/// GET; the index equals the one read from the file, and an absent shard is `Absent`.
#[cfg(not(damacy_loom))]
#[test]
fn a_shard_index_through_s3_is_one_request_and_equals_the_file() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/zarr");
    let server = loopback::S3Server::serve(&data).unwrap();
    let mut cfg = store::RemoteConfig::default();
    let opts = cfg.options.entry("s3".into()).or_default();
    for (k, v) in server.client_options() {
        opts.insert(k.into(), v);
    }
    let s3: Arc<dyn store::Store> = Arc::new(store::RemoteStore::new("s3://damacy", &cfg).unwrap());
    let files = fs_store(&data);
    for (array, shard) in
        [("shard_end_u16_zstd", "c/0/0/0"), ("shard_start_index_nocrc_i32", "c/0/0/0")]
    {
        let uri = format!("s3://damacy/{array}");
        let info = fetch_metadata(&*s3, &Arc::from(uri.as_str())).unwrap();
        let key = format!("{uri}/{shard}");
        let before = server.requests();
        let got = fetch_shard(&*s3, &info, &key).unwrap();
        assert_eq!(server.requests() - before, 1, "{array}: one request for the index");
        let file_info = fetch_metadata(&*files, &Arc::from(array)).unwrap();
        let want = fetch_shard(&*files, &file_info, &format!("{array}/{shard}")).unwrap();
        assert!(matches!(got, ShardState::Present(_)), "{array}: {got:?}");
        assert_eq!(got, want, "{array}");
        let absent = fetch_shard(&*s3, &info, &format!("{uri}/c/9/9/9")).unwrap();
        assert_eq!(absent, ShardState::Absent, "{array}");
    }
}
