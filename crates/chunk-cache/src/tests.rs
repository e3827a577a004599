use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn cache(capacity: u64, policy: Policy) -> ChunkCache<u32, Vec<u8>> {
    ChunkCache::new(capacity, policy)
}

#[test]
fn a_hit_returns_the_inserted_bytes_and_counts() {
    for policy in [Policy::Lru, Policy::Clock] {
        let c = cache(100, policy);
        assert!(c.get(&1).is_none());
        assert_eq!(c.insert(1, vec![7; 10], 10), Inserted::Added);
        assert_eq!(c.insert(1, vec![9; 10], 10), Inserted::Present);
        let p = c.get(&1).expect("hit");
        assert_eq!(p.ready(), Some(&vec![7; 10]), "the first value stays");
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.inserts, s.bytes, s.entries), (1, 1, 1, 10, 1));
        assert_eq!(s.pinned_bytes, 10);
        drop(p);
        assert_eq!(c.stats().pinned_bytes, 0);
        assert!((c.stats().hit_rate() - 0.5).abs() < 1e-12);
    }
}

#[test]
fn a_caller_that_never_waits_gets_a_miss_for_a_pending_key() {
    let c = cache(100, Policy::Clock);
    let Lookup::Claimed(claim) = c.lookup_or_claim(&1, 10) else { panic!("a claim") };
    assert!(matches!(c.lookup_ready_or_claim(&1, 10), Lookup::Miss));
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.joined), (0, 2, 0), "{s:?}");
    claim.fill(vec![1; 10]);
    match c.lookup_ready_or_claim(&1, 10) {
        Lookup::Hit(p) => assert_eq!(p.ready(), Some(&vec![1; 10])),
        _ => panic!("a filled key is a hit"),
    }
    assert!(
        matches!(c.lookup_ready_or_claim(&2, 10), Lookup::Claimed(_)),
        "an absent key is claimed"
    );
}

#[test]
fn a_miss_that_cannot_fit_past_the_pinned_bytes_evicts_nothing() {
    for policy in [Policy::Lru, Policy::Clock] {
        let c = cache(100, policy);
        assert_eq!(c.insert(1, vec![1; 40], 40), Inserted::Added);
        assert_eq!(c.insert(2, vec![2; 50], 50), Inserted::Added);
        let pin = c.get(&2).expect("hit");
        // 50 pinned + 60 > 100: refused at once; the unpinned entry 1 stays cached.
        assert!(matches!(c.lookup_or_claim(&3, 60), Lookup::Miss));
        assert_eq!(c.insert(4, vec![4; 60], 60), Inserted::NoRoom);
        let s = c.stats();
        assert_eq!((s.evictions, s.rejected, s.entries), (0, 2, 2), "{policy:?}: {s:?}");
        assert!(c.contains(&1));
        // What fits beside the pinned bytes still evicts as before.
        assert_eq!(c.insert(5, vec![5; 45], 45), Inserted::Added);
        assert!(!c.contains(&1) && c.stats().evictions == 1, "{policy:?}");
        drop(pin);
    }
}

#[test]
fn pinned_entries_survive_pressure_and_inserts_are_refused_instead() {
    for policy in [Policy::Lru, Policy::Clock] {
        let c = cache(30, policy);
        for k in 0..3 {
            assert_eq!(c.insert(k, vec![k as u8; 10], 10), Inserted::Added);
        }
        let pins: Vec<_> = (0..3).map(|k| c.get(&k).unwrap()).collect();
        assert_eq!(c.insert(9, vec![9; 10], 10), Inserted::NoRoom);
        assert_eq!(c.stats().rejected, 1);
        for (k, p) in pins.iter().enumerate() {
            assert_eq!(p.ready(), Some(&vec![k as u8; 10]));
            assert!(c.contains(&(k as u32)));
        }
        drop(pins);
        assert_eq!(c.insert(9, vec![9; 10], 10), Inserted::Added);
        assert_eq!(c.stats().bytes, 30);
        assert_eq!(c.stats().evictions, 1);
    }
}

/// `Pin::release_all` unpins every pin of every cache it is given (in one lock per
/// cache): the entries are evictable again, and no pin is released twice.
#[test]
fn released_pins_leave_their_entries_evictable() {
    for policy in [Policy::Lru, Policy::Clock] {
        let (a, b) = (cache(30, policy), cache(30, policy));
        for k in 0..3 {
            assert_eq!(a.insert(k, vec![k as u8; 10], 10), Inserted::Added);
            assert_eq!(b.insert(k, vec![k as u8; 10], 10), Inserted::Added);
        }
        // Two pins of entry 0 (one must stay after the other goes), and pins of both caches.
        let mut pins: Vec<_> = (0..3).map(|k| a.get(&k).unwrap()).collect();
        pins.extend((0..3).map(|k| b.get(&k).unwrap()));
        let extra = a.get(&0).unwrap();
        assert_eq!(a.insert(9, vec![9; 10], 10), Inserted::NoRoom);
        crate::Pin::release_all(pins);
        assert_eq!((a.stats().pinned_bytes, b.stats().pinned_bytes), (10, 0), "{policy:?}");
        // Entry 0 is still pinned by `extra`: 1 or 2 goes.
        assert_eq!(a.insert(9, vec![9; 10], 10), Inserted::Added);
        assert!(a.contains(&0), "{policy:?}");
        drop(extra);
        assert_eq!(a.stats().pinned_bytes, 0);
        assert_eq!(b.insert(9, vec![9; 10], 10), Inserted::Added);
    }
}

/// A probe's lookups (one lock for many, let go every `PROBE_RELOCK`) count and pin as
/// single lookups do; a pending key is a miss in ready-only mode; a pin handed back
/// through the probe is released once.
#[test]
fn a_probe_looks_up_as_single_lookups_do() {
    let c = cache(1000, Policy::Clock);
    for k in 0..100 {
        assert_eq!(c.insert(k, vec![k as u8; 1], 1), Inserted::Added);
    }
    let mut probe = c.probe();
    let mut pins = Vec::new();
    for k in 0..100 {
        match probe.lookup_ready_or_claim(&k, 1) {
            Lookup::Hit(p) => pins.push(p),
            _ => panic!("key {k} is cached"),
        }
    }
    let claim = match probe.lookup_ready_or_claim(&500, 7) {
        Lookup::Claimed(c) => c,
        _ => panic!("room for a claim"),
    };
    assert!(matches!(probe.lookup_ready_or_claim(&500, 7), Lookup::Miss), "pending: a miss");
    // Joining the claim: a pending pin (dropped through the probe, which holds the lock).
    match probe.lookup_or_claim(&500, 7) {
        Lookup::Hit(p) if p.ready().is_none() => probe.release(p),
        _ => panic!("a pending hit"),
    }
    let one = pins.pop().unwrap();
    probe.release(one);
    drop(probe);
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.joined), (101, 2, 1), "{s:?}");
    assert_eq!(s.pinned_bytes, 99 + 7);
    crate::Pin::release_all(pins);
    claim.fill(vec![5; 7]);
    assert_eq!(c.stats().pinned_bytes, 0);
}

/// Values a probe evicts to make room are freed at its next relock, outside the lock,
/// not kept until the probe ends.
#[test]
fn a_probe_frees_what_it_evicted_at_its_next_relock() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Counted(std::sync::Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let freed = std::sync::Arc::new(AtomicUsize::new(0));
    let c: ChunkCache<u32, Counted> = ChunkCache::new(10, Policy::Clock);
    assert_eq!(c.insert(1, Counted(std::sync::Arc::clone(&freed)), 10), Inserted::Added);
    let mut probe = c.probe();
    let Lookup::Claimed(claim) = probe.lookup_or_claim(&2, 10) else { panic!("a claim") };
    assert_eq!(c_evictions(&probe), 1);
    assert_eq!(freed.load(Ordering::SeqCst), 0, "kept while the lock is held");
    for _ in 0..PROBE_RELOCK {
        assert!(matches!(probe.lookup_ready_or_claim(&3, 100), Lookup::Miss), "too large");
    }
    assert_eq!(freed.load(Ordering::SeqCst), 1, "freed at the relock, the probe still alive");
    drop(probe);
    drop(claim);
}

/// The evictions a probe's cache counted (read under the probe's own hold).
fn c_evictions<K: Hash + Eq + Clone, V>(probe: &Probe<'_, K, V>) -> u64 {
    probe.guard.as_ref().map_or(0, |g| g.stats.evictions)
}

#[test]
fn a_value_larger_than_the_cache_is_refused() {
    let c = cache(8, Policy::Clock);
    assert_eq!(c.insert(1, vec![0; 9], 9), Inserted::TooLarge);
    assert_eq!(c.stats().entries, 0);
}

#[test]
fn lru_evicts_the_least_recently_used() {
    let c = cache(30, Policy::Lru);
    for k in 0..3 {
        c.insert(k, vec![0; 10], 10);
    }
    drop(c.get(&0)); // 1 is now the oldest
    c.insert(3, vec![0; 10], 10);
    assert!(c.contains(&0) && !c.contains(&1) && c.contains(&2) && c.contains(&3));
}

#[test]
fn clock_spares_a_referenced_entry_once() {
    let c = cache(30, Policy::Clock);
    for k in 0..3 {
        c.insert(k, vec![0; 10], 10);
    }
    drop(c.get(&0));
    // The hand starts at 0: 0 is referenced (spared, bit cleared), 1 goes.
    c.insert(3, vec![0; 10], 10);
    assert!(c.contains(&0) && !c.contains(&1));
    // Next: the hand is past 1; 2 is unreferenced and goes.
    c.insert(4, vec![0; 10], 10);
    assert!(c.contains(&0) && !c.contains(&2));
}

#[derive(Debug, Clone)]
enum Op {
    Get(u32),
    Insert(u32, u64),
    DropPin(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            (0u32..12).prop_map(Op::Get),
            (0u32..12, 1u64..40).prop_map(|(k, b)| Op::Insert(k, b)),
            (0usize..8).prop_map(Op::DropPin),
        ],
        1..200,
    )
}

proptest! {
    /// Against a plain model: the budget always holds, a pinned key is never evicted, a
    /// hit always returns the bytes inserted under its key, and the counters add up.
    #[test]
    fn budget_pins_and_values_hold_under_any_sequence(ops in ops(), lru in any::<bool>()) {
        let policy = if lru { Policy::Lru } else { Policy::Clock };
        let c: ChunkCache<u32, (u32, u64)> = ChunkCache::new(100, policy);
        let mut pins: Vec<Pin<u32, (u32, u64)>> = Vec::new();
        let mut value_of: HashMap<u32, u64> = HashMap::new();
        for op in ops {
            match op {
                Op::Get(k) => {
                    if let Some(p) = c.get(&k) {
                        prop_assert_eq!(p.ready().map(|v| v.0), Some(k));
                        prop_assert_eq!(p.ready().map(|v| v.1), value_of.get(&k).copied());
                        pins.push(p);
                    }
                }
                Op::Insert(k, b) => {
                    let before = c.contains(&k);
                    let out = c.insert(k, (k, b), b);
                    if out == Inserted::Added {
                        value_of.insert(k, b);
                    }
                    prop_assert_eq!(before, out == Inserted::Present);
                }
                Op::DropPin(i) => {
                    if i < pins.len() {
                        pins.swap_remove(i);
                    }
                }
            }
            let s = c.stats();
            prop_assert!(s.bytes <= 100);
            for p in &pins {
                prop_assert!(c.contains(p.key()), "pinned key {} was evicted", p.key());
            }
            let pinned: std::collections::HashSet<u32> = pins.iter().map(|p| *p.key()).collect();
            let want: u64 = pinned.iter().map(|k| value_of[k]).sum();
            prop_assert_eq!(s.pinned_bytes, want);
            prop_assert_eq!(s.inserts - s.evictions, s.entries);
        }
    }
}

#[test]
fn concurrent_readers_and_writers_keep_the_budget() {
    // A stress test beside the loom models: 4 threads insert and pin random keys.
    let c: ChunkCache<u32, Vec<u8>> = ChunkCache::new(1000, Policy::Clock);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let c = c.clone();
            s.spawn(move || {
                let mut rng = splitmix::SplitMix64::new(t);
                let mut pins = Vec::new();
                for _ in 0..5000 {
                    let k = rng.below(64) as u32;
                    match c.get(&k) {
                        Some(p) => {
                            assert!(p.ready().unwrap().iter().all(|&b| b == k as u8));
                            pins.push(p);
                        }
                        None => {
                            c.insert(k, vec![k as u8; 50], 50);
                        }
                    }
                    if pins.len() > 3 {
                        pins.remove(0);
                    }
                    assert!(c.stats().bytes <= 1000);
                }
            });
        }
    });
    let s = c.stats();
    assert_eq!((s.pinned_bytes, s.inserts - s.evictions), (0, s.entries));
    assert!(s.hits > 0 && s.evictions > 0, "{s:?}");
}

#[test]
fn a_claim_makes_later_lookups_wait_for_its_value_and_decode_once() {
    let c: ChunkCache<u32, Vec<u8>> = ChunkCache::new(100, Policy::Clock);
    let Lookup::Claimed(claim) = c.lookup_or_claim(&1, 10) else { panic!("a miss claims") };
    assert_eq!(c.stats().bytes, 10, "room is reserved at the claim");
    let Lookup::Hit(waiter) = c.lookup_or_claim(&1, 10) else { panic!("a claimed key is a hit") };
    assert!(waiter.ready().is_none());
    assert_eq!(c.stats().joined, 1);
    std::thread::scope(|s| {
        let t = s.spawn(|| waiter.wait());
        claim.fill(vec![3; 10]);
        assert_eq!(t.join().unwrap().as_deref(), Some(&vec![3; 10]));
    });
    drop(waiter);
    let Lookup::Hit(p) = c.lookup_or_claim(&1, 10) else { panic!("filled") };
    assert_eq!(p.ready(), Some(&vec![3; 10]));
    drop(p);
    let s = c.stats();
    assert_eq!((s.inserts, s.entries, s.bytes, s.pinned_bytes, s.abandoned), (1, 1, 10, 0, 0));
}

#[test]
fn an_abandoned_claim_wakes_its_waiters_with_nothing_and_the_key_can_be_claimed_again() {
    for policy in [Policy::Lru, Policy::Clock] {
        let c: ChunkCache<u32, Vec<u8>> = ChunkCache::new(20, policy);
        let Lookup::Claimed(claim) = c.lookup_or_claim(&1, 10) else { panic!() };
        let Lookup::Hit(waiter) = c.lookup_or_claim(&1, 10) else { panic!() };
        std::thread::scope(|s| {
            let t = s.spawn(|| waiter.wait());
            drop(claim);
            assert_eq!(t.join().unwrap(), None);
        });
        let s = c.stats();
        assert_eq!((s.bytes, s.entries, s.abandoned), (0, 0, 1), "{policy:?}");
        assert!(!c.contains(&1));
        // The waiter's pin still names the abandoned slot: a new claim gets another.
        let Lookup::Claimed(again) = c.lookup_or_claim(&1, 10) else { panic!("claim again") };
        drop(waiter);
        again.fill(vec![1; 10]);
        assert!(c.contains(&1));
        assert_eq!(c.stats().pinned_bytes, 0);
        // Pending entries are never evicted: with one claim held, the other 10 bytes are
        // all an insert can get.
        let Lookup::Claimed(held) = c.lookup_or_claim(&2, 10) else { panic!() };
        assert_eq!(c.insert(3, vec![0; 10], 10), Inserted::Added, "evicts key 1, not the claim");
        assert!(!c.contains(&1) && c.contains(&2));
        assert!(matches!(c.lookup_or_claim(&4, 20), Lookup::Miss));
        held.fill(vec![2; 10]);
    }
}
