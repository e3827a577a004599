//! The crate's one door to synchronization primitives: std's normally, loom's under
//! `cfg(damacy_loom)`, so that a loom model sees every lock the cache takes.

#[cfg(not(damacy_loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

#[cfg(damacy_loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Locks `m`, taking the guard even if a panicking thread poisoned it (every unlock
/// point leaves the state consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Blocks on `cv` (a blocking wait, never a poll), recovering a poisoned guard.
pub(crate) fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner)
}
