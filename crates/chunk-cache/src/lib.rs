//! A cache of decoded chunks bounded by bytes, whose entries cannot be evicted while a
//! batch in flight reads them.
//!
//! - **Keys** are the caller's: the engines key a chunk by its *stored identity* (the
//!   object it lives in, its offset and length there, as the metadata damacy holds says),
//!   so a chunk rewritten with a new index entry is a different key and misses.
//! - **Pins**: [`ChunkCache::get`] returns a [`Pin`]; while any pin of an entry lives,
//!   eviction skips the entry, so the bytes a batch reads stay in place until the batch
//!   drops its pins (the CUDA engine drops them only after the batch's assemble has
//!   completed on the device). Memory therefore never exceeds the budget: an insert that
//!   finds only pinned entries to evict is refused ([`Inserted::NoRoom`]), not forced.
//! - **Single flight**: [`ChunkCache::lookup_or_claim`] reserves room for a missing key
//!   and returns a [`Claim`]: the caller decodes the chunk and [`Claim::fill`]s it, and
//!   until then every later lookup of the key gets a pending [`Pin`] whose
//!   [`Pin::wait`] blocks until the value is there (or the claim was dropped unfilled:
//!   `None`). So batches in flight decode a chunk once, not once each. A caller must only
//!   wait on a claim that an earlier, already running piece of work holds (the engines
//!   queue work in batch order, so the claim's holder never waits behind its waiter).
//! - **Eviction** by [`Policy::Lru`] (least recently used) or [`Policy::Clock`] (second
//!   chance: an entry used since the hand last passed survives one more sweep). Both are
//!   O(1) amortized per operation apart from skipping pinned entries.
//!
//! Concurrency: one mutex guards the table; values are shared as `Arc`s so readers copy
//! out of a pinned value without the lock. Values evicted are dropped after the lock is
//! released. `cfg(damacy_loom)` swaps in loom's primitives (see the loom models below).

pub mod slab;
mod sync;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;

use sync::{Arc, Condvar, Mutex, lock, wait};

/// Which unpinned entry goes first when room is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// The least recently inserted or hit entry.
    Lru,
    /// CLOCK (second chance): the hand sweeps the entries; one hit since the last sweep
    /// spares an entry once.
    #[default]
    Clock,
}

/// Counters of a cache since it was made (`bytes` and `entries` are current).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
    /// Inserts refused because every entry that could make room was pinned, or because
    /// the value alone is larger than the cache.
    pub rejected: u64,
    /// Bytes of the entries held now.
    pub bytes: u64,
    pub entries: u64,
    /// Bytes of the entries pinned now.
    pub pinned_bytes: u64,
    /// Lookups that found the key being decoded (a claim not filled yet) and waited.
    pub joined: u64,
    /// Claims dropped unfilled (their decode failed); their waiters got `None`.
    pub abandoned: u64,
}

impl CacheStats {
    /// Hits over lookups (0 before the first lookup).
    pub fn hit_rate(&self) -> f64 {
        let n = self.hits + self.misses;
        if n == 0 { 0.0 } else { self.hits as f64 / n as f64 }
    }
}

/// The outcome of [`ChunkCache::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Added,
    /// The key was cached already (by a concurrent batch); the new value was dropped.
    Present,
    /// No room: every entry that could have been evicted is pinned.
    NoRoom,
    /// The value is larger than the whole cache.
    TooLarge,
}

/// A byte-bounded cache; clones share it.
pub struct ChunkCache<K, V> {
    shared: Arc<Shared<K, V>>,
}

impl<K, V> Clone for ChunkCache<K, V> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

struct Shared<K, V> {
    capacity: u64,
    policy: Policy,
    state: Mutex<State<K, V>>,
    /// Rung when a claim is filled or abandoned.
    settled: Condvar,
}

/// What a slot holds.
enum Value<V> {
    Ready(std::sync::Arc<V>),
    /// Claimed, being decoded; the claim counts as a pin.
    Pending,
    /// The claim was dropped unfilled: out of the map, kept only while pins remain.
    Abandoned,
}

struct Slot<K, V> {
    key: K,
    value: Value<V>,
    bytes: u64,
    pins: u32,
    /// CLOCK: hit since the hand last passed.
    referenced: bool,
    /// LRU: this entry's key in `State::lru`.
    last_use: u64,
    /// Tells a pin of this slot from a pin of an earlier occupant.
    generation: u64,
}

struct State<K, V> {
    map: HashMap<K, usize>,
    slots: Vec<Option<Slot<K, V>>>,
    free: Vec<usize>,
    hand: usize,
    tick: u64,
    lru: BTreeMap<u64, usize>,
    generation: u64,
    stats: CacheStats,
}

impl<K: Hash + Eq + Clone, V> ChunkCache<K, V> {
    /// A cache of at most `capacity` bytes of values.
    pub fn new(capacity: u64, policy: Policy) -> Self {
        Self {
            shared: Arc::new(Shared {
                capacity,
                policy,
                state: Mutex::new(State {
                    map: HashMap::new(),
                    slots: Vec::new(),
                    free: Vec::new(),
                    hand: 0,
                    tick: 0,
                    lru: BTreeMap::new(),
                    generation: 0,
                    stats: CacheStats::default(),
                }),
                settled: Condvar::new(),
            }),
        }
    }

    /// The byte budget.
    pub fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// The eviction policy.
    pub fn policy(&self) -> Policy {
        self.shared.policy
    }

    /// The cached value of `key`, pinned until the returned [`Pin`] drops; counts a hit
    /// or a miss.
    pub fn get(&self, key: &K) -> Option<Pin<K, V>> {
        let mut st = lock(&self.shared.state);
        self.get_in(&mut st, key)
    }

    /// [`get`](Self::get) under the caller's hold of the lock.
    fn get_in(&self, st: &mut State<K, V>, key: &K) -> Option<Pin<K, V>> {
        let Some(&i) = st.map.get(key) else {
            st.stats.misses += 1;
            return None;
        };
        st.stats.hits += 1;
        st.tick += 1;
        let tick = st.tick;
        let State { slots, lru, stats, .. } = st;
        let slot = slots[i].as_mut()?;
        if slot.pins == 0 {
            stats.pinned_bytes += slot.bytes;
        }
        slot.pins += 1;
        slot.referenced = true;
        // Only LRU eviction reads the use order; CLOCK needs the reference bit alone
        // (a hit is on the preparers' path, once per cached chunk of a batch).
        if self.shared.policy == Policy::Lru {
            lru.remove(&slot.last_use);
            slot.last_use = tick;
            lru.insert(tick, i);
        }
        let value = match &slot.value {
            Value::Ready(v) => Some(std::sync::Arc::clone(v)),
            Value::Pending | Value::Abandoned => {
                stats.joined += 1;
                None
            }
        };
        Some(Pin {
            shared: Arc::clone(&self.shared),
            slot: i,
            generation: slot.generation,
            key: slot.key.clone(),
            value,
            released: false,
        })
    }

    /// A claim on missing `key` with `bytes` reserved (evicting unpinned entries by the
    /// policy into `evicted`, to be freed outside the lock), under the caller's hold of
    /// the lock; `Miss` when no room can be made.
    fn claim_in(
        &self,
        st: &mut State<K, V>,
        key: &K,
        bytes: u64,
        evicted: &mut Vec<std::sync::Arc<V>>,
    ) -> Lookup<K, V> {
        if bytes > self.shared.capacity
            || !st.make_room(bytes, self.shared.capacity, self.shared.policy, evicted)
        {
            st.stats.rejected += 1;
            return Lookup::Miss;
        }
        let (slot, generation) = st.add(key.clone(), Value::Pending, bytes);
        // The claim pins the entry until it is filled or abandoned.
        if let Some(s) = st.slots[slot].as_mut() {
            s.pins = 1;
        }
        st.stats.pinned_bytes += bytes;
        Lookup::Claimed(Claim { shared: Arc::clone(&self.shared), slot, generation, filled: false })
    }

    /// Whether `key` is being decoded under a claim (its value pending).
    fn pending_in(st: &State<K, V>, key: &K) -> bool {
        st.map
            .get(key)
            .and_then(|&i| st.slots[i].as_ref())
            .is_some_and(|s| matches!(s.value, Value::Pending))
    }

    /// [`get`](Self::get), and on a miss a claim on the key with `bytes` reserved (evicting
    /// unpinned entries by the policy), unless no room can be made ([`Lookup::Miss`]).
    pub fn lookup_or_claim(&self, key: &K, bytes: u64) -> Lookup<K, V> {
        self.probe().lookup_or_claim(key, bytes)
    }

    /// [`lookup_or_claim`](Self::lookup_or_claim) for a caller that never waits on another
    /// caller's claim (the CUDA engine): a key being decoded under someone else's claim is
    /// a [`Lookup::Miss`] (counted as one, not as a hit), so the caller decodes the chunk
    /// itself.
    pub fn lookup_ready_or_claim(&self, key: &K, bytes: u64) -> Lookup<K, V> {
        self.probe().lookup_ready_or_claim(key, bytes)
    }

    /// Lookups of many keys (a batch's chunks) under one hold of the lock, taken again
    /// after every [`PROBE_RELOCK`] lookups so that fills, releases and other batches'
    /// lookups get in between: a lookup then costs no lock of its own. While a [`Probe`]
    /// lives, this thread must not touch the cache otherwise (drop a pin it got through
    /// [`Probe::release`]).
    pub fn probe(&self) -> Probe<'_, K, V> {
        Probe { cache: self, guard: None, lookups: 0, evicted: Vec::new() }
    }

    /// Caches `value` (`bytes` long) under `key`, evicting unpinned entries by the policy
    /// until it fits. Never exceeds the capacity: see [`Inserted`].
    pub fn insert(&self, key: K, value: V, bytes: u64) -> Inserted {
        if bytes > self.shared.capacity {
            lock(&self.shared.state).stats.rejected += 1;
            return Inserted::TooLarge;
        }
        let mut evicted: Vec<std::sync::Arc<V>> = Vec::new();
        let outcome = {
            let mut st = lock(&self.shared.state);
            if st.map.contains_key(&key) {
                Inserted::Present
            } else {
                let (cap, policy) = (self.shared.capacity, self.shared.policy);
                if st.make_room(bytes, cap, policy, &mut evicted) {
                    st.add(key, Value::Ready(std::sync::Arc::new(value)), bytes);
                    Inserted::Added
                } else {
                    st.stats.rejected += 1;
                    Inserted::NoRoom
                }
            }
        };
        // Evicted values are freed outside the lock.
        drop(evicted);
        outcome
    }

    /// The counters now.
    pub fn stats(&self) -> CacheStats {
        lock(&self.shared.state).stats
    }

    /// Whether `key` is cached (no hit or miss counted, no pin taken).
    pub fn contains(&self, key: &K) -> bool {
        lock(&self.shared.state).map.contains_key(key)
    }
}

impl<K: Hash + Eq + Clone, V> State<K, V> {
    /// Adds an entry; returns its slot and generation.
    fn add(&mut self, key: K, value: Value<V>, bytes: u64) -> (usize, u64) {
        self.tick += 1;
        self.generation += 1;
        let slot = Slot {
            key: key.clone(),
            value,
            bytes,
            pins: 0,
            referenced: false,
            last_use: self.tick,
            generation: self.generation,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.map.insert(key, i);
        self.lru.insert(self.tick, i);
        self.stats.bytes += bytes;
        self.stats.entries += 1;
        self.stats.inserts += 1;
        (i, self.generation)
    }

    /// Evicts unpinned entries by `policy` until `bytes` more fit in `capacity`; their
    /// values go to `evicted` (to be freed outside the lock). False when every entry that
    /// could go is pinned.
    fn make_room(
        &mut self,
        bytes: u64,
        capacity: u64,
        policy: Policy,
        evicted: &mut Vec<std::sync::Arc<V>>,
    ) -> bool {
        // Every entry is pinned (claims pin theirs) or ready and evictable: when even
        // evicting every evictable one would leave too little room, refuse at once rather
        // than sweep past the pinned ones (with batches in flight pinning most of a full
        // cache, that sweep on every miss made planning slower than no cache at all).
        if self.stats.pinned_bytes.saturating_add(bytes) > capacity {
            return false;
        }
        while self.stats.bytes + bytes > capacity {
            match self.evict_one(policy) {
                Some(v) => evicted.push(v),
                None => return false,
            }
        }
        true
    }

    /// Removes one unpinned entry chosen by `policy`; `None` when every entry is pinned.
    fn evict_one(&mut self, policy: Policy) -> Option<std::sync::Arc<V>> {
        let victim = match policy {
            Policy::Lru => self.lru.values().copied().find(|&i| self.unpinned(i)),
            Policy::Clock => self.clock_victim(),
        }?;
        let slot = self.slots[victim].take()?;
        self.map.remove(&slot.key);
        self.lru.remove(&slot.last_use);
        self.free.push(victim);
        self.stats.bytes -= slot.bytes;
        self.stats.entries -= 1;
        self.stats.evictions += 1;
        match slot.value {
            Value::Ready(v) => Some(v),
            // Never chosen (pinned or out of the tables); nothing to free.
            Value::Pending | Value::Abandoned => None,
        }
    }

    fn unpinned(&self, i: usize) -> bool {
        self.slots[i].as_ref().is_some_and(|s| s.pins == 0 && matches!(s.value, Value::Ready(_)))
    }

    /// Sweeps at most twice around: the first pass may only clear reference bits.
    fn clock_victim(&mut self) -> Option<usize> {
        let n = self.slots.len();
        for _ in 0..2 * n {
            let i = self.hand;
            self.hand = (self.hand + 1) % n.max(1);
            let Some(s) = self.slots[i].as_mut() else { continue };
            if s.pins > 0 || !matches!(s.value, Value::Ready(_)) {
                continue;
            }
            if s.referenced {
                s.referenced = false;
                continue;
            }
            return Some(i);
        }
        None
    }
}

impl<K, V> State<K, V> {
    /// Drops one pin of slot `i` (generation `generation`); an abandoned slot whose last
    /// pin goes is freed.
    fn unpin(&mut self, i: usize, generation: u64) {
        let Some(Some(s)) = self.slots.get_mut(i) else { return };
        if s.generation != generation || s.pins == 0 {
            return;
        }
        s.pins -= 1;
        if s.pins > 0 {
            return;
        }
        if matches!(s.value, Value::Abandoned) {
            // Its bytes and pin were given back when it was abandoned.
            self.slots[i] = None;
            self.free.push(i);
        } else {
            self.stats.pinned_bytes -= s.bytes;
        }
    }
}

/// A pinned cached value: the entry stays cached (and its bytes in place) while this
/// lives. Dereferences to the value.
pub struct Pin<K, V> {
    shared: Arc<Shared<K, V>>,
    slot: usize,
    generation: u64,
    key: K,
    /// Set for an entry that was ready at lookup.
    value: Option<std::sync::Arc<V>>,
    /// Unpinned already, by [`Pin::release_all`].
    released: bool,
}

impl<K, V> Pin<K, V> {
    /// The value, if it was ready when looked up (no waiting).
    pub fn ready(&self) -> Option<&V> {
        self.value.as_deref()
    }

    /// The key looked up.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The value: at once for a ready entry; for one being decoded, blocks until its
    /// claim is filled (`Some`) or dropped unfilled (`None`).
    pub fn wait(&self) -> Option<std::sync::Arc<V>> {
        if let Some(v) = &self.value {
            return Some(std::sync::Arc::clone(v));
        }
        let mut st = lock(&self.shared.state);
        loop {
            let Some(Some(s)) = st.slots.get(self.slot) else { return None };
            if s.generation != self.generation {
                return None;
            }
            match &s.value {
                Value::Ready(v) => return Some(std::sync::Arc::clone(v)),
                Value::Abandoned => return None,
                Value::Pending => st = wait(&self.shared.settled, st),
            }
        }
    }
}

impl<K, V> Pin<K, V> {
    /// Drops `pins` taking each cache's lock once, where dropping them one by one takes it
    /// once per pin (a batch releases its hits so, while other threads look chunks up).
    /// The values are dropped after the lock is released.
    pub fn release_all(mut pins: Vec<Self>) {
        while let Some(first) = pins.first() {
            let shared = Arc::clone(&first.shared);
            {
                let mut st = lock(&shared.state);
                for p in pins.iter_mut().filter(|p| Arc::ptr_eq(&p.shared, &shared)) {
                    st.unpin(p.slot, p.generation);
                    p.released = true;
                }
            }
            pins.retain(|p| !p.released);
        }
    }
}

impl<K, V> Drop for Pin<K, V> {
    fn drop(&mut self) {
        if !self.released {
            lock(&self.shared.state).unpin(self.slot, self.generation);
        }
    }
}

/// Lookups a [`Probe`] makes before it lets go of the lock once.
pub const PROBE_RELOCK: u32 = 64;

/// Lookups of one caller under one hold of the cache's lock ([`ChunkCache::probe`]).
pub struct Probe<'a, K, V> {
    cache: &'a ChunkCache<K, V>,
    guard: Option<sync::MutexGuard<'a, State<K, V>>>,
    lookups: u32,
    /// Values evicted to make room, freed once the lock is let go.
    evicted: Vec<std::sync::Arc<V>>,
}

impl<K: Hash + Eq + Clone, V> Probe<'_, K, V> {
    /// Counts a use of the lock; after [`PROBE_RELOCK`] of them lets go of it once, and
    /// frees the values evicted meanwhile outside it.
    fn tick(&mut self) {
        if self.lookups >= PROBE_RELOCK {
            self.unlock();
        }
        self.lookups += 1;
    }

    /// The lock, taken again after [`PROBE_RELOCK`] uses ([`Probe::tick`]).
    fn state(&mut self) -> &mut State<K, V> {
        self.tick();
        self.guard.get_or_insert_with(|| lock(&self.cache.shared.state))
    }

    /// As [`ChunkCache::lookup_or_claim`].
    pub fn lookup_or_claim(&mut self, key: &K, bytes: u64) -> Lookup<K, V> {
        self.lookup(key, bytes, false)
    }

    /// As [`ChunkCache::lookup_ready_or_claim`].
    pub fn lookup_ready_or_claim(&mut self, key: &K, bytes: u64) -> Lookup<K, V> {
        self.lookup(key, bytes, true)
    }

    fn lookup(&mut self, key: &K, bytes: u64, ready_only: bool) -> Lookup<K, V> {
        self.tick();
        let cache = self.cache;
        // The guard and the evicted values are borrowed apart, so a claim's evictions
        // land in `self.evicted` and go at the next relock (or the drop), never later.
        let st = self.guard.get_or_insert_with(|| lock(&cache.shared.state));
        if ready_only && ChunkCache::<K, V>::pending_in(st, key) {
            st.stats.misses += 1;
            return Lookup::Miss;
        }
        match cache.get_in(st, key) {
            Some(pin) => Lookup::Hit(pin),
            None => cache.claim_in(st, key, bytes, &mut self.evicted),
        }
    }

    /// Lets go of the lock now (the next lookup takes it again) and frees, outside it, the
    /// values evicted meanwhile: for a caller whose lookups are over but who keeps the
    /// probe a while longer.
    pub fn unlock(&mut self) {
        self.guard = None;
        self.evicted.clear();
        self.lookups = 0;
    }

    /// Drops `pin` (one this probe's cache gave) under the probe's hold of the lock, which
    /// dropping it plainly would take again.
    pub fn release(&mut self, mut pin: Pin<K, V>) {
        let st = self.state();
        st.unpin(pin.slot, pin.generation);
        pin.released = true;
    }
}

impl<K, V> Drop for Probe<'_, K, V> {
    fn drop(&mut self) {
        // The lock first, then the evicted values, outside it.
        self.guard = None;
        self.evicted.clear();
    }
}

impl<K, V> fmt::Debug for Probe<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe").field("held", &self.guard.is_some()).finish_non_exhaustive()
    }
}

/// The outcome of [`ChunkCache::lookup_or_claim`].
#[derive(Debug)]
pub enum Lookup<K: Hash + Eq, V> {
    /// Cached (ready, or being decoded by whoever claimed it: [`Pin::wait`]).
    Hit(Pin<K, V>),
    /// Not cached; room is reserved and the caller must decode it and fill the claim
    /// (dropping the claim unfilled wakes waiters with `None`).
    Claimed(Claim<K, V>),
    /// Not cached and no room: every entry that could make room is pinned.
    Miss,
}

/// The right and duty to decode a missing entry: [`Claim::fill`] it, or drop it.
pub struct Claim<K: Hash + Eq, V> {
    shared: Arc<Shared<K, V>>,
    slot: usize,
    generation: u64,
    filled: bool,
}

impl<K: Hash + Eq, V> Claim<K, V> {
    /// Stores the decoded value and wakes the entry's waiters; the entry becomes an
    /// ordinary cached one (evictable once unpinned).
    pub fn fill(mut self, value: V) {
        let mut st = lock(&self.shared.state);
        if let Some(Some(s)) = st.slots.get_mut(self.slot)
            && s.generation == self.generation
        {
            s.value = Value::Ready(std::sync::Arc::new(value));
        }
        st.unpin(self.slot, self.generation);
        self.filled = true;
        drop(st);
        self.shared.settled.notify_all();
    }
}

impl<K: Hash + Eq, V> Drop for Claim<K, V> {
    fn drop(&mut self) {
        if self.filled {
            return;
        }
        let mut st = lock(&self.shared.state);
        let st = &mut *st;
        if let Some(Some(s)) = st.slots.get_mut(self.slot)
            && s.generation == self.generation
        {
            s.value = Value::Abandoned;
            // Out of the tables now: a later lookup misses and may claim it again.
            let (key, last_use, bytes) = (&s.key, s.last_use, s.bytes);
            st.map.remove(key);
            st.lru.remove(&last_use);
            st.stats.bytes -= bytes;
            st.stats.entries -= 1;
            st.stats.pinned_bytes -= bytes;
            st.stats.abandoned += 1;
        }
        st.unpin(self.slot, self.generation);
        self.shared.settled.notify_all();
    }
}

impl<K: Hash + Eq, V> fmt::Debug for Claim<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim").field("slot", &self.slot).finish_non_exhaustive()
    }
}

impl<K, V> fmt::Debug for Pin<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pin").field("slot", &self.slot).finish_non_exhaustive()
    }
}

impl<K, V> fmt::Debug for ChunkCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkCache")
            .field("capacity", &self.shared.capacity)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(damacy_loom)))]
mod tests;

#[cfg(all(test, damacy_loom))]
mod loom_models;
