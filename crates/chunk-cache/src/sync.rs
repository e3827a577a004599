//! The crate's one door to synchronization primitives: std's normally, loom's under
//! `cfg(damacy_loom)`, so that a loom model sees every lock the cache takes.

#[cfg(not(damacy_loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(damacy_loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

/// Locks `m`, taking the guard even if a panicking thread poisoned it (every unlock
/// point leaves the state consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
