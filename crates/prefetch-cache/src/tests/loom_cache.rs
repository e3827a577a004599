//! Loom models: handle stability under concurrent eviction, completion racing eviction,
//! gate recycle racing a late completion, single flight under two concurrent requesters.
//! Capacities are one or two slots so that the state space stays small.

use crate::gate::{GatePool, GateStatus};
use crate::slot_cache::{Completion, Evict, SlotCache, State, WaitOn};
use crate::sync::{Arc, thread};

type Cache = SlotCache<u32, u32, u8>;

fn ready(c: &Cache, key: u32, owner: u64) -> crate::Handle {
    let r = c.request(key, owner).unwrap();
    c.complete(r.handle, Ok(key * 10));
    r.handle
}

/// A reader holding handles to `a` (pinned by its owner) and `b` (unpinned) while another
/// thread installs `c`, evicting `b` into the same slot: `a` always reads its own value;
/// `b` reads its own value or `Stale`, never `c`'s state. A guard on `b` pins it, so the
/// installer may instead be told `Again`, and then `b` survives.
#[test]
fn loom_handle_stable_under_concurrent_eviction() {
    loom::model(|| {
        let cache = Arc::new(Cache::new(2));
        let a = ready(&cache, 1, 5);
        let b = ready(&cache, 2, 0);
        cache.advance_watermark(1);
        let c2 = Arc::clone(&cache);
        let evictor = thread::spawn(move || {
            let r = c2.request(3, 6).ok()?;
            assert!(r.must_fetch);
            assert_eq!(r.handle.slot, b.slot, "only the unpinned sibling may go");
            c2.complete(r.handle, Ok(30));
            Some(r.handle)
        });
        assert_eq!(cache.get(a).map(|g| *g), Some(10));
        match cache.get(b) {
            Some(g) => assert_eq!(*g, 20),
            None => assert_eq!(cache.state(b), State::Stale),
        }
        assert!(matches!(cache.state(b), State::Ready | State::Stale));
        match evictor.join().unwrap() {
            Some(c) => {
                assert_eq!(cache.state(b), State::Stale);
                assert_eq!(cache.get(c).map(|g| *g), Some(30));
            }
            None => assert_eq!(cache.get(b).map(|g| *g), Some(20)),
        }
        assert_eq!(cache.get(a).map(|g| *g), Some(10));
    });
}

/// A completion racing an explicit eviction of its pending entry: whichever wins, the
/// waiting gate settles (nobody waits forever), the error bit is set exactly when the
/// eviction came first, and the entry ends stale.
#[test]
fn loom_completion_racing_eviction() {
    loom::model(|| {
        let cache = Arc::new(Cache::new(1));
        let pool = GatePool::new(1);
        let gate = pool.acquire().unwrap();
        let r = cache.request(1, 0).unwrap();
        assert_eq!(cache.wait_on(r.handle, &gate), WaitOn::Registered);
        let c2 = Arc::clone(&cache);
        let completer = thread::spawn(move || c2.complete(r.handle, Ok(10)));
        let evicted = cache.evict(r.handle);
        let completion = completer.join().unwrap();
        let status = gate.wait();
        match (evicted, completion) {
            (Evict::Evicted { failed_waiters: 1 }, Completion::Stale) => assert!(status.error),
            (Evict::Evicted { failed_waiters: 0 }, Completion::Stored) => assert!(!status.error),
            other => panic!("impossible interleaving outcome {other:?}"),
        }
        assert_eq!(cache.state(r.handle), State::Stale);
        assert!(cache.is_empty());
    });
}

/// A sample lets go of its gate while a late completion still holds a ticket on it: the
/// record is recycled only after the completion, and whoever acquires it next sees a clean
/// gate of a new generation.
#[test]
fn loom_gate_recycle_racing_late_completion() {
    loom::model(|| {
        let cache = Arc::new(Cache::new(1));
        let pool = Arc::new(GatePool::new(1));
        let gate = pool.acquire().unwrap();
        let first_generation = gate.generation();
        let r = cache.request(1, 0).unwrap();
        cache.wait_on(r.handle, &gate);
        let c2 = Arc::clone(&cache);
        let completer = thread::spawn(move || {
            c2.complete(r.handle, Err(7));
        });
        drop(gate);
        let mut recycles = 1;
        if let Some(g) = pool.acquire() {
            // Only possible once the completion released the ticket.
            assert_eq!(g.generation(), first_generation + 1);
            assert_eq!(g.status(), GateStatus { pending: 0, error: false });
            recycles += 1;
        }
        completer.join().unwrap();
        let g = pool.acquire().unwrap();
        assert_eq!(g.generation(), first_generation + recycles);
        assert_eq!(g.status(), GateStatus { pending: 0, error: false });
    });
}

/// Two requesters of one key: exactly one fetches, both hold the same handle, and the
/// counters show one miss and one hit.
#[test]
fn loom_single_flight_two_requesters() {
    loom::model(|| {
        let cache = Arc::new(Cache::new(2));
        let c2 = Arc::clone(&cache);
        let other = thread::spawn(move || c2.request(5, 1).unwrap());
        let mine = cache.request(5, 2).unwrap();
        let theirs = other.join().unwrap();
        assert_eq!(mine.handle, theirs.handle);
        assert!(mine.must_fetch ^ theirs.must_fetch);
        let s = cache.stats();
        assert_eq!((s.hits, s.misses), (1, 1));
        assert_eq!(cache.len(), 1);
    });
}
