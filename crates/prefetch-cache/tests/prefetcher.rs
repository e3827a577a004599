//! The prefetcher end to end over files: order, dedup, errors, limits, shutdown.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use prefetch_cache::{Error, PrefetchConfig, Prefetcher, ReadySample, SampleRequest, ShardState};
use store::{ReadRequest, Store, StoreStats, Ticket, TrySubmitError};
use zarr::blosc::Compressor;

use crate::fixtures::*;

fn config(lookahead: usize, max_shards: usize) -> PrefetchConfig {
    let mut c = PrefetchConfig::for_batch(2);
    c.lookahead = lookahead;
    c.max_shards_per_sample = max_shards;
    c.fetch_threads = 2;
    c.size_caches();
    c
}

fn req(uri: &str, lo: [u64; 2], hi: [u64; 2]) -> SampleRequest {
    SampleRequest { uri: uri.into(), lo: lo.to_vec(), hi: hi.to_vec(), level: None }
}

fn take_all(p: &Prefetcher, n: usize) -> Vec<ReadySample> {
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(p.wait_ready(n - out.len()));
    }
    out
}

/// Two arrays: `raw` (sharded, shard 0/0 present with a stored chunk 0 and 1/1 absent)
/// and `blz` (sharded blosc, shard 0/0 present).
fn two_arrays() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_sharded_meta();
    write_meta(dir.path(), "raw", &raw);
    write_file(dir.path(), "raw/c/0/0", &shard_bytes(&raw, &[Some(vec![5; 4]), None, None, None]));
    write_file(dir.path(), "raw/c/0/1", &shard_bytes(&raw, &[None, None, None, None]));
    let blz = blosc_sharded_meta();
    write_meta(dir.path(), "blz", &blz);
    write_file(
        dir.path(),
        "blz/c/0/0",
        &shard_bytes(&blz, &[None, Some(blosc_chunk(Compressor::Zstd)), None, None]),
    );
    dir
}

/// A group push takes what the lookahead has room for, from the front, leaves the rest
/// with the caller, and its samples resolve in push order like single pushes; once the
/// ring drains, the rest goes in.
#[test]
fn a_group_push_takes_what_fits_and_keeps_push_order() {
    let dir = two_arrays();
    let p = Prefetcher::new(fs_store(dir.path()), config(3, 4)).unwrap();
    assert_eq!(p.try_push(req("raw", [0, 0], [2, 2])).unwrap(), 0);
    let mut group = vec![
        req("raw", [0, 4], [2, 6]),
        req("blz", [0, 0], [2, 2]),
        req("raw", [4, 4], [8, 8]),
        req("raw", [2, 2], [4, 4]),
    ];
    assert_eq!(p.try_push_many(&mut group), 2, "room for two behind the first");
    assert_eq!(group.len(), 2);
    assert_eq!(group[0].lo, vec![4, 4], "the rest is what was not pushed, in order");
    let first = take_all(&p, 3);
    assert_eq!(first.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
    let keys = |s: &ReadySample| -> Vec<String> {
        s.outcome.as_ref().unwrap().shards.iter().map(|x| x.key.clone()).collect()
    };
    assert_eq!(keys(&first[1]), ["raw/c/0/1"]);
    assert_eq!(keys(&first[2]), ["blz/c/0/0"]);
    assert_eq!(p.try_push_many(&mut group), 2);
    assert!(group.is_empty());
    let rest = take_all(&p, 2);
    assert_eq!(rest.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(keys(&rest[0]), ["raw/c/1/1"]);
    assert_eq!(keys(&rest[1]), ["raw/c/0/0"]);
}

#[test]
fn samples_resolve_in_push_order_with_shards_and_layout() {
    let dir = two_arrays();
    let p = Prefetcher::new(fs_store(dir.path()), config(8, 4)).unwrap();
    p.push(req("raw", [0, 0], [4, 8])).unwrap(); // shards 0/0 and 0/1
    p.push(req("blz", [0, 0], [2, 2])).unwrap();
    p.push(req("raw", [4, 4], [8, 8])).unwrap(); // shard 1/1, absent
    let out = take_all(&p, 3);
    assert_eq!(out.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![0, 1, 2]);

    let s0 = out[0].outcome.as_ref().unwrap();
    assert_eq!(
        s0.shards.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
        ["raw/c/0/0", "raw/c/0/1"]
    );
    assert!(matches!(&*s0.shards[0].state, ShardState::Present(i) if i.len() == 4));
    assert!(s0.layout.is_none(), "raw arrays have no blosc layout");

    let s1 = out[1].outcome.as_ref().unwrap();
    let layout = s1.layout.as_ref().expect("blosc array resolves a layout");
    assert_eq!((layout.typesize, layout.compressor), (1, Compressor::Zstd));

    // Lesson: a missing shard reaches ready as Absent (NotFound means fill), not an error.
    let s2 = out[2].outcome.as_ref().unwrap();
    assert_eq!(*s2.shards[0].state, ShardState::Absent);
}

#[test]
fn dedup_across_samples_one_fetch_per_key() {
    let dir = two_arrays();
    let p = Prefetcher::new(fs_store(dir.path()), config(16, 4)).unwrap();
    for _ in 0..10 {
        p.push(req("raw", [0, 0], [2, 2])).unwrap();
    }
    let out = take_all(&p, 10);
    assert!(out.iter().all(|s| s.outcome.is_ok()));
    let st = p.stats();
    assert_eq!((st.metadata.misses, st.metadata.hits), (1, 9));
    assert_eq!((st.shard_index.misses, st.shard_index.hits), (1, 9));
    assert_eq!(st.fetches, 2, "one zarr.json read and one shard index read for ten samples");
}

#[test]
fn fetch_errors_reach_their_sample_only() {
    let dir = two_arrays();
    let raw = raw_sharded_meta();
    let mut bad = shard_bytes(&raw, &[Some(vec![1; 4]), None, None, None]);
    bad[6] ^= 1;
    write_file(dir.path(), "raw/c/1/0", &bad);
    let p = Prefetcher::new(fs_store(dir.path()), config(8, 4)).unwrap();
    p.push(req("raw", [4, 0], [5, 1])).unwrap();
    p.push(req("missing", [0, 0], [1, 1])).unwrap();
    p.push(req("raw", [0, 0], [1, 1])).unwrap();
    let out = take_all(&p, 3);
    assert!(matches!(&out[0].outcome, Err(Error::IndexChecksum { key, .. }) if key == "raw/c/1/0"));
    assert!(matches!(&out[1].outcome, Err(Error::MetadataNotFound { .. })));
    assert!(out[2].outcome.is_ok());
}

#[test]
fn too_many_shards_and_bad_boxes_are_clear_errors() {
    let dir = two_arrays();
    let p = Prefetcher::new(fs_store(dir.path()), config(8, 2)).unwrap();
    p.push(req("raw", [0, 0], [8, 8])).unwrap(); // 4 shards > 2
    p.push(req("raw", [0, 0], [9, 1])).unwrap(); // leaves the array
    let out = take_all(&p, 2);
    assert_eq!(
        out[0].outcome,
        Err(Error::TooManyShards { seq: 0, uri: "raw".into(), shards: 4, max: 2 })
    );
    assert!(matches!(
        &out[1].outcome,
        Err(Error::Geometry { seq: 1, source: zarr::Error::OutOfBounds { axis: 0, .. }, .. })
    ));
    assert!(out[0].outcome.as_ref().unwrap_err().to_string().contains("max_shards_per_sample"));
}

/// Lesson 4: a box with a zero extent touches no shard and resolves, empty.
#[test]
fn zero_shard_sample_resolves_empty() {
    let dir = two_arrays();
    let p = Prefetcher::new(fs_store(dir.path()), config(8, 2)).unwrap();
    p.push(req("raw", [3, 3], [3, 5])).unwrap();
    let out = take_all(&p, 1);
    let s = out[0].outcome.as_ref().unwrap();
    assert!(s.shards.is_empty());
    assert!(s.aabb.is_none());
    assert_eq!(p.stats().shard_index.misses, 0);
}

/// A store whose `stat` of keys under `slow/` blocks until released.
#[derive(Debug)]
struct HeldStore {
    inner: Arc<dyn Store>,
    released: Mutex<bool>,
    cv: Condvar,
}

impl HeldStore {
    fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

impl Store for HeldStore {
    fn stat(&self, key: &str) -> store::Result<Option<u64>> {
        if key.starts_with("slow/") {
            let mut r = self.released.lock().unwrap();
            while !*r {
                r = self.cv.wait(r).unwrap();
            }
        }
        self.inner.stat(key)
    }
    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> store::Result<usize> {
        self.inner.read(key, offset, buf)
    }
    fn read_all(&self, key: &str) -> store::Result<Vec<u8>> {
        self.inner.read_all(key)
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

#[test]
fn ready_prefix_waits_for_an_earlier_slow_sample() {
    let dir = two_arrays();
    let raw = raw_sharded_meta();
    write_meta(dir.path(), "slow", &raw);
    let held = Arc::new(HeldStore {
        inner: fs_store(dir.path()),
        released: Mutex::new(false),
        cv: Condvar::new(),
    });
    let p = Prefetcher::new(held.clone(), config(8, 4)).unwrap();
    p.push(req("slow", [0, 0], [1, 1])).unwrap();
    p.push(req("raw", [0, 0], [1, 1])).unwrap();
    p.push(req("raw", [0, 0], [1, 1])).unwrap();
    // Samples 1 and 2 resolve while 0 is stuck in its shard stat.
    assert_eq!(p.wait_resolved(2), 2);
    assert!(p.take_ready(10).is_empty(), "a later sample overtook an earlier one");
    held.release();
    let out = take_all(&p, 3);
    assert_eq!(out.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(out.iter().all(|s| s.outcome.is_ok()));
}

#[test]
fn full_ring_gives_the_request_back() {
    let dir = two_arrays();
    let held = Arc::new(HeldStore {
        inner: fs_store(dir.path()),
        released: Mutex::new(false),
        cv: Condvar::new(),
    });
    write_meta(dir.path(), "slow", &raw_sharded_meta());
    let p = Prefetcher::new(held.clone(), config(2, 4)).unwrap();
    p.try_push(req("slow", [0, 0], [1, 1])).unwrap();
    p.try_push(req("slow", [0, 0], [1, 1])).unwrap();
    let back = p.try_push(req("raw", [0, 0], [1, 1])).unwrap_err();
    assert_eq!(&*back.uri, "raw");
    held.release();
    assert_eq!(take_all(&p, 2).len(), 2);
    assert_eq!(p.try_push(back).unwrap(), 2);
}

#[test]
fn shutdown_with_fetches_in_flight_neither_hangs_nor_leaks() {
    let dir = two_arrays();
    let slow = store::LatencyStore::new(
        fs_store(dir.path()),
        store::LatencyConfig::fixed(Duration::from_millis(50)),
    )
    .unwrap();
    let store: Arc<dyn Store> = Arc::new(slow);
    let p = Prefetcher::new(Arc::clone(&store), config(32, 4)).unwrap();
    for i in 0..32u64 {
        p.push(req(if i % 2 == 0 { "raw" } else { "blz" }, [0, 0], [8, 8])).unwrap();
    }
    let t = Instant::now();
    drop(p);
    // Generous bound: the drop waits at most for reads already started (50 ms each).
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(Arc::strong_count(&store), 1, "a prefetcher thread or job still holds the store");
}

/// Lesson 12: the default capacities pass their own validation for every batch size.
#[test]
fn default_capacities_validate_for_every_batch_size() {
    assert!(PrefetchConfig::default().validate().is_ok());
    for spb in [1, 2, 3, 64, 128, 129, 512, 4096] {
        let c = PrefetchConfig::for_batch(spb);
        assert_eq!(c.validate(), Ok(()), "samples_per_batch {spb}");
        assert_eq!(c.shard_index_capacity, (c.lookahead + 2 * spb) * c.max_shards_per_sample);
    }
    let mut c = PrefetchConfig::default();
    c.shard_index_capacity -= 1;
    assert!(matches!(c.validate(), Err(Error::Config { field: "shard_index_capacity", .. })));
    c = PrefetchConfig::default();
    c.samples_per_batch *= 2; // capacities not re-derived
    assert!(matches!(c.validate(), Err(Error::Config { field: "metadata_capacity", .. })));
    assert!(Prefetcher::new(fs_store(std::env::temp_dir().as_path()), c).is_err());
}
