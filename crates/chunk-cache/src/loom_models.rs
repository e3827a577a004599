//! Loom models: run with `cargo xtask loom` (RUSTFLAGS `--cfg damacy_loom`).

use super::*;

/// A batch holds a pin while another thread inserts under pressure: the pinned entry is
/// never evicted, the budget holds in every interleaving, and once the pin drops the
/// insert can succeed.
#[test]
fn a_pinned_entry_survives_a_concurrent_insert_under_pressure() {
    loom::model(|| {
        let c: ChunkCache<u32, u32> = ChunkCache::new(2, Policy::Clock);
        assert_eq!(c.insert(1, 10, 1), Inserted::Added);
        assert_eq!(c.insert(2, 20, 1), Inserted::Added);
        let pin = c.get(&1).unwrap();
        let c2 = c.clone();
        let writer = loom::thread::spawn(move || {
            let out = c2.insert(3, 30, 1);
            assert!(c2.stats().bytes <= 2);
            out
        });
        assert_eq!(pin.ready(), Some(&10));
        assert!(c.contains(&1), "pinned entry evicted");
        let out = writer.join().unwrap();
        // Entry 2 was unpinned: it made room.
        assert_eq!(out, Inserted::Added);
        assert!(c.contains(&1) && !c.contains(&2));
        drop(pin);
        assert_eq!(c.stats().pinned_bytes, 0);
    });
}

/// Two threads race to pin and to insert over a full, single-entry cache: an insert
/// either evicts an unpinned entry or is refused, and a reader that got a pin reads the
/// value it was inserted with.
#[test]
fn racing_pins_and_inserts_never_read_a_replaced_value() {
    loom::model(|| {
        let c: ChunkCache<u32, u32> = ChunkCache::new(1, Policy::Lru);
        assert_eq!(c.insert(1, 10, 1), Inserted::Added);
        let c2 = c.clone();
        let reader =
            loom::thread::spawn(move || c2.get(&1).map(|p| (*p.ready().unwrap(), c2.contains(&1))));
        let out = c.insert(2, 20, 1);
        let got = reader.join().unwrap();
        if let Some((v, present)) = got {
            assert_eq!(v, 10);
            assert!(present, "an entry was evicted while pinned");
        }
        match out {
            Inserted::Added => assert!(!c.contains(&1) && c.contains(&2)),
            Inserted::NoRoom => assert!(c.contains(&1) && !c.contains(&2)),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.stats().pinned_bytes, 0);
        assert!(c.stats().bytes <= 1);
    });
}

/// A claim filled or abandoned on one thread while another waits on it: the waiter wakes
/// with the value or with `None` in every interleaving (no lost wake-up), and the
/// accounting ends balanced.
#[test]
fn a_waiter_on_a_claim_always_wakes() {
    for fill in [true, false] {
        loom::model(move || {
            let c: ChunkCache<u32, u32> = ChunkCache::new(2, Policy::Clock);
            let Lookup::Claimed(claim) = c.lookup_or_claim(&1, 1) else { panic!("claim") };
            let c2 = c.clone();
            let waiter = loom::thread::spawn(move || match c2.lookup_or_claim(&1, 1) {
                Lookup::Hit(p) => p.wait().map(|v| *v),
                // The claim was abandoned first: this thread claimed it anew.
                Lookup::Claimed(_) => None,
                Lookup::Miss => panic!("room was there"),
            });
            if fill {
                claim.fill(7);
            } else {
                drop(claim);
            }
            let got = waiter.join().unwrap();
            assert_eq!(got, fill.then_some(7));
            let s = c.stats();
            assert_eq!(s.pinned_bytes, 0);
            assert_eq!(s.bytes, u64::from(fill));
        });
    }
}

/// A batch's probe holds the lock across its lookups while another thread fills the
/// claim the probe made and releases a pin: nothing deadlocks, the probe's own lookup of
/// the claimed key is a miss in ready-only mode (never a wait), and once the probe is
/// dropped the filled value is there.
#[test]
fn a_probe_holding_the_lock_never_blocks_a_fill_forever() {
    loom::model(|| {
        let c: ChunkCache<u32, u32> = ChunkCache::new(4, Policy::Clock);
        assert_eq!(c.insert(1, 10, 1), Inserted::Added);
        let held = c.get(&1).unwrap();
        let mut probe = c.probe();
        let Lookup::Claimed(claim) = probe.lookup_ready_or_claim(&2, 1) else {
            panic!("a missing key with room is claimed")
        };
        let filler = loom::thread::spawn(move || {
            claim.fill(20);
            drop(held);
        });
        // The probe still holds the lock (3 lookups, no relock): the fill cannot have
        // happened, so the pending key is a miss (a `Hit` pin dropped here would deadlock).
        assert!(matches!(probe.lookup_ready_or_claim(&2, 1), Lookup::Miss));
        match probe.lookup_ready_or_claim(&1, 1) {
            Lookup::Hit(pin) => {
                assert_eq!(pin.ready(), Some(&10));
                probe.release(pin);
            }
            _ => panic!("a cached key is a hit"),
        }
        drop(probe);
        filler.join().unwrap();
        assert_eq!(c.get(&2).and_then(|p| p.ready().copied()), Some(20));
        assert_eq!(c.stats().pinned_bytes, 0);
    });
}

/// A probe lets go of the lock mid-batch (`Probe::unlock`, as the planner's probe does
/// once its lookups are over, and as every relock does) while another thread fills the
/// claim the probe made: the probe's next lookup takes the lock again and sees either the
/// pending claim (a miss in ready-only mode) or the filled value, never anything else, and
/// no pin or byte is left counted once both are done. Some interleaving sees the fill:
/// the unlock really let it in before the probe's end.
#[test]
fn a_probe_that_lets_go_and_looks_up_again_sees_the_fill_or_the_claim() {
    // Across the model's executions (a std atomic: outside what loom schedules).
    let saw_fill = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::clone(&saw_fill);
    loom::model(move || {
        let c: ChunkCache<u32, u32> = ChunkCache::new(4, Policy::Clock);
        let mut probe = c.probe();
        let Lookup::Claimed(claim) = probe.lookup_ready_or_claim(&2, 1) else {
            panic!("a missing key with room is claimed")
        };
        probe.unlock();
        let filler = loom::thread::spawn(move || claim.fill(20));
        match probe.lookup_ready_or_claim(&2, 1) {
            Lookup::Hit(pin) => {
                assert_eq!(pin.ready(), Some(&20), "a hit after the unlock is the filled value");
                probe.release(pin);
                seen.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Lookup::Miss => {}
            Lookup::Claimed(_) => panic!("a key under claim is never claimed twice"),
        }
        drop(probe);
        filler.join().unwrap();
        assert_eq!(c.get(&2).and_then(|p| p.ready().copied()), Some(20));
        let s = c.stats();
        assert_eq!((s.pinned_bytes, s.bytes, s.entries), (0, 1, 1));
    });
    assert!(saw_fill.load(std::sync::atomic::Ordering::Relaxed), "no interleaving let the fill in");
}
