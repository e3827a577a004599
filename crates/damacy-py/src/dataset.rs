//! `damacy.gen_scenario(name, path)`: the bench crate's synthetic dataset generator (the
//! CLI's `damacy gen`), and the scenario's deterministic crop sequence as `Sample`s.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::config::PyConfig;
use crate::errors::{Attr, ConfigError, raise_with};
use crate::sample::PySample;

/// A generated scenario dataset: where its arrays are, and its crop sequence.
#[pyclass(frozen, name = "Dataset", module = "damacy")]
#[derive(Debug)]
pub(crate) struct PyDataset {
    scenario: bench::Scenario,
    path: PathBuf,
    report: bench::datagen::GenReport,
}

/// The scenario's infinite crop sequence.
#[pyclass(name = "SampleStream", module = "damacy")]
#[derive(Debug)]
pub(crate) struct SampleStream {
    it: Mutex<bench::scenario::SampleIter>,
}

#[pymethods]
impl SampleStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PySample>> {
        let next = self.it.lock().unwrap_or_else(PoisonError::into_inner).next();
        match next {
            None => Ok(None),
            Some((path, lo, hi)) => damacy::Sample::new(path, lo, hi)
                .map(|inner| Some(PySample { inner }))
                .map_err(|e| crate::errors::to_py(py, e)),
        }
    }
}

/// Generates the built-in scenario `name` (`smoke`, `quickstart`, `default`, ...) or a
/// scenario JSON file into the directory `path` (made absolute; nothing is written when a complete copy
/// is already there), with `threads` threads (0: one per core).
#[pyfunction]
#[pyo3(signature = (name, path, threads=0))]
pub(crate) fn gen_scenario(
    py: Python<'_>,
    name: &str,
    path: PathBuf,
    threads: usize,
) -> PyResult<PyDataset> {
    // Sample uris are absolute paths (the pipeline's store is rooted at `/`).
    let path = std::path::absolute(&path)
        .map_err(|e| PyValueError::new_err(format!("{}: {e}", path.display())))?;
    let scenario = bench::Scenario::load(name).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let threads = if threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        threads
    };
    let report =
        py.detach(|| bench::datagen::generate(&scenario, &path, threads, &|_| {})).map_err(
            |e| PyValueError::new_err(format!("generating {name} into {}: {e}", path.display())),
        )?;
    Ok(PyDataset { scenario, path, report })
}

#[pymethods]
impl PyDataset {
    /// The scenario's name.
    #[getter]
    fn name(&self) -> &str {
        &self.scenario.name
    }

    /// The directory holding the arrays.
    #[getter]
    fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// `(path, shape)` of every array.
    #[getter]
    fn arrays(&self) -> Vec<(String, Vec<u64>)> {
        self.scenario
            .array_instances()
            .into_iter()
            .map(|a| {
                (self.path.join(&a.name).to_string_lossy().into_owned(), a.group.shape.clone())
            })
            .collect()
    }

    /// The scenario's sample extent.
    #[getter]
    fn sample_shape(&self) -> Vec<u64> {
        self.scenario.sample_shape.clone()
    }

    /// The scenario's batch size.
    #[getter]
    fn samples_per_batch(&self) -> u64 {
        self.scenario.samples_per_batch
    }

    /// What the generator wrote (or found already there), as a dict.
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(&self.report)
            .map_err(|e| PyValueError::new_err(format!("report does not serialize: {e}")))?;
        py.import("json")?.call_method1("loads", (text,))
    }

    /// The scenario's deterministic, infinite crop sequence (the one `damacy bench` reads).
    fn samples(&self) -> SampleStream {
        SampleStream { it: Mutex::new(self.scenario.samples(&self.path)) }
    }

    /// A `Config` with the scenario's sample shape, batch size and output dtype, plus any
    /// other knobs given.
    #[pyo3(signature = (**knobs))]
    fn config(
        &self,
        py: Python<'_>,
        knobs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<PyConfig> {
        let d = pyo3::types::PyDict::new(py);
        d.set_item("sample_shape", self.scenario.sample_shape.clone())?;
        d.set_item("samples_per_batch", self.scenario.samples_per_batch)?;
        d.set_item("dtype", self.scenario.output_dtype.name())?;
        if let Some(k) = knobs {
            d.update(k.as_mapping())?;
        }
        crate::config::from_knobs(&d).map(|inner| PyConfig { inner }).map_err(|e| {
            if e.is_instance_of::<ConfigError>(py) {
                e
            } else {
                raise_with(py, ConfigError::new_err(e.to_string()), &[("knob", Attr::None)])
            }
        })
    }

    fn __repr__(&self) -> String {
        format!("damacy.Dataset({:?}, {:?})", self.scenario.name, self.path)
    }
}
