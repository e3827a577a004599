//! Deterministic tests of the slot cache, one per lesson, and a proptest state machine
//! against a simple model.

use super::*;
use crate::gate::{GatePool, GateStatus};

type Cache = SlotCache<u32, String, &'static str>;

fn ready(c: &Cache, key: u32, owner: u64) -> Handle {
    let r = c.request(key, owner).unwrap();
    assert!(r.must_fetch);
    assert_eq!(c.complete(r.handle, Ok(format!("v{key}"))), Completion::Stored);
    r.handle
}

/// Lesson 1: a handle survives the eviction of a sibling entry.
#[test]
fn handle_survives_a_siblings_eviction() {
    let c = Cache::new(3);
    let a = ready(&c, 1, 0);
    let b = ready(&c, 2, 0);
    let d = ready(&c, 3, 5);
    c.advance_watermark(1);
    // `a` is the least recently used unpinned entry; touch it so `b` goes instead.
    assert_eq!(c.request(1, 0).unwrap().handle, a);
    let e = c.request(4, 5).unwrap();
    assert!(e.must_fetch);
    assert_eq!(c.state(b), State::Stale);
    assert_eq!(&*c.get(a).unwrap(), "v1");
    assert_eq!(&*c.get(d).unwrap(), "v3");
    assert_eq!(e.handle.slot, b.slot, "the freed slot is reused");
    assert_ne!(e.handle.generation, b.generation);
}

/// A stale handle reads `Stale`, never the new occupant's `Pending` or value.
#[test]
fn stale_handle_reads_stale_not_the_new_occupant() {
    let c = Cache::new(1);
    let a = ready(&c, 1, 0);
    c.advance_watermark(1);
    let b = c.request(2, 1).unwrap().handle;
    assert_eq!(a.slot, b.slot);
    assert_eq!(c.state(a), State::Stale);
    assert_eq!(c.state(b), State::Pending);
    assert!(c.get(a).is_none());
    assert_eq!(c.complete(b, Ok("v2".into())), Completion::Stored);
    assert!(c.get(a).is_none());
    assert_eq!(c.get_arc(b).as_deref().map(String::as_str), Some("v2"));
}

/// Lesson 4: a saturated cache answers `Again` and recovers once the watermark moves.
#[test]
fn saturated_cache_returns_again_and_recovers_after_the_watermark_moves() {
    let c = Cache::new(2);
    ready(&c, 1, 3);
    ready(&c, 2, 4);
    assert_eq!(c.request(3, 5), Err(Again { capacity: 2 }));
    c.advance_watermark(4); // unpins owner 3 only
    let r = c.request(3, 5).unwrap();
    assert!(r.must_fetch);
    assert_eq!(c.request(9, 5), Err(Again { capacity: 2 }));
    assert_eq!(c.stats().again, 2);
    assert_eq!(c.stats().evictions, 1);
}

/// A pending entry is never unpinned, whatever the watermark.
#[test]
fn pending_entry_stays_pinned_past_the_watermark() {
    let c = Cache::new(1);
    let r = c.request(1, 0).unwrap();
    c.advance_watermark(100);
    assert_eq!(c.is_pinned(r.handle), Some(true));
    assert_eq!(c.request(2, 100), Err(Again { capacity: 1 }));
    c.complete(r.handle, Ok("x".into()));
    assert_eq!(c.is_pinned(r.handle), Some(false));
    assert!(c.request(2, 100).is_ok());
}

/// The newest owner decides: a later request re-pins an entry an older owner released.
#[test]
fn newer_owner_repins_an_entry() {
    let c = Cache::new(1);
    let a = ready(&c, 1, 0);
    c.advance_watermark(1);
    assert_eq!(c.is_pinned(a), Some(false));
    assert_eq!(c.request(1, 7).unwrap().handle, a);
    assert_eq!(c.is_pinned(a), Some(true));
    assert_eq!(c.request(2, 7), Err(Again { capacity: 1 }));
}

/// A guard pins its entry, so it cannot outlive it.
#[test]
fn guard_pins_its_entry() {
    let c = Cache::new(1);
    let a = ready(&c, 1, 0);
    c.advance_watermark(1);
    let g = c.get(a).unwrap();
    assert_eq!(c.request(2, 1), Err(Again { capacity: 1 }));
    assert_eq!(c.evict(a), Evict::Busy);
    assert_eq!(&*g, "v1");
    drop(g);
    assert!(c.request(2, 1).unwrap().must_fetch);
    assert_eq!(c.state(a), State::Stale);
}

/// Single flight: many requests for one key cause one fetch; hits and misses are counted.
#[test]
fn dedup_across_owners_one_fetch_per_key() {
    let c = Cache::new(4);
    let first = c.request(7, 0).unwrap();
    let fetches = (1..10).map(|o| c.request(7, o).unwrap()).filter(|r| r.must_fetch).count();
    assert!(first.must_fetch);
    assert_eq!(fetches, 0);
    assert_eq!(c.stats(), CacheStats { hits: 9, misses: 1, ..CacheStats::default() });
}

/// Lesson 5: a failed fetch reaches the waiting gates and the handle's state.
#[test]
fn fetch_error_sets_the_gates_error_bit() {
    let c = Cache::new(2);
    let pool = GatePool::new(2);
    let (g1, g2) = (pool.acquire().unwrap(), pool.acquire().unwrap());
    let r = c.request(1, 0).unwrap();
    assert_eq!(c.wait_on(r.handle, &g1), WaitOn::Registered);
    assert_eq!(c.wait_on(r.handle, &g2), WaitOn::Registered);
    assert_eq!(g1.status(), GateStatus { pending: 1, error: false });
    c.complete(r.handle, Err("boom"));
    assert_eq!(g1.status(), GateStatus { pending: 0, error: true });
    assert_eq!(g2.status(), GateStatus { pending: 0, error: true });
    assert_eq!(c.state(r.handle), State::Error("boom"));
    // Waiting on a terminal entry registers nothing and reports it.
    assert_eq!(c.wait_on(r.handle, &g1), WaitOn::Error("boom"));
    assert_eq!(g1.status().pending, 0);
}

/// Evicting a pending entry fails its waiters; the late completion is dropped as stale.
#[test]
fn evicting_an_entry_with_waiters_fails_their_gates() {
    let c = Cache::new(1);
    let pool = GatePool::new(1);
    let g = pool.acquire().unwrap();
    let r = c.request(1, 0).unwrap();
    c.wait_on(r.handle, &g);
    assert_eq!(c.evict(r.handle), Evict::Evicted { failed_waiters: 1 });
    assert_eq!(g.wait(), GateStatus { pending: 0, error: true });
    assert_eq!(c.complete(r.handle, Ok("late".into())), Completion::Stale);
    assert_eq!(c.stats().stale_completions, 1);
    assert!(c.is_empty());
}

/// Lesson 2 through the cache: a sample's gate is not recycled while its ticket sits on a
/// pending entry, and the recycled gate starts clean.
#[test]
fn gate_not_recycled_while_a_cache_waiter_is_registered() {
    let c = Cache::new(1);
    let pool = GatePool::new(1);
    let g = pool.acquire().unwrap();
    let r = c.request(1, 0).unwrap();
    c.wait_on(r.handle, &g);
    drop(g);
    assert!(pool.acquire().is_none());
    c.complete(r.handle, Err("late failure"));
    let g2 = pool.acquire().unwrap();
    assert_eq!(g2.status(), GateStatus { pending: 0, error: false });
}

#[test]
fn completing_twice_keeps_the_first_result() {
    let c = Cache::new(1);
    let a = ready(&c, 1, 0);
    assert_eq!(c.complete(a, Ok("second".into())), Completion::NotPending);
    assert_eq!(&*c.get(a).unwrap(), "v1");
}

#[test]
fn forged_handles_are_stale() {
    let c = Cache::new(1);
    assert_eq!(c.state(Handle { slot: 5, generation: 0 }), State::Stale);
    assert_eq!(c.state(Handle { slot: 0, generation: 0 }), State::Stale);
    assert_eq!(c.complete(Handle { slot: 9, generation: 0 }, Ok(String::new())), Completion::Stale);
}

mod model {
    //! proptest state machine: random request / complete / advance / evict / get sequences
    //! against a model that keeps entries in a plain vector with last-use ticks.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Request { key: u32, owner_step: u64 },
        Complete { pick: usize, ok: bool },
        Advance { step: u64 },
        Evict { pick: usize },
        Get { pick: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..10, 0u64..3).prop_map(|(key, owner_step)| Op::Request { key, owner_step }),
            3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, ok)| Op::Complete { pick, ok }),
            2 => (0u64..3).prop_map(|step| Op::Advance { step }),
            1 => any::<usize>().prop_map(|pick| Op::Evict { pick }),
            2 => any::<usize>().prop_map(|pick| Op::Get { pick }),
        ]
    }

    #[derive(Debug, Clone, PartialEq)]
    enum MState {
        Pending,
        Ready(String),
        Error(&'static str),
    }

    #[derive(Debug)]
    struct MEntry {
        key: u32,
        handle: Handle,
        state: MState,
        owner: u64,
        tick: u64,
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256),
            ..ProptestConfig::default()
        })]

        #[test]
        fn slot_cache_matches_model(cap in 1usize..5, ops in prop::collection::vec(op(), 1..80)) {
            let c = Cache::new(cap);
            let mut live: Vec<MEntry> = Vec::new();
            let mut dead: Vec<Handle> = Vec::new();
            let (mut owner, mut wm, mut tick) = (0u64, 0u64, 0u64);
            let (mut hits, mut misses, mut evictions, mut again) = (0u64, 0u64, 0u64, 0u64);
            let mut all: Vec<Handle> = Vec::new();
            for op in ops {
                tick += 1;
                match op {
                    Op::Request { key, owner_step } => {
                        owner += owner_step;
                        let got = c.request(key, owner);
                        if let Some(e) = live.iter_mut().find(|e| e.key == key) {
                            let r = got.unwrap();
                            prop_assert_eq!(r, Requested { handle: e.handle, must_fetch: false });
                            e.owner = e.owner.max(owner);
                            e.tick = tick;
                            hits += 1;
                        } else {
                            let pinned = |e: &MEntry| e.state == MState::Pending || e.owner >= wm;
                            if live.len() < cap {
                                let r = got.unwrap();
                                prop_assert!(r.must_fetch);
                                live.push(MEntry { key, handle: r.handle, state: MState::Pending, owner, tick });
                                all.push(r.handle);
                                misses += 1;
                            } else if let Some(i) = live.iter().enumerate()
                                .filter(|(_, e)| !pinned(e)).min_by_key(|(_, e)| e.tick).map(|(i, _)| i) {
                                let victim = live.swap_remove(i);
                                prop_assert!(!pinned(&victim));
                                let r = got.unwrap();
                                prop_assert!(r.must_fetch);
                                prop_assert_eq!(r.handle.slot, victim.handle.slot);
                                dead.push(victim.handle);
                                live.push(MEntry { key, handle: r.handle, state: MState::Pending, owner, tick });
                                all.push(r.handle);
                                misses += 1;
                                evictions += 1;
                            } else {
                                prop_assert_eq!(got, Err(Again { capacity: cap }));
                                again += 1;
                            }
                        }
                    }
                    Op::Complete { pick, ok } => {
                        if all.is_empty() { continue; }
                        let h = all[pick % all.len()];
                        let value = format!("v{tick}");
                        let got = c.complete(h, if ok { Ok(value.clone()) } else { Err("e") });
                        match live.iter_mut().find(|e| e.handle == h) {
                            None => prop_assert_eq!(got, Completion::Stale),
                            Some(e) if e.state != MState::Pending => prop_assert_eq!(got, Completion::NotPending),
                            Some(e) => {
                                prop_assert_eq!(got, Completion::Stored);
                                e.state = if ok { MState::Ready(value) } else { MState::Error("e") };
                            }
                        }
                    }
                    Op::Advance { step } => {
                        wm += step;
                        c.advance_watermark(wm);
                    }
                    Op::Evict { pick } => {
                        if all.is_empty() { continue; }
                        let h = all[pick % all.len()];
                        let got = c.evict(h);
                        if let Some(i) = live.iter().position(|e| e.handle == h) {
                            prop_assert_eq!(got, Evict::Evicted { failed_waiters: 0 });
                            dead.push(live.swap_remove(i).handle);
                            evictions += 1;
                        } else {
                            prop_assert_eq!(got, Evict::Stale);
                        }
                    }
                    Op::Get { pick } => {
                        if all.is_empty() { continue; }
                        let h = all[pick % all.len()];
                        let got = c.get(h).map(|g| g.clone());
                        let want = live.iter().find(|e| e.handle == h).and_then(|e| match &e.state {
                            MState::Ready(v) => Some(v.clone()),
                            _ => None,
                        });
                        prop_assert_eq!(got, want);
                    }
                }
                // Invariants after every step.
                for e in &live {
                    let want = match &e.state {
                        MState::Pending => State::Pending,
                        MState::Ready(_) => State::Ready,
                        MState::Error(x) => State::Error(*x),
                    };
                    prop_assert_eq!(c.state(e.handle), want);
                }
                for h in &dead {
                    prop_assert_eq!(c.state(*h), State::Stale);
                }
                // No two live handles share a slot and generation.
                for (i, a) in live.iter().enumerate() {
                    for b in &live[i + 1..] {
                        prop_assert_ne!(a.handle, b.handle);
                    }
                }
                prop_assert_eq!(c.len(), live.len());
                let s = c.stats();
                prop_assert_eq!((s.hits, s.misses, s.evictions, s.again), (hits, misses, evictions, again));
            }
        }
    }
}
