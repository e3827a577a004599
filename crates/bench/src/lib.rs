//! damacy's bench tooling: benchmark scenarios, the deterministic synthetic dataset
//! generator, `damacy bench`'s throughput run with the decode ceiling measured beside it,
//! and the NumPy `.npy` codec. None of it is part of the loader: the `damacy` facade
//! knows nothing of this crate, which uses the facade like any other caller.
//!
//! - [`scenario`]: [`Scenario`], the JSON format of `bench/scenarios/` and the crop
//!   sequence.
//! - [`datagen`]: [`datagen::generate`], a scenario's arrays as zarr v3, cached.
//! - [`throughput`]: [`run`], warm-up and timed batches, amplification, stage load, and
//!   the CPU (and, with the `cuda` feature, nvCOMP) decode ceiling on the same chunks.
//! - [`npy`]: `.npy` reading and writing (`damacy read`, the conformance tests).
//!
//! The crop sequence and the voxels are drawn from `splitmix` (splitmix64), exactly
//! specified there so that other implementations can replay them.

pub mod datagen;
pub mod npy;
#[cfg(feature = "cuda")]
mod nvcomp_ceiling;
pub mod scenario;
pub mod throughput;

pub use datagen::{GenError, GenProgress, GenReport};
pub use scenario::{Scenario, ScenarioError};
pub use throughput::{
    BenchError, BenchOptions, BenchProgress, BenchReport, EpochReport, PipelineWindow,
    SideBySideReport, StageLoad, StoreKind, run, share,
};
