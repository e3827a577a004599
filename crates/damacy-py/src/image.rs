//! `damacy.Image(uri)`: an OME-NGFF image group (0.4 or 0.5) with its levels (shape,
//! dtype, chunks, scale, translation), axes and labels, over the facade's `Image`; and
//! the physical ↔ voxel mapping of each level.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::config::PyConfig;
use crate::errors::to_py;
use crate::sample::{PySample, slices};

/// One axis of an image: its name, type (`"space"`, `"time"`, `"channel"`, a custom
/// type, or None) and unit (or None).
#[pyclass(frozen, name = "Axis", module = "damacy")]
#[derive(Debug, Clone)]
pub(crate) struct PyAxis {
    inner: damacy::ngff::Axis,
}

#[pymethods]
impl PyAxis {
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    #[getter]
    fn r#type(&self) -> Option<&str> {
        self.inner.axis_type.as_ref().map(|t| t.as_str())
    }

    #[getter]
    fn unit(&self) -> Option<&str> {
        self.inner.unit.as_deref()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyAxis>().is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!("damacy.Axis({:?}, type={:?}, unit={:?})", self.name(), self.r#type(), self.unit())
    }
}

/// One resolution level of an image: a zarr array and its voxel → physical mapping
/// (voxel centres at `index * scale + translation`).
#[pyclass(frozen, name = "ImageLevel", module = "damacy")]
#[derive(Debug, Clone)]
pub(crate) struct PyImageLevel {
    inner: damacy::ImageLevel,
}

#[pymethods]
impl PyImageLevel {
    /// The level's index (what `Sample(..., level=...)` takes; 0 is the finest).
    #[getter]
    fn index(&self) -> usize {
        self.inner.index()
    }

    /// The dataset's path, relative to the image group.
    #[getter]
    fn path(&self) -> &str {
        self.inner.path()
    }

    /// The level array's own path.
    #[getter]
    fn uri(&self) -> String {
        self.inner.uri().to_string_lossy().into_owned()
    }

    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.shape().iter().copied())
    }

    /// The zarr data type name (`"uint16"`, `"float32"`, ...), also a numpy dtype name.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype().name()
    }

    /// The chunk shape (a sharded array's inner chunk).
    #[getter]
    fn chunks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.chunks().iter().copied())
    }

    /// A sharded array's shard shape, or None.
    #[getter]
    fn shard_shape<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.inner.shard_shape().map(|s| PyTuple::new(py, s.iter().copied())).transpose()
    }

    /// The physical size of a voxel on each axis.
    #[getter]
    fn scale<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.scale().iter().copied())
    }

    /// The physical position of voxel 0's centre on each axis.
    #[getter]
    fn translation<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.translation().iter().copied())
    }

    /// The smallest box of this level's voxels covering the physical box `lo..hi`, as a
    /// tuple of slices (a `Sample` box). Raises `ImageError` when it leaves the level.
    fn voxel_box<'py>(
        &self,
        py: Python<'py>,
        lo: Vec<f64>,
        hi: Vec<f64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let b = self.inner.voxel_box(&lo, &hi).map_err(|e| to_py(py, e))?;
        slices(py, &b.lo, &b.hi)
    }

    /// The physical extent `(lo, hi)` of a box of this level's voxels (a tuple of slices
    /// or a pair of corners, as `Sample` takes it).
    fn physical_box<'py>(
        &self,
        py: Python<'py>,
        r#box: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyTuple>)> {
        let uri = self.uri();
        let (lo, hi) = crate::sample::corners(py, &uri, r#box)?;
        let aabb = damacy::Aabb::new(lo, hi)
            .map_err(|e| crate::sample::bad_box(py, &uri, e.to_string()))?;
        let p = self.inner.physical_box(&aabb).map_err(|e| to_py(py, e))?;
        Ok((PyTuple::new(py, p.lo)?, PyTuple::new(py, p.hi)?))
    }

    fn __repr__(&self) -> String {
        let l = &self.inner;
        format!(
            "damacy.ImageLevel({}, path={:?}, shape={:?}, dtype={:?}, scale={:?}, translation={:?})",
            l.index(),
            l.path(),
            l.shape(),
            l.dtype().name(),
            l.scale(),
            l.translation()
        )
    }
}

/// An OME-NGFF image group (0.4 or 0.5): `damacy.Image(uri, config=None)` reads its
/// metadata, every level's array metadata and its `labels` list, through the same stores
/// as a pipeline (`config` supplies the object-store options; the environment too).
#[pyclass(frozen, name = "Image", module = "damacy")]
#[derive(Debug, Clone)]
pub(crate) struct PyImage {
    inner: damacy::Image,
}

#[pymethods]
impl PyImage {
    #[new]
    #[pyo3(signature = (uri, config=None))]
    fn new(py: Python<'_>, uri: std::path::PathBuf, config: Option<&PyConfig>) -> PyResult<Self> {
        let objects = config.map(|c| c.inner.object_store.clone()).unwrap_or_default();
        py.detach(|| damacy::Image::open(uri, &objects))
            .map(|inner| Self { inner })
            .map_err(|e| to_py(py, e))
    }

    /// The group's path.
    #[getter]
    fn uri(&self) -> String {
        self.inner.uri().to_string_lossy().into_owned()
    }

    /// `"0.4"` or `"0.5"`.
    #[getter]
    fn version(&self) -> &'static str {
        self.inner.version().as_str()
    }

    /// The multiscale's name, or None.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.inner.name()
    }

    /// The file the metadata came from (`zarr.json` or `.zattrs`).
    #[getter]
    fn metadata_file(&self) -> String {
        self.inner.metadata_file().to_string_lossy().into_owned()
    }

    #[getter]
    fn axes(&self) -> Vec<PyAxis> {
        self.inner.axes().iter().map(|a| PyAxis { inner: a.clone() }).collect()
    }

    /// The levels, finest first.
    #[getter]
    fn levels(&self) -> Vec<PyImageLevel> {
        self.inner.levels().iter().map(|l| PyImageLevel { inner: l.clone() }).collect()
    }

    /// The label images its `labels` group lists (paths relative to `labels/`).
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.inner.labels().to_vec()
    }

    /// The path of label image `name` (itself an image group: `damacy.Image(...)` it).
    fn label_uri(&self, name: &str) -> String {
        self.inner.label_uri(name).to_string_lossy().into_owned()
    }

    /// A sample of level `level` (`Sample(image.uri, box, level=level)`).
    fn sample(&self, py: Python<'_>, level: usize, r#box: &Bound<'_, PyAny>) -> PyResult<PySample> {
        PySample::build(py, self.inner.uri().to_owned(), r#box, Some(level))
    }

    fn __repr__(&self) -> String {
        format!(
            "damacy.Image({:?}, version={:?}, levels={}, labels={:?})",
            self.uri(),
            self.version(),
            self.inner.levels().len(),
            self.inner.labels()
        )
    }
}
