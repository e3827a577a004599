//! `Gate`: a per-sample count of outstanding fetches plus an error bit, and the pool that
//! recycles gate records.
//!
//! A fetch a sample waits on is represented by a [`Ticket`] registered on the cache entry.
//! A ticket holds a reference to its gate, so a gate record cannot return to the pool while
//! any waiter is registered on it: the C predecessor reused a gate that a waiter still held
//! and aliased two samples (lesson 2). A ticket dropped without being resolved fails its
//! gate, so an entry evicted with waiters fails them instead of leaving them waiting.

use std::fmt;

use crate::sync::{Arc, Condvar, Mutex, lock, wait};

/// Called (outside every lock) each time some gate's pending count reaches zero.
pub type SettleHook = Box<dyn Fn() + Send + Sync>;

/// A fixed set of gate records handed out and taken back.
pub struct GatePool {
    shared: Arc<PoolShared>,
}

struct PoolShared {
    records: Vec<Record>,
    free: Mutex<Vec<u32>>,
    on_settle: Option<SettleHook>,
}

struct Record {
    state: Mutex<RecordState>,
    settled: Condvar,
}

#[derive(Debug, Default)]
struct RecordState {
    generation: u64,
    refs: u32,
    pending: u32,
    error: bool,
}

/// A snapshot of a gate: fetches still outstanding and whether any failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateStatus {
    pub pending: u32,
    pub error: bool,
}

/// A reference to one gate record; clones share it. The record returns to its pool when
/// the last reference (including tickets) is dropped and nothing is pending.
pub struct Gate {
    shared: Arc<PoolShared>,
    index: u32,
    generation: u64,
}

/// One outstanding fetch a gate waits for. Resolve it with [`Ticket::succeed`] or
/// [`Ticket::fail`]; dropping it unresolved counts as a failure.
pub struct Ticket {
    gate: Gate,
    ok: bool,
}

impl fmt::Debug for GatePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatePool")
            .field("capacity", &self.capacity())
            .field("free", &self.free_count())
            .finish()
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("index", &self.index)
            .field("generation", &self.generation)
            .field("status", &self.status())
            .finish()
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket").field("gate", &self.gate.index).finish()
    }
}

impl GatePool {
    /// A pool of `capacity` gate records.
    pub fn new(capacity: u32) -> Self {
        Self::build(capacity, None)
    }

    /// A pool whose `hook` runs whenever any of its gates settles (pending reaches zero);
    /// the prefetcher uses it to wake its driver instead of polling.
    pub fn with_settle_hook(capacity: u32, hook: SettleHook) -> Self {
        Self::build(capacity, Some(hook))
    }

    fn build(capacity: u32, on_settle: Option<SettleHook>) -> Self {
        let records = (0..capacity)
            .map(|_| Record { state: Mutex::new(RecordState::default()), settled: Condvar::new() })
            .collect();
        // Reversed so that `pop` hands out index 0 first (easier to read in tests).
        let free = Mutex::new((0..capacity).rev().collect());
        Self { shared: Arc::new(PoolShared { records, free, on_settle }) }
    }

    /// Takes a free gate record, or `None` when every record is referenced or pending.
    pub fn acquire(&self) -> Option<Gate> {
        let index = lock(&self.shared.free).pop()?;
        let rec = self.shared.record(index);
        let mut st = lock(&rec.state);
        debug_assert!(st.refs == 0 && st.pending == 0 && !st.error);
        st.refs = 1;
        let generation = st.generation;
        drop(st);
        Some(Gate { shared: Arc::clone(&self.shared), index, generation })
    }

    /// Number of records.
    pub fn capacity(&self) -> usize {
        self.shared.records.len()
    }

    /// Number of records free to acquire.
    pub fn free_count(&self) -> usize {
        lock(&self.shared.free).len()
    }
}

impl PoolShared {
    fn record(&self, index: u32) -> &Record {
        // Indices come only from this pool's own free list, which holds 0..capacity.
        &self.records[index as usize]
    }
}

impl Gate {
    /// Registers one more outstanding fetch; the returned ticket settles it.
    pub fn ticket(&self) -> Ticket {
        let mut st = lock(&self.shared.record(self.index).state);
        st.pending += 1;
        st.refs += 1;
        drop(st);
        Ticket {
            gate: Gate {
                shared: Arc::clone(&self.shared),
                index: self.index,
                generation: self.generation,
            },
            ok: false,
        }
    }

    /// Pending count and error bit now.
    pub fn status(&self) -> GateStatus {
        let st = lock(&self.shared.record(self.index).state);
        GateStatus { pending: st.pending, error: st.error }
    }

    /// Blocks until nothing is pending, then returns the status.
    pub fn wait(&self) -> GateStatus {
        let rec = self.shared.record(self.index);
        let mut st = lock(&rec.state);
        while st.pending > 0 {
            st = wait(&rec.settled, st);
        }
        GateStatus { pending: 0, error: st.error }
    }

    /// Which record this gate is (for tests and diagnostics).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The record's generation when this gate was acquired; it changes on every recycle.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl Clone for Gate {
    fn clone(&self) -> Self {
        lock(&self.shared.record(self.index).state).refs += 1;
        Gate { shared: Arc::clone(&self.shared), index: self.index, generation: self.generation }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.record(self.index).state);
        debug_assert_eq!(st.generation, self.generation, "gate used after recycle");
        st.refs = st.refs.saturating_sub(1);
        // A record is recycled only when nothing references it and nothing is pending on
        // it. Tickets hold a reference, so `pending > 0` implies `refs > 0`; both are
        // checked anyway so that a future path adding pending without a ticket stays safe.
        let recycle = st.refs == 0 && st.pending == 0;
        if recycle {
            st.generation = st.generation.wrapping_add(1);
            st.error = false;
        }
        drop(st);
        if recycle {
            lock(&self.shared.free).push(self.index);
        }
    }
}

impl Ticket {
    /// The fetch succeeded.
    pub fn succeed(mut self) {
        self.ok = true;
    }

    /// The fetch failed: sets the gate's error bit.
    pub fn fail(self) {}

    /// The gate this ticket settles.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let rec = self.gate.shared.record(self.gate.index);
        let mut st = lock(&rec.state);
        st.pending = st.pending.saturating_sub(1);
        if !self.ok {
            st.error = true;
        }
        let settled = st.pending == 0;
        if settled {
            rec.settled.notify_all();
        }
        drop(st);
        if settled && let Some(hook) = &self.gate.shared.on_settle {
            hook();
        }
        // `self.gate` drops after this, releasing the ticket's reference.
    }
}

#[cfg(all(test, not(damacy_loom)))]
mod tests {
    use super::*;

    #[test]
    fn gate_counts_pending_and_error_bit() {
        let pool = GatePool::new(1);
        let g = pool.acquire().unwrap();
        let (a, b) = (g.ticket(), g.ticket());
        assert_eq!(g.status(), GateStatus { pending: 2, error: false });
        a.succeed();
        assert_eq!(g.status(), GateStatus { pending: 1, error: false });
        b.fail();
        assert_eq!(g.wait(), GateStatus { pending: 0, error: true });
    }

    #[test]
    fn dropped_ticket_fails_its_gate() {
        let pool = GatePool::new(1);
        let g = pool.acquire().unwrap();
        drop(g.ticket());
        assert_eq!(g.status(), GateStatus { pending: 0, error: true });
    }

    /// Lesson 2: a gate whose sample let go is not reused while a waiter still holds it.
    #[test]
    fn gate_not_recycled_while_a_waiter_is_registered() {
        let pool = GatePool::new(1);
        let g = pool.acquire().unwrap();
        let (index, generation) = (g.index(), g.generation());
        let t = g.ticket();
        drop(g);
        assert_eq!(pool.free_count(), 0);
        assert!(pool.acquire().is_none(), "record handed out while a ticket references it");
        t.fail();
        assert_eq!(pool.free_count(), 1);
        let g2 = pool.acquire().unwrap();
        assert_eq!(g2.index(), index);
        assert_eq!(g2.generation(), generation + 1);
        // The failure of the old sample does not leak into the new one.
        assert_eq!(g2.status(), GateStatus { pending: 0, error: false });
    }

    #[test]
    fn settle_hook_runs_once_per_settle() {
        let count = Arc::new(Mutex::new(0u32));
        let c2 = Arc::clone(&count);
        let pool = GatePool::with_settle_hook(1, Box::new(move || *lock(&c2) += 1));
        let g = pool.acquire().unwrap();
        let (a, b) = (g.ticket(), g.ticket());
        a.succeed();
        assert_eq!(*lock(&count), 0);
        b.succeed();
        assert_eq!(*lock(&count), 1);
    }

    #[test]
    fn wait_blocks_until_another_thread_settles() {
        let pool = GatePool::new(1);
        let g = pool.acquire().unwrap();
        let t = g.ticket();
        let h = crate::sync::thread::spawn(move || t.succeed());
        assert_eq!(g.wait(), GateStatus { pending: 0, error: false });
        h.join().unwrap();
    }
}
