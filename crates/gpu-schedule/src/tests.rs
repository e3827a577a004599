//! Crate-level tests: host backend, edge table, pools, scheduler, the toy pipeline with its
//! mutation check, and (under `cfg(damacy_loom)`) the loom models.

#[cfg(feature = "cuda")]
mod cuda;
mod edges;
mod host_backend;
#[cfg(damacy_loom)]
mod loom_models;
mod pools;
pub(crate) mod toy;
