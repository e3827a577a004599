//! CUDA stream semantics of `__dlpack__(stream=...)` and `release(stream=...)`, as the
//! Python array API standard defines them: `None` and 1 the legacy default stream, 2 the
//! per-thread default stream, an integer > 2 a `CUstream` handle, -1 no synchronization
//! (0 is ambiguous and refused). The raw values 1 and 2 are the driver's own
//! `CU_STREAM_LEGACY` and `CU_STREAM_PER_THREAD` handles, so every stream passes through
//! as a handle. CUDA calls go through `gpu-schedule` (built with the `cuda` feature);
//! without it no batch lives on a device and only the argument checks run.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The consumer's stream, as `__dlpack__` receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsumerStream {
    /// `-1`: the consumer synchronizes by itself.
    NoSync,
    /// A `CUstream` handle (1 and 2 are the legacy and per-thread default streams).
    Handle(u64),
}

impl ConsumerStream {
    /// Reads the `stream` argument.
    ///
    /// # Errors
    /// `ValueError` for 0 (ambiguous under the standard) and negative values other than -1.
    pub(crate) fn from_arg(stream: Option<i64>) -> PyResult<Self> {
        match stream {
            None => Ok(Self::Handle(1)),
            Some(-1) => Ok(Self::NoSync),
            Some(0) => Err(PyValueError::new_err(
                "stream=0 is ambiguous for CUDA (the array API standard disallows it): pass 1 \
                 for the legacy default stream, 2 for the per-thread default stream, or a \
                 stream handle",
            )),
            Some(s) if s > 0 => Ok(Self::Handle(s as u64)),
            Some(s) => Err(PyValueError::new_err(format!(
                "stream={s}: expected None, -1, 1, 2 or a CUDA stream handle"
            ))),
        }
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use std::sync::{Arc, Mutex, PoisonError};

    use gpu_schedule::{Backend as _, CudaBackend, CudaEventHandle};
    use pyo3::prelude::*;

    use super::ConsumerStream;
    use crate::errors::GpuError;

    /// An event recorded on the consumer's stream at `release(stream=...)`.
    #[derive(Debug)]
    pub(crate) struct ReleasePoint {
        event: CudaEventHandle,
    }

    /// One backend per device, opened on first use (the device's primary context, the
    /// one torch and cupy use).
    fn backend(device: i32) -> PyResult<Arc<CudaBackend>> {
        static OPEN: Mutex<Vec<(i32, Arc<CudaBackend>)>> = Mutex::new(Vec::new());
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, b)) = open.iter().find(|(d, _)| *d == device) {
            return Ok(Arc::clone(b));
        }
        let b = CudaBackend::new(usize::try_from(device).unwrap_or(0))
            .map(Arc::new)
            .map_err(|e| GpuError::new_err(format!("gpu: opening device {device}: {e}")))?;
        open.push((device, Arc::clone(&b)));
        Ok(b)
    }

    /// Makes the consumer's stream wait on the batch's ready event (no host sync).
    pub(crate) fn wait_ready(
        py: Python<'_>,
        batch: &damacy::Batch,
        device: i32,
        stream: ConsumerStream,
    ) -> PyResult<()> {
        let ConsumerStream::Handle(s) = stream else { return Ok(()) };
        let Some(event) = batch.ready_event() else { return Ok(()) };
        let b = backend(device)?;
        // SAFETY: the event is the batch's, alive while the batch is (borrowed here); the
        // stream handle is the consumer's, which the standard makes the consumer vouch
        // for (a live stream of this device's primary context, or 1/2).
        py.detach(|| unsafe { b.foreign_wait(s, event) })
            .map_err(|e| GpuError::new_err(format!("gpu: making stream {s:#x} wait: {e}")))
    }

    /// Records an event on the consumer's stream, for a release after it.
    pub(crate) fn release_point(
        py: Python<'_>,
        device: i32,
        stream: ConsumerStream,
    ) -> PyResult<Option<ReleasePoint>> {
        let ConsumerStream::Handle(s) = stream else { return Ok(None) };
        let b = backend(device)?;
        py.detach(|| {
            let event = b.create_event()?;
            // SAFETY: as in `wait_ready`, the consumer vouches for its stream.
            unsafe { event.record_raw(s) }?;
            Ok::<_, gpu_schedule::Error>(ReleasePoint { event })
        })
        .map(Some)
        .map_err(|e| GpuError::new_err(format!("gpu: recording a release on stream {s:#x}: {e}")))
    }

    /// Gives `batch` back once `point` has passed on the device.
    pub(crate) fn release_after(batch: damacy::Batch, point: ReleasePoint) -> damacy::Result<()> {
        // SAFETY: the event is live (owned by `point`, dropped after this call returns,
        // when the engine's wait on it is enqueued) and belongs to the device's primary
        // context, which is the pipeline's.
        unsafe { batch.release_event(point.event.raw()) }
    }
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use pyo3::prelude::*;

    use super::ConsumerStream;
    use crate::errors::GpuError;

    /// Without the CUDA engine there is nothing to release after.
    #[derive(Debug)]
    pub(crate) enum ReleasePoint {}

    /// Never reached: without the `cuda` feature no batch lives on a device.
    pub(crate) fn wait_ready(
        _py: Python<'_>,
        _batch: &damacy::Batch,
        _device: i32,
        _stream: ConsumerStream,
    ) -> PyResult<()> {
        Err(GpuError::new_err("this build of damacy has no CUDA engine"))
    }

    /// Nothing to record without CUDA.
    pub(crate) fn release_point(
        _py: Python<'_>,
        _device: i32,
        _stream: ConsumerStream,
    ) -> PyResult<Option<ReleasePoint>> {
        Ok(None)
    }

    pub(crate) fn release_after(batch: damacy::Batch, point: ReleasePoint) -> damacy::Result<()> {
        drop(batch);
        match point {}
    }
}

pub(crate) use imp::{ReleasePoint, release_after, release_point, wait_ready};
