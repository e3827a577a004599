//! Support code for the cross-crate conformance tests in `tests/tests/`: the fixture
//! manifest, a reference reader built only from the `zarr` crate's public API, and a
//! value-for-value comparison. The reference crops' `.npy` files are read with
//! `bench::npy`, the workspace's one `.npy` codec.
//!
//! The fixtures in `tests/data` are written by zarr-python (`cargo xtask fixtures`).

pub mod compare;
pub mod manifest;
pub mod reference;
