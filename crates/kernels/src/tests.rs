//! Crate tests: host tests (descriptor packing, the embedded CUDA source, the nvCOMP
//! search order, errors without CUDA) always; `_gpu` tests with the `cuda` feature, run
//! on a GPU host by `cargo xtask test-gpu` or the bundle's `run.sh test`.

#[cfg(feature = "cuda")]
mod gpu;
mod host;
mod reference;
mod twins;
