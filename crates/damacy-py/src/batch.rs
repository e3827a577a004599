//! `damacy.Batch`: a popped batch as a DLPack producer (`__dlpack__`,
//! `__dlpack_device__`), a numpy array source (`__array__`) and a context manager.
//!
//! Lifetime: the Python object and every capsule it exported each hold one reference on
//! the Rust batch ([`Held`]); the batch's buffer goes back to the pipeline only when the
//! last of them lets go (`release()` or garbage collection of the object, the consumer's
//! DLPack deleter for a capsule).

use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::dlpack::{self, Export, KDL_CPU, KDL_CUDA};
use crate::errors::{DlpackError, to_py};
use crate::stream::{self, ConsumerStream};

/// The Rust batch, shared by the Python object and its capsules.
#[derive(Debug)]
pub(crate) struct Held {
    batch: Option<damacy::Batch>,
    /// A consumer stream's release point, recorded by `release(stream=...)`: the buffer
    /// is reused only after it.
    release: Mutex<Option<stream::ReleasePoint>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let point = self.release.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let (Some(batch), Some(point)) = (self.batch.take(), point) {
            // A failed release-after-event has no one to report to here; the engine then
            // takes the buffer back at once, which is what dropping does as well.
            let _ = stream::release_after(batch, point);
        }
    }
}

/// A batch of `[n, ...sample_shape]` row-major samples in host or device memory.
#[pyclass(frozen, name = "Batch", module = "damacy")]
#[derive(Debug)]
pub(crate) struct PyBatch {
    held: Mutex<Option<Arc<Held>>>,
    id: u64,
    shape: Vec<u64>,
    element: zarr::DataType,
    indices: Vec<u64>,
    errors: Vec<(u64, String, String)>,
    /// `(device_type, device_id)` as DLPack names it.
    device: (i32, i32),
    data_ptr: u64,
}

/// numpy's name for an element type (`bfloat16` has none in numpy itself).
pub(crate) fn dtype_name(t: zarr::DataType) -> &'static str {
    use zarr::DataType as D;
    match t {
        D::Bool => "bool",
        D::Int8 => "int8",
        D::Int16 => "int16",
        D::Int32 => "int32",
        D::Int64 => "int64",
        D::UInt8 => "uint8",
        D::UInt16 => "uint16",
        D::UInt32 => "uint32",
        D::UInt64 => "uint64",
        D::Float16 => "float16",
        D::BFloat16 => "bfloat16",
        D::Float32 => "float32",
        D::Float64 => "float64",
    }
}

impl PyBatch {
    /// Wraps a popped batch; `device` is the pipeline's CUDA device for device batches.
    pub(crate) fn new(py: Python<'_>, batch: damacy::Batch, cuda_device: usize) -> PyResult<Self> {
        let device = if batch.is_device() {
            (KDL_CUDA, i32::try_from(cuda_device).unwrap_or(i32::MAX))
        } else {
            (KDL_CPU, 0)
        };
        let data_ptr = match batch.device_ptr() {
            Some(p) => p,
            None => batch.data().map_err(|e| to_py(py, e))?.as_ptr() as u64,
        };
        let samples = batch.samples();
        let uri_of = |index: u64| {
            samples
                .iter()
                .find(|s| s.index == index)
                .map(|s| s.uri.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        Ok(Self {
            id: batch.id(),
            shape: batch.shape().to_vec(),
            element: batch.element(),
            indices: samples.iter().map(|s| s.index).collect(),
            errors: batch.errors().iter().map(|(i, e)| (*i, uri_of(*i), e.to_string())).collect(),
            device,
            data_ptr,
            held: Mutex::new(Some(Arc::new(Held {
                batch: Some(batch),
                release: Mutex::new(None),
            }))),
        })
    }

    fn held(&self) -> PyResult<Arc<Held>> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| DlpackError::new_err("the batch was released; pop a new one"))
    }

    /// An export of the batch in place (no copy), as `dtype`.
    fn export_in_place(&self, held: Arc<Held>, dtype: (u8, u8)) -> Export {
        Export {
            data: self.data_ptr,
            device: self.device,
            dtype,
            shape: self.shape.clone(),
            owner: Box::new(held),
            copied: false,
        }
    }

    /// A host copy of the batch (the bytes of a device batch copied synchronously).
    fn export_copy(&self, py: Python<'_>, held: &Held, dtype: (u8, u8)) -> PyResult<Export> {
        let batch = held.batch.as_ref().ok_or_else(|| DlpackError::new_err("released"))?;
        let bytes = py.detach(|| batch.to_host()).map_err(|e| to_py(py, e))?;
        // The copy lives in the capsule's owner; a `Vec`'s heap data does not move.
        let data = bytes.as_ptr() as u64;
        Ok(Export {
            data,
            device: (KDL_CPU, 0),
            dtype,
            shape: self.shape.clone(),
            owner: Box::new(bytes),
            copied: true,
        })
    }
}

#[pymethods]
impl PyBatch {
    /// Exports the batch as a DLPack capsule, following the Python array API standard.
    ///
    /// `max_version >= (1, 0)` gives a versioned capsule, else a legacy one. For a
    /// device batch, `stream` is the consumer's CUDA stream (`None` or 1: the legacy
    /// default stream, 2: the per-thread default stream, > 2: a `CUstream` handle, -1: no
    /// synchronization); the stream waits on the batch's ready event (no host sync).
    /// `dl_device=(kDLCPU, 0)` on a device batch copies it to the host (unless
    /// `copy=False`); `copy=True` always copies.
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<i64>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let held = self.held()?;
        let versioned = max_version.is_some_and(|(major, _)| major >= 1);
        let dtype = dlpack::dl_dtype(self.element);
        let to_host = matches!(dl_device, Some((t, _)) if t == KDL_CPU) && self.device.0 != KDL_CPU;
        if let Some(d) = dl_device
            && d != self.device
            && d.0 != KDL_CPU
        {
            return Err(PyBufferError::new_err(format!(
                "the batch lives on device {:?} and cannot be exported to {d:?}",
                self.device
            )));
        }
        if to_host && copy == Some(false) {
            return Err(PyBufferError::new_err(
                "a device batch asked for on the CPU needs a copy, and copy=False forbids it",
            ));
        }
        if to_host || copy == Some(true) {
            let e = self.export_copy(py, &held, dtype)?;
            return dlpack::capsule(py, e, versioned);
        }
        if self.device.0 == KDL_CPU {
            if !matches!(stream, None | Some(-1)) {
                return Err(PyBufferError::new_err(format!(
                    "stream={stream:?} for a host batch: a CPU tensor has no stream (pass None)"
                )));
            }
        } else {
            let consumer = ConsumerStream::from_arg(stream)?;
            let batch = held.batch.as_ref().ok_or_else(|| DlpackError::new_err("released"))?;
            stream::wait_ready(py, batch, self.device.1, consumer)?;
        }
        dlpack::capsule(py, self.export_in_place(held, dtype), versioned)
    }

    /// `(device_type, device_id)`: `(1, 0)` (kDLCPU) for host batches, `(2, device)`
    /// (kDLCUDA) for device batches.
    fn __dlpack_device__(&self) -> (i32, i32) {
        self.device
    }

    /// A numpy view of a host batch (no copy; it keeps the buffer alive). bfloat16 has no
    /// numpy type: its bits come as `uint16`, as `damacy read` writes them.
    #[pyo3(signature = (dtype=None, copy=None))]
    fn __array__<'py>(
        slf: &Bound<'py, Self>,
        dtype: Option<Bound<'py, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let me = slf.get();
        let held = me.held()?;
        let np = py.import("numpy")?;
        let mut dt = dlpack::dl_dtype(me.element);
        if me.element == zarr::DataType::BFloat16 {
            dt = (1, 16);
        }
        let export = if me.device.0 == KDL_CPU && copy != Some(true) {
            me.export_in_place(held, dt)
        } else {
            if copy == Some(false) {
                return Err(PyBufferError::new_err(
                    "a device batch cannot be viewed without a copy",
                ));
            }
            me.export_copy(py, &held, dt)?
        };
        let capsule = dlpack::capsule(py, export, false)?;
        let holder = Bound::new(py, CapsuleHolder { capsule: Mutex::new(Some(capsule.unbind())) })?;
        let arr = np.call_method1("from_dlpack", (holder,))?;
        match dtype {
            Some(d) if !d.is_none() => arr.call_method1("astype", (d,)),
            _ => Ok(arr),
        }
    }

    /// Gives the batch's buffer back. With `stream` (a device batch's consumer stream, as
    /// in `__dlpack__`), the buffer is reused only after the work queued on that stream
    /// so far (no host sync). Tensors made from the batch keep the buffer alive until
    /// they are dropped; after that the pipeline reuses it.
    #[pyo3(signature = (stream=None))]
    fn release(&self, py: Python<'_>, stream: Option<i64>) -> PyResult<()> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(held) = held else { return Ok(()) };
        if self.device.0 != KDL_CPU
            && let Some(point) =
                stream::release_point(py, self.device.1, ConsumerStream::from_arg(stream)?)?
        {
            *held.release.lock().unwrap_or_else(PoisonError::into_inner) = Some(point);
        }
        py.detach(move || drop(held));
        Ok(())
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release(py, None)?;
        Ok(false)
    }

    /// Whether `release()` was called (tensors made from the batch may still hold it).
    #[getter]
    fn released(&self) -> bool {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).is_none()
    }

    /// The batch's sequence number (0, 1, 2, ... in pop order).
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// `(n, *sample_shape)`.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.shape.iter().copied())
    }

    /// The element type's name (`float32`, `bfloat16`, `float16`, or the source type).
    #[getter]
    fn dtype(&self) -> &'static str {
        dtype_name(self.element)
    }

    /// The samples' push indices, in order.
    #[getter]
    fn indices<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.indices.iter().copied())
    }

    /// Samples filled instead of read (`on_error="fill"`): `(index, uri, message)`.
    #[getter]
    fn errors(&self) -> Vec<(u64, String, String)> {
        self.errors.clone()
    }

    /// The address of the first element (host or device memory).
    #[getter]
    fn data_ptr(&self) -> u64 {
        self.data_ptr
    }

    /// `"cpu"` or `"cuda:N"`.
    #[getter]
    fn device(&self) -> String {
        if self.device.0 == KDL_CPU { "cpu".into() } else { format!("cuda:{}", self.device.1) }
    }

    fn __len__(&self) -> usize {
        self.shape.first().copied().unwrap_or(0) as usize
    }

    fn __repr__(&self) -> String {
        format!(
            "damacy.Batch(id={}, shape={:?}, dtype={}, device={}{})",
            self.id,
            self.shape,
            self.dtype(),
            self.device(),
            if self.released() { ", released" } else { "" }
        )
    }
}

/// A one-shot DLPack source around a ready capsule: how `__array__` hands numpy a
/// bfloat16 batch's bits as `uint16`.
#[pyclass(frozen)]
#[derive(Debug)]
struct CapsuleHolder {
    capsule: Mutex<Option<Py<PyAny>>>,
}

#[pymethods]
impl CapsuleHolder {
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__(
        &self,
        stream: Option<Bound<'_, PyAny>>,
        max_version: Option<Bound<'_, PyAny>>,
        dl_device: Option<Bound<'_, PyAny>>,
        copy: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let _ = (stream, max_version, dl_device, copy);
        self.capsule
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| PyBufferError::new_err("this capsule was already taken"))
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        (KDL_CPU, 0)
    }
}
