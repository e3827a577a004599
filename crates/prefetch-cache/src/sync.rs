//! The one place this crate imports synchronization primitives; under `cfg(damacy_loom)`
//! they are loom's, so the loom models check the real code paths.
//!
//! Lock order where locks nest (outer first): prefetcher state → slot-cache table →
//! gate record → gate pool free list. The doorbell lock is a leaf: nothing is taken while
//! it is held.

#[cfg(not(damacy_loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(damacy_loom))]
#[allow(unused_imports)]
pub(crate) use std::thread;

#[cfg(damacy_loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(damacy_loom)]
#[allow(unused_imports)]
pub(crate) use loom::thread;

/// Values handed to callers (cached values, uris, the store) are shared through std's
/// `Arc` even under loom: they carry no ordering of their own, loom's `Arc` cannot hold
/// unsized values, and they cross the crate's public API.
pub(crate) use std::sync::Arc as StdArc;

/// Locks `m`, ignoring poisoning: every critical section in this crate leaves its data
/// consistent before any call that could panic, so a poisoned lock still holds valid state.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits on `cv`, ignoring poisoning (see [`lock`]).
pub(crate) fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner)
}
