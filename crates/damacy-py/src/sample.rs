//! `damacy.Sample(uri, box, level=None)`: one crop. The box is a tuple of slices
//! (`np.s_[0:128, 64:192]`, a single slice for rank 1) or a pair `(lo, hi)` of corner
//! sequences, as the Rust `Sample::new(uri, lo, hi)` takes them; `level` picks a level of
//! an OME-NGFF image group.

use pyo3::prelude::*;
use pyo3::types::{PySlice, PyTuple};

use crate::errors::{Attr, SampleError, raise_with, to_py};

/// One crop: an array's path (or an OME-NGFF image group's, with a level) and a
/// half-open box in the array's axis order.
#[pyclass(frozen, name = "Sample", module = "damacy")]
#[derive(Debug, Clone)]
pub(crate) struct PySample {
    pub(crate) inner: damacy::Sample,
}

/// The box `lo..hi` as a tuple of slices (step 1), as `Sample.box` gives it.
pub(crate) fn slices<'py>(
    py: Python<'py>,
    lo: &[u64],
    hi: &[u64],
) -> PyResult<Bound<'py, PyTuple>> {
    let s: Vec<Bound<'py, PySlice>> =
        lo.iter().zip(hi).map(|(&l, &h)| PySlice::new(py, l as isize, h as isize, 1)).collect();
    PyTuple::new(py, s)
}

/// A `SampleError` about a box that cannot be read, naming the sample's uri.
pub(crate) fn bad_box(py: Python<'_>, uri: &str, what: String) -> PyErr {
    raise_with(
        py,
        SampleError::new_err(format!("invalid sample {uri}: {what}")),
        &[("index", Attr::None), ("uri", Attr::Str(uri.into())), ("chunk", Attr::None)],
    )
}

/// One axis of a slice box: `start:stop` with both given, non-negative, step 1.
fn axis(py: Python<'_>, uri: &str, ax: usize, s: &Bound<'_, PySlice>) -> PyResult<(u64, u64)> {
    let get = |name: &str| -> PyResult<Option<i64>> {
        let v = s.getattr(name)?;
        if v.is_none() { Ok(None) } else { v.extract().map(Some) }
    };
    let (start, stop, step) = (get("start")?, get("stop")?, get("step")?);
    if !matches!(step, None | Some(1)) {
        return Err(bad_box(py, uri, format!("axis {ax}: a step other than 1 ({step:?})")));
    }
    match (start, stop) {
        (Some(lo), Some(hi)) if lo >= 0 && hi >= 0 => Ok((lo as u64, hi as u64)),
        _ => Err(bad_box(
            py,
            uri,
            format!(
                "axis {ax}: the slice needs a non-negative start and stop (got {start:?}:{stop:?}); \
                 damacy does not know the array's shape when the sample is built"
            ),
        )),
    }
}

/// The corners of `bx`.
pub(crate) fn corners(
    py: Python<'_>,
    uri: &str,
    bx: &Bound<'_, PyAny>,
) -> PyResult<(Vec<u64>, Vec<u64>)> {
    if let Ok(s) = bx.cast::<PySlice>() {
        let (lo, hi) = axis(py, uri, 0, s)?;
        return Ok((vec![lo], vec![hi]));
    }
    let items: Vec<Bound<'_, PyAny>> = match bx.try_iter() {
        Ok(it) => it.collect::<PyResult<_>>()?,
        Err(_) => {
            return Err(bad_box(
                py,
                uri,
                "the box must be a tuple of slices or a pair (lo, hi) of sequences".into(),
            ));
        }
    };
    if !items.is_empty() && items.iter().all(|i| i.cast::<PySlice>().is_ok()) {
        let mut lo = Vec::with_capacity(items.len());
        let mut hi = Vec::with_capacity(items.len());
        for (ax, i) in items.iter().enumerate() {
            let (l, h) = axis(py, uri, ax, i.cast::<PySlice>()?)?;
            lo.push(l);
            hi.push(h);
        }
        return Ok((lo, hi));
    }
    if items.len() == 2 {
        let lo: Result<Vec<u64>, _> = items[0].extract();
        let hi: Result<Vec<u64>, _> = items[1].extract();
        if let (Ok(lo), Ok(hi)) = (lo, hi) {
            return Ok((lo, hi));
        }
    }
    Err(bad_box(
        py,
        uri,
        "the box must be a tuple of slices (np.s_[0:64, 0:64]) or a pair (lo, hi) of \
         sequences of non-negative integers"
            .into(),
    ))
}

impl PySample {
    /// A sample of `uri`'s box, of image level `level` when given.
    pub(crate) fn build(
        py: Python<'_>,
        uri: std::path::PathBuf,
        r#box: &Bound<'_, PyAny>,
        level: Option<usize>,
    ) -> PyResult<Self> {
        let shown = uri.to_string_lossy().into_owned();
        let (lo, hi) = corners(py, &shown, r#box)?;
        let inner = damacy::Sample::new(uri, lo, hi).map_err(|e| to_py(py, e))?;
        Ok(Self {
            inner: match level {
                Some(l) => inner.level(l),
                None => inner,
            },
        })
    }
}

#[pymethods]
impl PySample {
    #[new]
    #[pyo3(signature = (uri, r#box, level=None))]
    fn new(
        py: Python<'_>,
        uri: std::path::PathBuf,
        r#box: &Bound<'_, PyAny>,
        level: Option<usize>,
    ) -> PyResult<Self> {
        Self::build(py, uri, r#box, level)
    }

    /// The OME-NGFF image level (None for an array, or an image group's level 0).
    #[getter]
    fn level(&self) -> Option<usize> {
        self.inner.image_level()
    }

    /// The array's path (normalized: `.` and `a/..` removed).
    #[getter]
    fn uri(&self) -> String {
        self.inner.uri().to_string_lossy().into_owned()
    }

    /// The box's low corner (inclusive).
    #[getter]
    fn lo<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.aabb().lo.iter().copied())
    }

    /// The box's high corner (exclusive).
    #[getter]
    fn hi<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.aabb().hi.iter().copied())
    }

    /// The box as a tuple of slices (usable to index a numpy array of the whole array).
    #[getter]
    fn r#box<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        slices(py, &self.inner.aabb().lo, &self.inner.aabb().hi)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PySample>().is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        let a = self.inner.aabb();
        let axes: Vec<String> = a.lo.iter().zip(&a.hi).map(|(l, h)| format!("{l}:{h}")).collect();
        let level = self.level().map(|l| format!(", level={l}")).unwrap_or_default();
        format!("damacy.Sample({:?}, np.s_[{}]{level})", self.uri(), axes.join(", "))
    }
}
