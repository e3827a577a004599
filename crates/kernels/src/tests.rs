//! Crate tests: host tests (descriptor packing, the embedded CUDA source, the nvCOMP
//! and cuFile search orders, the frame check's twin, cuFile's completion logic, errors
//! without CUDA) always; `_gpu` tests with the `cuda` feature, run on a GPU host by
//! `cargo xtask test-gpu` or the bundle's `run.sh test`.

mod cufile;
// The `_gpu` tests of the frame check and of cuFile sort before `gpu::zstd_*`, which
// run last on purpose (see there).
#[cfg(feature = "cuda")]
mod cufile_gpu;
mod frame_cases;
mod frames;
#[cfg(feature = "cuda")]
mod frames_gpu;
#[cfg(feature = "cuda")]
mod gpu;
mod host;
mod reference;
mod twins;
