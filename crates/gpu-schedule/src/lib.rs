//! Streams, events, declared ordering edges, generation-carried pools and the scheduler.
//!
//! Every cross-stream or host↔stream dependency is a named [`EdgeDecl`] in an
//! [`EdgeTable`], and every buffer that cycles lives in a [`Pool`] whose acquire waits for
//! the previous generation's release. The [`Backend`] trait has a `host` implementation
//! (threads; what CI and loom exercise) and, behind the `cuda` feature, a CUDA one loaded at
//! run time. See DESIGN.md §2 "gpu-schedule".

pub mod backend;
pub mod edge;
pub mod error;
pub mod pool;
pub mod scheduler;
mod sync;
pub mod trace;

#[cfg(test)]
mod tests;

#[cfg(feature = "cuda")]
pub use backend::cuda::{
    CudaBackend, CudaCounter, CudaDeviceMem, CudaEventHandle, CudaPinnedMem, CudaStreamHandle,
    driver_present,
};
pub use backend::host::{HostBackend, HostCounter, HostEvent, HostMem, HostStream};
pub use backend::{Backend, HostTask, StallMeter};
pub use edge::{Edge, EdgeDecl, EdgeKind, EdgeStats, EdgeTable, Endpoint, TeardownFinding};
pub use error::{Error, Result};
pub use pool::{Lease, Pool, PoolSpec};
pub use scheduler::{
    Releasable, Scheduler, SchedulerConfig, StageStats, Stream, TeardownReport, pipeline_depth,
};
