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
//! - **Eviction** by [`Policy::Lru`] (least recently used) or [`Policy::Clock`] (second
//!   chance: an entry used since the hand last passed survives one more sweep). Both are
//!   O(1) amortized per operation apart from skipping pinned entries.
//!
//! Concurrency: one mutex guards the table; values are shared as `Arc`s so readers copy
//! out of a pinned value without the lock. Values evicted are dropped after the lock is
//! released. `cfg(damacy_loom)` swaps in loom's primitives (see the loom models below).

mod sync;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::ops::Deref;

use sync::{Arc, Mutex, lock};

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
}

struct Slot<K, V> {
    key: K,
    value: std::sync::Arc<V>,
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
        let Some(&i) = st.map.get(key) else {
            st.stats.misses += 1;
            return None;
        };
        st.stats.hits += 1;
        st.tick += 1;
        let tick = st.tick;
        let State { slots, lru, stats, .. } = &mut *st;
        let slot = slots[i].as_mut()?;
        if slot.pins == 0 {
            stats.pinned_bytes += slot.bytes;
        }
        slot.pins += 1;
        slot.referenced = true;
        lru.remove(&slot.last_use);
        slot.last_use = tick;
        lru.insert(tick, i);
        Some(Pin {
            shared: Arc::clone(&self.shared),
            slot: i,
            generation: slot.generation,
            value: std::sync::Arc::clone(&slot.value),
        })
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
                let mut room = true;
                while st.stats.bytes + bytes > self.shared.capacity {
                    match st.evict_one(self.shared.policy) {
                        Some(v) => evicted.push(v),
                        None => {
                            room = false;
                            break;
                        }
                    }
                }
                if room {
                    st.add(key, value, bytes);
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
    fn add(&mut self, key: K, value: V, bytes: u64) {
        self.tick += 1;
        self.generation += 1;
        let slot = Slot {
            key: key.clone(),
            value: std::sync::Arc::new(value),
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
        Some(slot.value)
    }

    fn unpinned(&self, i: usize) -> bool {
        self.slots[i].as_ref().is_some_and(|s| s.pins == 0)
    }

    /// Sweeps at most twice around: the first pass may only clear reference bits.
    fn clock_victim(&mut self) -> Option<usize> {
        let n = self.slots.len();
        for _ in 0..2 * n {
            let i = self.hand;
            self.hand = (self.hand + 1) % n.max(1);
            let Some(s) = self.slots[i].as_mut() else { continue };
            if s.pins > 0 {
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

/// A pinned cached value: the entry stays cached (and its bytes in place) while this
/// lives. Dereferences to the value.
pub struct Pin<K, V> {
    shared: Arc<Shared<K, V>>,
    slot: usize,
    generation: u64,
    value: std::sync::Arc<V>,
}

impl<K, V> Deref for Pin<K, V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.value
    }
}

impl<K, V> Drop for Pin<K, V> {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        let State { slots, stats, .. } = &mut *st;
        // A pinned entry is never evicted, so the slot still holds it; the generation
        // check keeps a bug elsewhere from unpinning a later occupant.
        if let Some(Some(s)) = slots.get_mut(self.slot)
            && s.generation == self.generation
            && s.pins > 0
        {
            s.pins -= 1;
            if s.pins == 0 {
                stats.pinned_bytes -= s.bytes;
            }
        }
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
