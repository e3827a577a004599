//! damacy: stream fixed-shape crops from many sharded zarr v3 arrays as batches of
//! tensors, on the GPU when there is one and in host memory when there is not.
//!
//! ```no_run
//! use damacy::{Config, OutDtype, Pipeline, Sample};
//! let cfg = Config::builder()
//!     .sample_shape([64, 64, 64])
//!     .samples_per_batch(8)
//!     .dtype(OutDtype::F32)
//!     .build()?;
//! let mut p = Pipeline::new(cfg)?;
//! let samples = (0..64u64).map(|i| {
//!     Sample::new("/data/a.zarr", vec![i, 0, 0], vec![i + 64, 64, 64]).expect("valid box")
//! });
//! p.push(samples)?;
//! p.finish();
//! while let Some(batch) = p.pop()? {
//!     let t: &[f32] = batch.as_f32()?.expect("f32 output");
//!     assert_eq!(t.len(), 8 * 64 * 64 * 64);
//! }
//! # Ok::<(), damacy::Error>(())
//! ```

// The facade's error carries the sample's uri and a structured cause by design; it is
// returned on cold paths only, so its size costs nothing measurable.
#![allow(clippy::result_large_err)]

mod backend;
pub mod batch;
pub mod cast;
pub mod config;
mod decoded_cache;
mod engine;
pub mod error;
#[doc(hidden)]
pub mod fault;
pub mod image;
pub mod pipeline;
mod prepare;
mod resolve;
pub mod stats;
pub mod trace;

pub use batch::{Batch, Sample, SampleInfo};
pub use config::{
    Backend, ChunkCachePolicy, Config, ConfigBuilder, Gds, MAX_GPU_WAVE_SLOTS, ObjectStoreConfig,
    OnError, OutDtype,
};
pub use engine::Running;
pub use error::{Error, GdsUnavailable, GpuError, PlanFault, Result, SampleError, Unavailable};
pub use image::{Image, ImageLevel};
pub use pipeline::Pipeline;
pub use prefetch_cache::ImageError;
pub use stats::Stats;
pub use zarr::ngff;
pub use zarr::{Aabb, DataType};
