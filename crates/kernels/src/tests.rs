//! Crate tests: host tests (descriptor packing, the embedded CUDA source, the nvCOMP
//! search order, errors without CUDA) always; `_gpu` tests with the `cuda` feature, run
//! on a GPU host by `cargo xtask test-gpu` or the bundle's `run.sh test`.

mod cufile;
mod frame_cases;
mod frames;
#[cfg(feature = "cuda")]
mod gpu;
#[cfg(feature = "cuda")]
mod gpu_frames;
mod host;
mod reference;
mod twins;
