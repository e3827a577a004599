//! The crate's one import point for shared-state primitives (house rule: `crate::sync`
//! is the only place that names them). `kernels` holds only process-wide caches, which
//! loom need not model, so these are std's under every cfg.

pub(crate) use std::sync::{Arc, Mutex, OnceLock, PoisonError};
