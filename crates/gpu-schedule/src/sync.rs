//! The one place this crate takes its synchronization primitives from; loom's under `cfg(damacy_loom)`.

#[cfg(damacy_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(damacy_loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(damacy_loom)]
pub(crate) use loom::thread;

#[cfg(not(damacy_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(damacy_loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(damacy_loom))]
pub(crate) use std::thread;

use std::collections::VecDeque;

/// Sleeps the calling OS thread; tests use it to inject delays. Loom does not model time,
/// so this is always the standard library's sleep.
#[cfg(test)]
pub(crate) fn sleep(d: std::time::Duration) {
    std::thread::sleep(d);
}

/// Locks a mutex, ignoring poisoning: every critical section in this crate leaves its data
/// consistent before anything that can panic, so a poisoned lock still holds valid state.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Blocks on a condition variable until `done` holds, ignoring poisoning (see [`lock`]).
pub(crate) fn wait_until<'a, T>(
    cv: &Condvar,
    mut guard: MutexGuard<'a, T>,
    mut done: impl FnMut(&T) -> bool,
) -> MutexGuard<'a, T> {
    while !done(&guard) {
        guard = cv.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    guard
}

/// A blocking FIFO queue on a mutex and a condition variable.
///
/// Loom cannot see inside crossbeam's channels, so the crate uses this one queue in both
/// builds; its traffic (one item per stream operation or move job) is far below where a
/// lock-free channel would matter.
#[derive(Debug)]
pub(crate) struct Queue<T> {
    state: Mutex<QueueState<T>>,
    ready: Condvar,
}

#[derive(Debug)]
struct QueueState<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Queue<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(QueueState { items: VecDeque::new(), closed: false }),
            ready: Condvar::new(),
        }
    }

    /// Appends an item; a closed queue gives the item back.
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err(item);
        }
        s.items.push_back(item);
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// Takes the oldest item, blocking while the queue is empty and open; `None` once the
    /// queue is closed and drained.
    pub(crate) fn pop(&self) -> Option<T> {
        let s = lock(&self.state);
        let mut s = wait_until(&self.ready, s, |s| s.closed || !s.items.is_empty());
        s.items.pop_front()
    }

    /// Refuses further pushes and wakes every consumer; queued items are still delivered.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_all();
    }
}

/// The standard atomic, for memory shared with a device (a mapped counter word): loom
/// cannot model memory that a GPU writes, so this one is never loom's.
#[cfg(feature = "cuda")]
pub(crate) use std::sync::atomic::AtomicU64 as DeviceSharedU64;
