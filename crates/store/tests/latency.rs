//! LatencyStore: every operation pays at least the floor, and concurrent operations'
//! delays overlap instead of queueing behind each other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use store::{FsStore, FsStoreConfig, LatencyConfig, LatencyStore, OpKind, ReadRequest, Store};

use crate::{byte, write_file};

fn setup(delay: Duration) -> (tempfile::TempDir, Arc<dyn Store>) {
    let d = tempfile::tempdir().unwrap();
    for f in 0..4 {
        write_file(d.path(), &format!("f{f}"), f, 10_000);
    }
    let inner =
        FsStore::new(d.path(), FsStoreConfig { io_threads: 4, ..Default::default() }).unwrap();
    let s: Arc<dyn Store> =
        Arc::new(LatencyStore::new(inner, LatencyConfig::fixed(delay)).unwrap());
    (d, s)
}

#[test]
fn every_operation_pays_the_floor() {
    let floor = Duration::from_millis(20);
    let (_d, s) = setup(floor);
    let t = Instant::now();
    assert_eq!(s.stat("f0").unwrap(), Some(10_000));
    assert!(t.elapsed() >= floor);
    let t = Instant::now();
    let mut buf = [0u8; 10];
    assert_eq!(s.read("f1", 5, &mut buf).unwrap(), 10);
    assert!(t.elapsed() >= floor);
    assert_eq!(buf[0], byte(1, 5));
    let t = Instant::now();
    assert_eq!(s.read_all("f2").unwrap().len(), 10_000);
    assert!(t.elapsed() >= floor);
    let t = Instant::now();
    let ticket = s.submit(vec![ReadRequest::to_vec("f3", 0, 100)]).unwrap();
    let r = ticket.wait();
    assert!(t.elapsed() >= floor);
    assert_eq!(r[0].bytes(), Ok(100));
    let st = s.stats();
    for kind in OpKind::ALL {
        assert_eq!(st.ops(kind), 1, "{kind:?}");
        // Bucket upper bounds: every recorded latency is at least the 20 ms floor.
        assert!(st.latency(kind).p50().unwrap() > floor, "{kind:?}");
    }
    assert!(st.opens >= 1, "fd counters come from the inner store");
}

#[test]
fn sixteen_concurrent_operations_overlap_their_delays() {
    let delay = Duration::from_millis(50);
    let (_d, s) = setup(delay);
    let t = Instant::now();
    std::thread::scope(|sc| {
        for i in 0..16u64 {
            let s = &s;
            sc.spawn(move || {
                let mut buf = [0u8; 8];
                assert_eq!(s.read(&format!("f{}", i % 4), i, &mut buf).unwrap(), 8);
                assert_eq!(buf[0], byte(i % 4, i));
            });
        }
    });
    let threads = t.elapsed();
    assert!(threads >= delay && threads < 8 * delay, "16 × 50 ms sync reads took {threads:?}");

    let t = Instant::now();
    let reads = (0..16u64).map(|i| ReadRequest::to_vec(format!("f{}", i % 4), i, 8)).collect();
    let r = s.submit(reads).unwrap().wait();
    let batch = t.elapsed();
    assert!(r.iter().all(|r| r.bytes() == Ok(8)));
    assert!(batch >= delay && batch < 8 * delay, "a batch of 16 × 50 ms reads took {batch:?}");
    assert!(s.stats().inflight_high_water >= 8, "the reads were in flight together");
}
