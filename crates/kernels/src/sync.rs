//! The crate's one import point for shared-state primitives (house rule: `crate::sync`
//! is the only place that names them). `kernels` holds process-wide caches and the cuFile
//! binding's counters, which loom need not model, so these are std's under every cfg.

#[cfg(test)]
pub(crate) use std::sync::Condvar;
#[cfg(all(test, feature = "cuda"))]
pub(crate) use std::sync::MutexGuard;
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
pub(crate) use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
