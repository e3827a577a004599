//! Concurrency stress: many threads × many ranged reads over many files through a small
//! fd cache and a short queue, every byte checked; dropping stores with work in flight.

use std::time::Duration;

use store::{
    Error, FsStore, FsStoreConfig, LatencyConfig, LatencyStore, ReadRequest, Store, downcast_buf,
};

use crate::{byte, write_file};

/// A tiny deterministic generator for test ranges.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound.max(1)
    }
}

#[test]
fn many_threads_many_ranged_reads_every_byte_checked() {
    let d = tempfile::tempdir().unwrap();
    let files = 24u64;
    let sizes: Vec<u64> = (0..files).map(|f| 20_000 + f * 3_001).collect();
    for f in 0..files {
        std::fs::create_dir_all(d.path().join(format!("d{}", f % 3))).unwrap();
        write_file(d.path(), &format!("d{}/f{f}", f % 3), f, sizes[f as usize]);
    }
    // A cache smaller than the file count (evictions, all-pinned opens), a short queue
    // (back-pressure) and small parts (splitting) all at once.
    let cfg = FsStoreConfig {
        io_threads: 6,
        queue_depth: 8,
        fd_cache_capacity: 4,
        max_part: 8192,
        min_part: 2048,
    };
    let s = FsStore::new(d.path(), cfg).unwrap();
    let check = |f: u64, off: u64, len: u64, got: usize, data: &[u8]| {
        let want = sizes[f as usize].saturating_sub(off).min(len);
        assert_eq!(got as u64, want, "file {f} off {off} len {len}");
        for (i, &b) in data[..got].iter().enumerate() {
            assert_eq!(b, byte(f, off + i as u64), "file {f} byte {}", off + i as u64);
        }
    };
    std::thread::scope(|sc| {
        for t in 0..8u64 {
            let (s, sizes, check) = (&s, &sizes, &check);
            sc.spawn(move || {
                let mut g = Lcg(t + 1);
                for round in 0..25 {
                    // A batch through submit (or try_submit with a blocking fallback)...
                    let ranges: Vec<(u64, u64, u64)> = (0..12)
                        .map(|_| {
                            let f = g.next(files);
                            let off = g.next(sizes[f as usize] + 1000);
                            (f, off, 1 + g.next(30_000))
                        })
                        .collect();
                    let reads: Vec<_> = ranges
                        .iter()
                        .map(|&(f, off, len)| {
                            ReadRequest::into_buf(
                                format!("d{}/f{f}", f % 3),
                                off,
                                len as usize,
                                Box::new(vec![0xEEu8; len as usize + 3]),
                                3,
                            )
                        })
                        .collect();
                    let ticket = if round % 2 == 0 {
                        s.submit(reads).unwrap()
                    } else {
                        match s.try_submit(reads) {
                            Ok(t) => t,
                            Err(store::TrySubmitError::Again(back)) => s.submit(back).unwrap(),
                            Err(e) => panic!("{e:?}"),
                        }
                    };
                    for (r, &(f, off, len)) in ticket.wait().into_iter().zip(&ranges) {
                        let got = r.bytes().unwrap();
                        let v = downcast_buf::<Vec<u8>>(r.buf).unwrap();
                        assert_eq!(&v[..3], &[0xEE; 3]);
                        check(f, off, len, got, &v[3..]);
                    }
                    // ...and a synchronous read.
                    let f = g.next(files);
                    let off = g.next(sizes[f as usize]);
                    let mut buf = vec![0u8; 1 + g.next(20_000) as usize];
                    let got = s.read(&format!("d{}/f{f}", f % 3), off, &mut buf).unwrap();
                    check(f, off, buf.len() as u64, got, &buf);
                }
            });
        }
    });
    let st = s.stats();
    // Every batched read is submitted; a synchronous read is too unless its file was
    // already open (then it runs on the caller's thread).
    assert!((8 * 25 * 12..=8 * 25 * 13).contains(&st.submitted_reads), "{}", st.submitted_reads);
    assert_eq!(st.errors, 0);
    assert!(st.fd_evictions > 0, "the cache bound must have forced evictions: {st:?}");
    assert!(st.inflight_high_water > 1);
    assert_eq!(st.fd_hits + st.fd_misses, st.ops(store::OpKind::Part));
}

fn big_files(dir: &std::path::Path, n: u64, len: u64) {
    for f in 0..n {
        write_file(dir, &format!("f{f}"), f, len);
    }
}

#[test]
fn dropping_the_store_with_work_in_flight_completes_every_ticket() {
    let d = tempfile::tempdir().unwrap();
    big_files(d.path(), 4, 1 << 20);
    let cfg = FsStoreConfig {
        io_threads: 3,
        queue_depth: 4096,
        max_part: 16 << 10,
        min_part: 4 << 10,
        ..Default::default()
    };
    let s = FsStore::new(d.path(), cfg).unwrap();
    let tickets: Vec<_> = (0..8)
        .map(|i| {
            let reads =
                (0..4).map(|f| ReadRequest::to_vec(format!("f{f}"), i * 1000, 512 << 10)).collect();
            s.submit(reads).unwrap()
        })
        .collect();
    drop(s); // must return: queued parts are cancelled, running ones finish
    let (mut ok, mut cancelled) = (0, 0);
    for (i, t) in tickets.into_iter().enumerate() {
        let results = t.wait_timeout(Duration::from_secs(30)).expect("every ticket completes");
        for (f, r) in results.into_iter().enumerate() {
            match &r.outcome {
                Ok(n) => {
                    ok += 1;
                    assert_eq!(*n, 512 << 10);
                    let v = downcast_buf::<Vec<u8>>(r.buf).unwrap();
                    assert!(
                        v.iter()
                            .enumerate()
                            .all(|(k, &b)| b == byte(f as u64, i as u64 * 1000 + k as u64))
                    );
                }
                Err(Error::ShutDown { path }) => {
                    cancelled += 1;
                    assert_eq!(path, &d.path().join(format!("f{f}")));
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
    }
    assert_eq!(ok + cancelled, 32);
}

#[test]
fn dropping_a_latency_store_with_work_in_flight_completes_every_ticket() {
    let d = tempfile::tempdir().unwrap();
    big_files(d.path(), 2, 64 << 10);
    let inner =
        FsStore::new(d.path(), FsStoreConfig { io_threads: 2, ..Default::default() }).unwrap();
    let s = LatencyStore::new(inner, LatencyConfig::fixed(Duration::from_secs(3600))).unwrap();
    let t = s.submit(
        (0..16).map(|i| ReadRequest::to_vec(format!("f{}", i % 2), i * 100, 1000)).collect(),
    );
    let t = t.unwrap();
    drop(s);
    let r = t.wait_timeout(Duration::from_secs(30)).expect("completes despite the 1 h delay");
    assert!(r.iter().all(|r| matches!(r.outcome, Ok(1000) | Err(Error::ShutDown { .. }))));
}
