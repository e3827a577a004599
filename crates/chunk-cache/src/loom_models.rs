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
        assert_eq!(*pin, 10);
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
        let reader = loom::thread::spawn(move || c2.get(&1).map(|p| (*p, c2.contains(&1))));
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
