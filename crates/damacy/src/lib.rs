//! damacy: stream fixed-shape crops from many sharded zarr v3 arrays as batches of
//! tensors, on the GPU when there is one and in host memory when there is not.
//!
//! See the crate README and `DESIGN.md` §1 for the user's view: build a [`Config`],
//! create a `Pipeline`, `push` samples `(uri, box)`, `pop` batches in push order.

pub mod cast;
pub mod config;
pub mod error;

pub use config::{Backend, Config, ConfigBuilder, OnError, OutDtype};
pub use error::{Error, Result, SampleError};
