//! `SlotCache`: a fixed table of slots with generation-checked handles, single-flight fill,
//! pinning by owner watermark and LRU eviction of unpinned entries.
//!
//! A [`Handle`] names a slot and the generation of the entry it was issued for. Slots never
//! move, and a slot's generation changes every time its entry leaves, so a handle stays
//! valid exactly while its slot holds the same entry and reads as [`State::Stale`] (never as
//! another entry's state) afterwards. The C predecessor indexed a compact array and broke
//! every handle behind an evicted sibling (lesson 1).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::ops::Deref;

use crate::gate::{Gate, Ticket};
use crate::sync::{Mutex, StdArc as Arc, lock};

const NIL: u32 = u32::MAX;

/// A stable reference to one cache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    pub slot: u32,
    pub generation: u64,
}

/// What a handle sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State<E> {
    /// The fetch is in flight.
    Pending,
    /// The value is available through [`SlotCache::get`].
    Ready,
    /// The fetch failed with this error.
    Error(E),
    /// The entry this handle named has left the cache.
    Stale,
}

/// The answer to [`SlotCache::request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    pub handle: Handle,
    /// True for exactly one requester per fill: the one that must fetch and then call
    /// [`SlotCache::complete`].
    pub must_fetch: bool,
}

/// Every slot is pinned: back-pressure, not failure. Retry after the watermark advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("all {capacity} cache slots are pinned; retry after the owner watermark advances")]
pub struct Again {
    pub capacity: usize,
}

/// What [`SlotCache::complete`] did with the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Stored; waiters were resolved.
    Stored,
    /// The handle is stale (its entry was evicted while the fetch ran): the value was dropped.
    Stale,
    /// The entry was already complete; the result was dropped.
    NotPending,
}

/// What [`SlotCache::wait_on`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOn<E> {
    /// The entry is pending; a ticket of the gate now waits on it.
    Registered,
    Ready,
    Error(E),
    Stale,
}

/// What [`SlotCache::evict`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evict {
    /// The entry left; `failed_waiters` gates had their error bit set.
    Evicted { failed_waiters: usize },
    /// The handle was already stale.
    Stale,
    /// A [`Guard`] is reading the entry; it stays.
    Busy,
}

/// Counters since construction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests that found their key (pending or complete).
    pub hits: u64,
    /// Requests that installed a new entry (and so must fetch).
    pub misses: u64,
    /// Requests refused with [`Again`].
    pub again: u64,
    /// Entries removed by LRU eviction or [`SlotCache::evict`].
    pub evictions: u64,
    /// Completions dropped because their entry had been evicted.
    pub stale_completions: u64,
}

enum Fill<V, E> {
    Pending(Vec<Ticket>),
    Ready(Arc<V>),
    Error(E),
}

struct Entry<K, V, E> {
    key: K,
    fill: Fill<V, E>,
    /// Newest owner (sample sequence) that requested this entry.
    owner: u64,
    /// Live [`Guard`]s.
    readers: u32,
}

struct Slot<K, V, E> {
    generation: u64,
    entry: Option<Entry<K, V, E>>,
    /// LRU list links (towards the most and the least recently used).
    newer: u32,
    older: u32,
}

struct Table<K, V, E> {
    slots: Vec<Slot<K, V, E>>,
    map: HashMap<K, u32>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    watermark: u64,
    stats: CacheStats,
}

/// A fixed-capacity, thread-safe cache of `V` by `K`, filled by callers (single-flight).
pub struct SlotCache<K, V, E> {
    table: Mutex<Table<K, V, E>>,
    capacity: usize,
}

/// Read access to a ready value. While a guard lives its entry is pinned: neither LRU
/// eviction nor [`SlotCache::evict`] removes it, so the guard cannot outlive the entry.
pub struct Guard<'a, K: Hash + Eq + Clone, V, E> {
    cache: &'a SlotCache<K, V, E>,
    handle: Handle,
    value: Arc<V>,
}

impl<K: Hash + Eq + Clone, V, E> Deref for Guard<'_, K, V, E> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.value
    }
}

impl<K: Hash + Eq + Clone, V, E> Drop for Guard<'_, K, V, E> {
    fn drop(&mut self) {
        let mut t = lock(&self.cache.table);
        if let Some(e) = t.entry_mut(self.handle) {
            e.readers = e.readers.saturating_sub(1);
        }
    }
}

impl<K: Hash + Eq + Clone, V, E> fmt::Debug for Guard<'_, K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").field("handle", &self.handle).finish()
    }
}

impl<K, V, E> fmt::Debug for SlotCache<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = lock(&self.table);
        f.debug_struct("SlotCache")
            .field("capacity", &self.capacity)
            .field("len", &(self.capacity - t.free.len()))
            .field("watermark", &t.watermark)
            .field("stats", &t.stats)
            .finish()
    }
}

impl<K, V, E> Entry<K, V, E> {
    fn pinned(&self, watermark: u64) -> bool {
        matches!(self.fill, Fill::Pending(_)) || self.owner >= watermark || self.readers > 0
    }
}

impl<K: Hash + Eq + Clone, V, E> Table<K, V, E> {
    fn entry_mut(&mut self, h: Handle) -> Option<&mut Entry<K, V, E>> {
        let slot = self.slots.get_mut(h.slot as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        slot.entry.as_mut()
    }

    fn entry(&self, h: Handle) -> Option<&Entry<K, V, E>> {
        let slot = self.slots.get(h.slot as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    fn unlink(&mut self, s: u32) {
        let (newer, older) = {
            let slot = &self.slots[s as usize];
            (slot.newer, slot.older)
        };
        if newer == NIL {
            self.head = older;
        } else {
            self.slots[newer as usize].older = older;
        }
        if older == NIL {
            self.tail = newer;
        } else {
            self.slots[older as usize].newer = newer;
        }
        let slot = &mut self.slots[s as usize];
        slot.newer = NIL;
        slot.older = NIL;
    }

    fn push_front(&mut self, s: u32) {
        let old_head = self.head;
        {
            let slot = &mut self.slots[s as usize];
            slot.newer = NIL;
            slot.older = old_head;
        }
        if old_head == NIL {
            self.tail = s;
        } else {
            self.slots[old_head as usize].newer = s;
        }
        self.head = s;
    }

    /// Removes slot `s`'s entry: the slot's generation moves on so old handles go stale.
    /// Returns the entry so the caller can drop it (and fail its waiters) outside the lock.
    fn remove(&mut self, s: u32) -> Option<Entry<K, V, E>> {
        let entry = self.slots[s as usize].entry.take()?;
        self.unlink(s);
        self.map.remove(&entry.key);
        let slot = &mut self.slots[s as usize];
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(s);
        self.stats.evictions += 1;
        Some(entry)
    }

    /// The least recently used unpinned slot. Pinned entries belong to recent samples and
    /// so sit near the head; the walk from the tail normally ends after a few steps.
    fn lru_victim(&self) -> Option<u32> {
        let mut s = self.tail;
        while s != NIL {
            let slot = &self.slots[s as usize];
            if slot.entry.as_ref().is_some_and(|e| !e.pinned(self.watermark)) {
                return Some(s);
            }
            s = slot.newer;
        }
        None
    }
}

impl<K: Hash + Eq + Clone, V, E: Clone> SlotCache<K, V, E> {
    /// A cache of `capacity` slots (at most `u32::MAX - 1`).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.min(NIL as usize - 1);
        let slots = (0..capacity)
            .map(|_| Slot { generation: 0, entry: None, newer: NIL, older: NIL })
            .collect();
        let free = (0..capacity as u32).rev().collect();
        let table = Table {
            slots,
            map: HashMap::with_capacity(capacity),
            free,
            head: NIL,
            tail: NIL,
            watermark: 0,
            stats: CacheStats::default(),
        };
        Self { table: Mutex::new(table), capacity }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of entries present (pending or complete).
    pub fn len(&self) -> usize {
        self.capacity - lock(&self.table).free.len()
    }

    /// True when no entry is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        lock(&self.table).stats
    }

    /// The current owner watermark.
    pub fn watermark(&self) -> u64 {
        lock(&self.table).watermark
    }

    /// Finds or installs `key` for `owner` (a sample sequence number), pinning the entry
    /// until the watermark passes `owner`. A miss installs a pending entry and answers
    /// `must_fetch: true` to this caller only; everyone else shares that fill.
    ///
    /// # Errors
    /// [`Again`] when the key is absent and every slot is pinned.
    pub fn request(&self, key: K, owner: u64) -> Result<Requested, Again> {
        let mut t = lock(&self.table);
        if let Some(&s) = t.map.get(&key) {
            let slot = &mut t.slots[s as usize];
            let generation = slot.generation;
            if let Some(e) = slot.entry.as_mut() {
                e.owner = e.owner.max(owner);
            }
            t.unlink(s);
            t.push_front(s);
            t.stats.hits += 1;
            return Ok(Requested { handle: Handle { slot: s, generation }, must_fetch: false });
        }
        // An evicted entry is never pending, so it has no waiters to fail; it is dropped
        // after the lock is released all the same, since values can be large.
        let mut evicted = None;
        let s = match t.free.pop() {
            Some(s) => s,
            None => match t.lru_victim() {
                Some(v) => {
                    evicted = t.remove(v);
                    // `remove` pushed the slot onto the free list; take it back.
                    t.free.pop().unwrap_or(v)
                }
                None => {
                    t.stats.again += 1;
                    return Err(Again { capacity: self.capacity });
                }
            },
        };
        let entry = Entry { key: key.clone(), fill: Fill::Pending(Vec::new()), owner, readers: 0 };
        t.slots[s as usize].entry = Some(entry);
        let generation = t.slots[s as usize].generation;
        t.map.insert(key, s);
        t.push_front(s);
        t.stats.misses += 1;
        drop(t);
        drop(evicted);
        Ok(Requested { handle: Handle { slot: s, generation }, must_fetch: true })
    }

    /// Stores the result of the fetch for `handle` and resolves its waiters (a failure sets
    /// their gates' error bits). A result for an evicted entry is dropped.
    pub fn complete(&self, handle: Handle, result: Result<V, E>) -> Completion {
        let mut t = lock(&self.table);
        let Some(entry) = t.entry_mut(handle) else {
            t.stats.stale_completions += 1;
            drop(t);
            drop(result);
            return Completion::Stale;
        };
        if !matches!(entry.fill, Fill::Pending(_)) {
            drop(t);
            drop(result);
            return Completion::NotPending;
        }
        let ok = result.is_ok();
        let fill = match result {
            Ok(v) => Fill::Ready(Arc::new(v)),
            Err(e) => Fill::Error(e),
        };
        let Fill::Pending(tickets) = std::mem::replace(&mut entry.fill, fill) else {
            return Completion::NotPending;
        };
        drop(t);
        for ticket in tickets {
            if ok {
                ticket.succeed();
            } else {
                ticket.fail();
            }
        }
        Completion::Stored
    }

    /// The state `handle` sees.
    pub fn state(&self, handle: Handle) -> State<E> {
        let t = lock(&self.table);
        match t.entry(handle).map(|e| &e.fill) {
            None => State::Stale,
            Some(Fill::Pending(_)) => State::Pending,
            Some(Fill::Ready(_)) => State::Ready,
            Some(Fill::Error(e)) => State::Error(e.clone()),
        }
    }

    /// Read access to a ready value; `None` unless the state is `Ready`.
    pub fn get(&self, handle: Handle) -> Option<Guard<'_, K, V, E>> {
        let mut t = lock(&self.table);
        let e = t.entry_mut(handle)?;
        let Fill::Ready(v) = &e.fill else { return None };
        let value = Arc::clone(v);
        e.readers += 1;
        Some(Guard { cache: self, handle, value })
    }

    /// A shared reference to a ready value that the caller may keep after the entry
    /// leaves (values are immutable once stored, so this cannot alias another entry).
    pub fn get_arc(&self, handle: Handle) -> Option<Arc<V>> {
        let t = lock(&self.table);
        match &t.entry(handle)?.fill {
            Fill::Ready(v) => Some(Arc::clone(v)),
            _ => None,
        }
    }

    /// Makes `gate` wait for `handle`'s fetch if it is pending (one ticket per call);
    /// otherwise reports the terminal state and registers nothing.
    pub fn wait_on(&self, handle: Handle, gate: &Gate) -> WaitOn<E> {
        let mut t = lock(&self.table);
        match t.entry_mut(handle).map(|e| &mut e.fill) {
            None => WaitOn::Stale,
            Some(Fill::Pending(waiters)) => {
                waiters.push(gate.ticket());
                WaitOn::Registered
            }
            Some(Fill::Ready(_)) => WaitOn::Ready,
            Some(Fill::Error(e)) => WaitOn::Error(e.clone()),
        }
    }

    /// Unpins every entry whose newest owner is older than `seq` (and not pending or
    /// being read). The watermark never moves backwards.
    pub fn advance_watermark(&self, seq: u64) {
        let mut t = lock(&self.table);
        t.watermark = t.watermark.max(seq);
    }

    /// Removes `handle`'s entry now, pinned or pending (for abandoned fetches and
    /// shutdown). Waiters of a pending entry have their gates failed, so nobody waits for
    /// a fill that will never be stored; a late completion is then dropped as stale.
    pub fn evict(&self, handle: Handle) -> Evict {
        let mut t = lock(&self.table);
        match t.entry(handle) {
            None => return Evict::Stale,
            Some(e) if e.readers > 0 => return Evict::Busy,
            Some(_) => {}
        }
        let entry = t.remove(handle.slot);
        drop(t);
        let failed_waiters = match entry.as_ref().map(|e| &e.fill) {
            Some(Fill::Pending(w)) => w.len(),
            _ => 0,
        };
        // Dropping the entry drops its unresolved tickets, which fails their gates.
        drop(entry);
        Evict::Evicted { failed_waiters }
    }

    /// Whether `handle`'s entry is pinned now (for tests and diagnostics).
    pub fn is_pinned(&self, handle: Handle) -> Option<bool> {
        let t = lock(&self.table);
        let wm = t.watermark;
        t.entry(handle).map(|e| e.pinned(wm))
    }
}

#[cfg(all(test, not(damacy_loom)))]
mod tests;
