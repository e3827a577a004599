//! The crate's one door to synchronization primitives: std's normally, loom's under
//! `cfg(damacy_loom)`, so that any loom model sees every lock, atomic and thread we use.
//!
//! Nothing else in the crate imports `std::sync` or `std::thread` directly. Locks here
//! recover from poisoning: a panic on another thread must not turn into a second panic
//! (or a hang) on an I/O thread, and every protected state is kept consistent at each
//! unlock point.

#[cfg(not(damacy_loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(damacy_loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(damacy_loom))]
pub(crate) use std::thread;

#[cfg(damacy_loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
#[cfg(damacy_loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(damacy_loom)]
pub(crate) use loom::thread;

use std::time::Duration;

/// Locks `m`, taking the guard even if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Blocks on `cv` (a blocking wait, never a poll), recovering a poisoned guard.
pub(crate) fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Blocks on `cv` for at most `timeout`, recovering a poisoned guard.
pub(crate) fn wait_timeout<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> MutexGuard<'a, T> {
    match cv.wait_timeout(guard, timeout) {
        Ok((g, _)) => g,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

/// Sleeps the calling thread. Loom has no clock, so under loom this is std's sleep: the
/// latency paths that call it are stress-tested, not loom-modelled.
pub(crate) fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// A one-shot slot: one thread fills it, another blocks until it is filled.
#[derive(Debug)]
pub(crate) struct Oneshot<T> {
    slot: Mutex<Option<T>>,
    filled: Condvar,
}

impl<T> Oneshot<T> {
    pub(crate) fn new() -> Self {
        Self { slot: Mutex::new(None), filled: Condvar::new() }
    }

    /// Fills the slot (a second fill replaces the first; callers fill once).
    pub(crate) fn fill(&self, value: T) {
        *lock(&self.slot) = Some(value);
        self.filled.notify_all();
    }

    /// Blocks until the slot is filled and takes the value.
    pub(crate) fn take(&self) -> T {
        let mut g = lock(&self.slot);
        loop {
            if let Some(v) = g.take() {
                return v;
            }
            g = wait(&self.filled, g);
        }
    }
}
