//! A Python iterable as the lazy sample source `Pipeline::push` takes. The pipeline's
//! feeder thread advances it (attaching to the interpreter for each item), only as the
//! lookahead has room, so infinite generators are fine. When the iterable raises, its
//! exception is kept for `pop` and the source ends by unwinding, which the facade
//! reports as `SourcePanicked { index }` after the batches of the samples before it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyIterator;

use crate::sample::PySample;

/// Exceptions raised by pushed iterables, oldest first (one per `SourcePanicked`).
pub(crate) type Raised = Arc<Mutex<VecDeque<PyErr>>>;

/// The unwind payload that ends a source whose iterable raised (not a panic message:
/// `resume_unwind` runs no panic hook, so nothing is printed).
struct SourceRaised;

/// A pushed Python iterable.
#[derive(Debug)]
pub(crate) struct PySource {
    it: Py<PyIterator>,
    raised: Raised,
    taken: u64,
}

impl PySource {
    pub(crate) fn new(it: Bound<'_, PyIterator>, raised: Raised) -> Self {
        Self { it: it.unbind(), raised, taken: 0 }
    }
}

impl Iterator for PySource {
    type Item = damacy::Sample;

    fn next(&mut self) -> Option<damacy::Sample> {
        let item = Python::attach(|py| {
            let mut it = self.it.bind(py).clone();
            match it.next() {
                None => Ok(None),
                Some(Err(e)) => Err(e),
                Some(Ok(obj)) => match obj.cast::<PySample>() {
                    Ok(s) => Ok(Some(s.get().inner.clone())),
                    Err(_) => Err(PyTypeError::new_err(format!(
                        "item {} of the iterable given to push is {}, expected damacy.Sample",
                        self.taken,
                        obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                    ))),
                },
            }
        });
        match item {
            Ok(s) => {
                self.taken += s.is_some() as u64;
                s
            }
            Err(e) => {
                self.raised.lock().unwrap_or_else(PoisonError::into_inner).push_back(e);
                std::panic::resume_unwind(Box::new(SourceRaised))
            }
        }
    }
}
