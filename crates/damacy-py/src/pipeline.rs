//! `damacy.Pipeline`: the facade's pipeline with the GIL released around every wait.
//!
//! Every call that takes the pipeline's lock does so detached from the interpreter: the
//! feeder thread attaches to advance a pushed generator, so holding the GIL while waiting
//! for the lock (or for a batch) could deadlock. `pop` waits in slices of
//! [`POP_SLICE`] and checks for signals between them, so Ctrl-C interrupts it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::batch::PyBatch;
use crate::config::{PyConfig, from_knobs};
use crate::errors::{Attr, ClosedError, SourceError, TimeoutError, raise_with, to_py};
use crate::source::{PySource, Raised};

/// How long `pop` waits without checking for signals (Ctrl-C lands within this).
const POP_SLICE: Duration = Duration::from_millis(20);

/// Streams batches of crops, in push order.
#[pyclass(frozen, name = "Pipeline", module = "damacy")]
#[derive(Debug)]
pub(crate) struct PyPipeline {
    inner: Mutex<Option<damacy::Pipeline>>,
    raised: Raised,
    running: damacy::Running,
    config: damacy::Config,
}

impl PyPipeline {
    /// Runs `f` on the open pipeline, detached from the interpreter.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut damacy::Pipeline) -> T + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            g.as_mut().map(f)
        })
        .ok_or_else(|| ClosedError::new_err("the pipeline is closed"))
    }

    fn cuda_device(&self) -> usize {
        match self.running {
            damacy::Running::Cuda { device, .. } => device,
            _ => 0,
        }
    }

    /// The Python exception for a `pop` error: a pushed iterable's own exception becomes
    /// the `__cause__` of the `SourceError`.
    fn pop_error(&self, py: Python<'_>, e: damacy::Error) -> PyErr {
        let damacy::Error::SourcePanicked { index } = e else { return to_py(py, e) };
        let cause = self.raised.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
        let Some(cause) = cause else { return to_py(py, e) };
        let err = raise_with(
            py,
            SourceError::new_err(format!(
                "the iterable passed to push raised while producing sample {index}: {cause}"
            )),
            &[("index", Attr::Int(index))],
        );
        err.set_cause(py, Some(cause));
        err
    }
}

#[pymethods]
impl PyPipeline {
    /// A pipeline for `config` (a `Config`, or knobs as keyword arguments). All batch
    /// buffers are allocated here.
    #[new]
    #[pyo3(signature = (config=None, **knobs))]
    fn new(
        py: Python<'_>,
        config: Option<PyRef<'_, PyConfig>>,
        knobs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let cfg = match (config, knobs) {
            (Some(c), None) => c.inner.clone(),
            (None, Some(k)) => from_knobs(k)?,
            (None, None) => {
                return Err(PyValueError::new_err("Pipeline needs a Config (or knobs)"));
            }
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err("pass a Config or knobs, not both"));
            }
        };
        let config = cfg.clone();
        let p = py.detach(|| damacy::Pipeline::new(cfg)).map_err(|e| to_py(py, e))?;
        Ok(Self {
            running: p.backend(),
            inner: Mutex::new(Some(p)),
            raised: Arc::new(Mutex::new(Default::default())),
            config,
        })
    }

    /// Queues the samples of `samples` (any iterable of `Sample`, an infinite generator
    /// too). It is consumed lazily, as the lookahead has room, on the pipeline's own
    /// thread; `push` returns at once. If it raises, `pop` raises `SourceError` (with that
    /// exception as `__cause__`) after the batches of the samples before it.
    fn push(&self, py: Python<'_>, samples: &Bound<'_, PyAny>) -> PyResult<()> {
        let source = PySource::new(samples.try_iter()?, Arc::clone(&self.raised));
        self.with(py, move |p| p.push(source))?.map_err(|e| to_py(py, e))
    }

    /// Declares that no more samples come: the last (possibly partial) batch is built,
    /// then `pop` returns None and iteration stops.
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |p| p.finish())
    }

    /// The next batch in push order; None once `finish()` was called and every batch was
    /// returned. Blocks (without the GIL) until one is ready, or raises
    /// `damacy.TimeoutError` after `timeout` seconds (nothing is lost). Ctrl-C interrupts
    /// the wait.
    #[pyo3(signature = (timeout=None))]
    fn pop(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyBatch>> {
        let deadline = match timeout {
            Some(t) if !(t >= 0.0 && t.is_finite()) => {
                return Err(PyValueError::new_err(format!("timeout={t}: expected seconds >= 0")));
            }
            Some(t) => Some(Instant::now() + Duration::from_secs_f64(t)),
            None => None,
        };
        loop {
            let slice = deadline
                .map_or(POP_SLICE, |d| d.saturating_duration_since(Instant::now()).min(POP_SLICE));
            match self.with(py, |p| p.pop_timeout(slice))? {
                Ok(Some(b)) => return PyBatch::new(py, b, self.cuda_device()).map(Some),
                Ok(None) => return Ok(None),
                Err(damacy::Error::Timeout { .. }) => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(TimeoutError::new_err(format!(
                            "no batch was ready within {:.3} s",
                            timeout.unwrap_or_default()
                        )));
                    }
                }
                Err(e) => return Err(self.pop_error(py, e)),
            }
        }
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyBatch>> {
        self.pop(py, None)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    /// Stops the pipeline's threads and frees its buffers (batches still held stay
    /// valid until released). Idempotent; later calls raise `ClosedError`.
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            let p = self.inner.lock().unwrap_or_else(PoisonError::into_inner).take();
            drop(p);
        });
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.inner.lock().unwrap_or_else(PoisonError::into_inner).is_none())
    }

    /// The counters since creation (or `reset_stats()`), as a dict; see the Rust `Stats`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.with(py, |p| p.stats())?;
        let mut v = serde_json::to_value(&s)
            .map_err(|e| PyValueError::new_err(format!("stats do not serialize: {e}")))?;
        if let Some(m) = v.as_object_mut() {
            m.insert("read_amplification".into(), s.read_amplification().into());
            m.insert("decode_amplification".into(), s.decode_amplification().into());
        }
        py.import("json")?.call_method1("loads", (v.to_string(),))
    }

    /// Zeroes the counters (for example after warm-up).
    fn reset_stats(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |p| p.reset_stats())
    }

    /// Starts recording a timeline of the pipeline's threads (each one's steps per
    /// batch), from an empty one; see the Rust `Pipeline::start_trace`.
    fn start_trace(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |p| p.start_trace())
    }

    /// Stops recording and returns the timeline as Chrome trace-event JSON (a `str`:
    /// Perfetto and chrome://tracing open it); empty if no trace was started.
    fn take_trace(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |p| p.take_trace().to_chrome_json())
    }

    /// Which engine runs this pipeline, and why (`"host engine"`, `"host engine (Auto:
    /// ...)"`, `"CUDA engine on device 0, nvCOMP decode"`).
    #[getter]
    fn backend(&self) -> String {
        self.running.to_string()
    }

    /// Where batches live: `"cpu"` or `"cuda:N"`.
    #[getter]
    fn device(&self) -> String {
        match self.running {
            damacy::Running::Cuda { device, .. } => format!("cuda:{device}"),
            _ => "cpu".into(),
        }
    }

    /// The configuration in force.
    #[getter]
    fn config(&self) -> PyConfig {
        PyConfig { inner: self.config.clone() }
    }

    /// Test hook, not API: arms a fault of the pipeline's threads (`"coordinator_panic"`,
    /// `"feeder_panic"`) for the next `times` times its point is reached.
    fn _inject_fault(&self, py: Python<'_>, name: &str, times: u32) -> PyResult<()> {
        use damacy::fault::Fault;
        let fault = match name {
            "coordinator_panic" => Fault::CoordinatorPanic,
            "feeder_panic" => Fault::FeederPanic,
            other => return Err(PyValueError::new_err(format!("unknown fault {other:?}"))),
        };
        self.with(py, |p| p.inject_fault(fault, times))
    }

    fn __repr__(&self) -> String {
        format!("damacy.Pipeline(backend={:?})", self.backend())
    }
}

impl Drop for PyPipeline {
    fn drop(&mut self) {
        let p = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(p) = p {
            // Teardown joins the feeder, which may be waiting to attach to advance a
            // pushed generator: detach while joining.
            Python::attach(|py| py.detach(move || drop(p)));
        }
    }
}
