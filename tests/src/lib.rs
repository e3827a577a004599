//! Support code for the cross-crate conformance tests in `tests/tests/`: an `.npy`
//! reader, the fixture manifest, a reference reader built only from the `zarr` crate's
//! public API, and a value-for-value comparison.
//!
//! The fixtures in `tests/data` are written by zarr-python (`cargo xtask fixtures`).

pub mod compare;
pub mod manifest;
pub mod npy;
pub mod reference;
