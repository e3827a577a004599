//! The toy pipeline on the host backend, its mutation check, and pool unit tests.

use std::time::Duration;

use super::toy::{ToyOptions, run_toy};
use crate::edge::{EdgeTable, Endpoint};
use crate::error::Error;
use crate::pool::{Pool, PoolSpec};
use crate::sync::{Arc, AtomicBool, Ordering, thread};
use crate::{HostBackend, TeardownFinding};

fn opts(iterations: usize, max_delay_us: u64, seed: u64) -> ToyOptions {
    ToyOptions {
        iterations,
        words: 256,
        max_delay_us,
        seed,
        skip_acquire_wait: false,
        gate_first_copy: false,
    }
}

#[test]
fn toy_pipeline_is_always_correct_under_random_delays() {
    for seed in 1..=12u64 {
        let out =
            run_toy(Arc::new(HostBackend::new()), &opts(40, 300, seed)).expect("toy pipeline runs");
        assert_eq!(out.depth, 2);
        assert_eq!(out.checked, 40, "seed {seed}");
        assert!(out.mismatches.is_empty(), "seed {seed}: {:?}", out.mismatches);
        assert_eq!(out.report.first_error, None);
        assert!(out.report.findings.is_empty(), "seed {seed}: {:?}", out.report.findings);
    }
}

#[test]
fn toy_pipeline_without_delays_meters_edges() {
    let out = run_toy(Arc::new(HostBackend::new()), &opts(200, 0, 7)).expect("toy pipeline runs");
    assert_eq!(out.checked, 200);
    assert!(out.mismatches.is_empty(), "{:?}", out.mismatches);
    let stat = |name: &str| {
        out.report.edges.iter().find(|e| e.name == name).cloned().expect("edge present")
    };
    // Every iteration after the first `depth` waits on the device pool; every one waits on
    // "filled" and "copied".
    assert_eq!(stat("toy.device").waits, 198);
    assert_eq!(stat("toy.device").signals, 200);
    assert_eq!(stat("toy.filled").waits, 200);
    assert_eq!(stat("toy.copied").waits, 200);
}

#[test]
fn toy_pipeline_detects_corruption_when_acquire_skips_its_wait() {
    // The mutation: the device pool hands out slot 0 again without waiting for the
    // consumer's release, and the gate holds the consumer's first copy until the producer
    // has refilled slot 0. The consumer then copies iteration 2's pattern as iteration 0.
    let mut o = opts(3, 0, 3);
    o.skip_acquire_wait = true;
    o.gate_first_copy = true;
    let out = run_toy(Arc::new(HostBackend::new()), &o).expect("toy pipeline runs");
    assert_eq!(out.checked, 3);
    assert!(
        out.mismatches.iter().any(|&(i, expected, found)| i == 0
            && expected == super::toy::pattern(0)
            && found == super::toy::pattern(2)),
        "the skipped wait must corrupt iteration 0: {:?}",
        out.mismatches
    );
}

fn host_pool(slots: usize) -> (Arc<EdgeTable<HostBackend>>, Pool<HostBackend, u32>) {
    let table = Arc::new(EdgeTable::new(Arc::new(HostBackend::new()), slots).expect("table"));
    let spec = PoolSpec { name: "p", acquirer: Endpoint::Host("a"), releaser: Endpoint::Host("r") };
    let pool = Pool::new(&table, spec, (0..slots as u32).collect()).expect("pool");
    (table, pool)
}

#[test]
fn acquire_blocking_waits_for_the_previous_release() {
    let (_t, pool) = host_pool(1);
    let first = pool.acquire_blocking(0, "a").expect("gen 0");
    assert_eq!((first.slot(), first.generation(), *first.buffer()), (0, 0, 0));
    let released = Arc::new(AtomicBool::new(false));
    let (p2, r2) = (pool.clone(), Arc::clone(&released));
    let waiter = thread::spawn(move || {
        let lease = p2.acquire_blocking(0, "a").expect("gen 1");
        // The release flag was set before the release was published.
        (lease.generation(), r2.load(Ordering::SeqCst))
    });
    crate::sync::sleep(Duration::from_millis(30));
    released.store(true, Ordering::SeqCst);
    pool.release_host(first, "r").expect("release");
    assert_eq!(waiter.join().expect("waiter"), (1, true));
}

#[test]
fn releases_must_come_in_generation_order() {
    let (_t, pool) = host_pool(1);
    let g0 = pool.acquire_blocking(0, "a").expect("gen 0");
    // Gen 1 of a host pool blocks until gen 0 is released; release gen 0 from a thread.
    let p2 = pool.clone();
    let h = thread::spawn(move || p2.acquire_blocking(0, "a").expect("gen 1"));
    crate::sync::sleep(Duration::from_millis(10));
    pool.release_host(g0, "r").expect("release gen 0");
    let g1 = h.join().expect("join");
    assert_eq!(g1.generation(), 1);
    assert_eq!(pool.released(0), Ok(1));
    pool.release_host(g1, "r").expect("release gen 1");
    assert_eq!(pool.released(0), Ok(2));
}

#[test]
fn out_of_order_release_is_an_error() {
    let (table, pool) = host_pool(1);
    let g0 = pool.acquire_blocking(0, "a").expect("gen 0");
    // Release gen 0 via release_all (teardown) and then try to release the stale lease.
    pool.release_all().expect("release_all");
    assert_eq!(
        pool.release_host(g0, "r"),
        Err(Error::ReleaseOutOfOrder { pool: "p", slot: 0, generation: 0, expected: 1 })
    );
    assert_eq!(table.teardown_findings(), vec![TeardownFinding::DeadEdge { edge: "p", slot: 0 }]);
}

#[test]
fn pool_rejects_bad_slots_foreign_leases_and_wrong_roles() {
    let (_t, pool) = host_pool(2);
    assert_eq!(
        pool.acquire_blocking(2, "a").map(|_| ()),
        Err(Error::SlotOutOfRange { what: "pool", name: "p", slot: 2, slots: 2 })
    );
    let (_t2, other) = host_pool(2);
    let lease = other.acquire_blocking(0, "a").expect("lease");
    assert_eq!(
        pool.release_host(lease, "r"),
        Err(Error::ForeignLease { pool: "p", lease_pool: "p" })
    );
    let lease = pool.acquire_blocking(1, "a").expect("lease");
    assert!(matches!(
        pool.release_host(lease, "intruder"),
        Err(Error::WrongEndpoint { role: "producer", .. })
    ));
    let table = Arc::new(EdgeTable::new(Arc::new(HostBackend::new()), 1).expect("table"));
    let spec =
        PoolSpec { name: "empty", acquirer: Endpoint::Host("a"), releaser: Endpoint::Host("r") };
    assert_eq!(
        Pool::<HostBackend, u8>::new(&table, spec, vec![]).map(|_| ()),
        Err(Error::NoSlots { name: "empty" })
    );
}
