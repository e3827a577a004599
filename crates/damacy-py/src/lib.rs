//! The `damacy` Python package's native module (`damacy._native`): PyO3 bindings over
//! the `damacy` facade. The Python package (`python/damacy`) re-exports it and adds the
//! pure-Python parts (`damacy.torch`).
//!
//! Built by maturin as an abi3 extension (one wheel for CPython >= 3.10). Nothing here
//! names an engine: batches come from the facade's `Pipeline` like any caller's.

// The facade's error is large by design (see `damacy`'s lib.rs); it only crosses here
// on its way to a Python exception.
#![allow(clippy::result_large_err)]

mod batch;
mod config;
mod dataset;
mod dlpack;
mod errors;
mod image;
mod pipeline;
mod sample;
mod source;
mod stream;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<config::PyConfig>()?;
    m.add_class::<sample::PySample>()?;
    m.add_class::<image::PyImage>()?;
    m.add_class::<image::PyImageLevel>()?;
    m.add_class::<image::PyAxis>()?;
    m.add_class::<pipeline::PyPipeline>()?;
    m.add_class::<batch::PyBatch>()?;
    m.add_class::<dataset::PyDataset>()?;
    m.add_class::<dataset::SampleStream>()?;
    m.add_function(wrap_pyfunction!(dataset::gen_scenario, m)?)?;
    m.add("CUDA_BUILT", cfg!(feature = "cuda"))?;
    Ok(())
}
