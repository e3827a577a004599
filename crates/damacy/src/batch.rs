//! Samples going in and batches coming out.

use std::path::PathBuf;
use zarr::{Aabb, DataType};

use crate::config::OutDtype;
use crate::error::{Error, Result, SampleError};

/// One crop: an array's absolute path and a half-open box in the array's axis order. The
/// path may also name an OME-NGFF image group, with a [level](Sample::level) (default 0):
/// the box is then in that level's voxels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sample {
    pub(crate) uri: PathBuf,
    pub(crate) aabb: Aabb,
    pub(crate) level: Option<usize>,
}

impl Sample {
    /// A sample from corners. Fields are private so that every sample is validated here.
    ///
    /// The uri is normalized lexically (`.` and `a/..` removed) so that paths like
    /// `/data/run/../a.zarr` name the array they mean; symbolic links are not resolved.
    ///
    /// # Errors
    /// `InvalidSample` when the box is empty, its corners' ranks differ or its rank is
    /// outside 1..=32, or the path is not valid UTF-8.
    pub fn new(uri: impl Into<PathBuf>, lo: Vec<u64>, hi: Vec<u64>) -> Result<Self> {
        let uri = normalize(&uri.into());
        if uri.to_str().is_none() {
            return Err(Error::InvalidSample { uri, source: Box::new(SampleError::NonUtf8Path) });
        }
        match Aabb::new(lo, hi) {
            Ok(aabb) => Ok(Self { uri, aabb, level: None }),
            Err(e) => Err(Error::InvalidSample { uri, source: Box::new(SampleError::Format(e)) }),
        }
    }

    /// Reads level `level` (an index into the image's `multiscales[0].datasets`, 0 the
    /// highest resolution) of the OME-NGFF image group the uri names. The level is
    /// resolved on the prefetcher's threads; a level past the last one, or a level on a
    /// uri that is an array, fails the sample at `pop` with [`SampleError::Image`].
    ///
    /// ```no_run
    /// let s = damacy::Sample::new("/data/image.ome.zarr", vec![0, 0, 0], vec![32, 64, 64])?
    ///     .level(2);
    /// assert_eq!(s.image_level(), Some(2));
    /// # Ok::<(), damacy::Error>(())
    /// ```
    #[must_use]
    pub fn level(mut self, level: usize) -> Self {
        self.level = Some(level);
        self
    }

    /// The array's path (or the image group's).
    pub fn uri(&self) -> &std::path::Path {
        &self.uri
    }

    /// The image level asked for with [`level`](Self::level); `None` for an array (an
    /// image group without one reads level 0).
    pub fn image_level(&self) -> Option<usize> {
        self.level
    }

    /// The box, in the array's axis order.
    pub fn aabb(&self) -> &Aabb {
        &self.aabb
    }
}

/// Removes `.` components and resolves `..` against the preceding component. A uri with
/// a scheme (`s3://bucket/a/../b`) keeps its `scheme://authority` and has its path part
/// normalized the same way (a `..` never climbs above the bucket).
pub(crate) fn normalize(p: &std::path::Path) -> PathBuf {
    use std::path::Component;
    if let Some(text) = p.to_str()
        && let Some((scheme, rest)) = text.split_once("://")
        && !scheme.is_empty()
        && !scheme.contains('/')
    {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut parts: Vec<&str> = Vec::new();
        for seg in path.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                s => parts.push(s),
            }
        }
        let path = parts.join("/");
        return PathBuf::from(if scheme == "file" {
            format!("file:///{path}")
        } else {
            format!("{scheme}://{authority}/{path}")
        });
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                // At the root (or an empty relative path) there is nothing to go up to:
                // keep `..` only for relative paths, where it is meaningful to the store.
                let popped =
                    matches!(out.components().next_back(), Some(Component::Normal(_))) && out.pop();
                if !popped && !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// What the caller learns about each sample of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleInfo {
    /// Position in push order, counted from 0 over the pipeline's life.
    pub index: u64,
    pub uri: PathBuf,
    pub aabb: Aabb,
    /// The image level the sample read, when its uri is an OME-NGFF image group.
    pub level: Option<usize>,
}

/// A batch's tensor as an engine hands it out; dropping it gives the buffer back to the
/// engine.
pub(crate) trait Tensor: Send + Sync + std::fmt::Debug {
    /// The bytes, for a tensor in host memory.
    fn host(&self) -> Option<&[u8]>;
    /// Device access, for a tensor in device memory.
    fn device(&self) -> Option<&dyn DeviceTensor> {
        None
    }
    /// Gives the buffer back once `event` completed on the device (host tensors: at once).
    ///
    /// # Errors
    /// `Gpu` when the driver refuses the wait.
    ///
    /// # Safety
    /// As [`Batch::release_event`].
    unsafe fn release_event(self: Box<Self>, _event: u64) -> Result<()> {
        Ok(())
    }
}

/// A tensor in device memory, as the CUDA engine hands it out.
pub(crate) trait DeviceTensor: Send + Sync + std::fmt::Debug {
    fn device_ptr(&self) -> Option<u64>;
    fn ready_event(&self) -> Option<u64>;
    fn ready_stream(&self) -> Option<u64>;
    /// A synchronous copy to host memory.
    fn to_host(&self) -> Result<Vec<u8>>;
}

/// A finished batch: a `[n, ...sample_shape]` row-major tensor in host or device memory.
/// Dropping it returns its buffer to the pipeline. Several batches may be held at once;
/// each owns its own buffer.
#[derive(Debug)]
pub struct Batch {
    id: u64,
    shape: Vec<u64>,
    dtype: OutDtype,
    element: DataType,
    samples: Vec<SampleInfo>,
    errors: Vec<(u64, SampleError)>,
    storage: Option<Box<dyn Tensor>>,
    /// A host copy of a device tensor, made by the first `data()`.
    host_copy: std::sync::OnceLock<Vec<u8>>,
}

impl Batch {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        shape: Vec<u64>,
        dtype: OutDtype,
        element: DataType,
        samples: Vec<SampleInfo>,
        errors: Vec<(u64, SampleError)>,
        storage: Box<dyn Tensor>,
    ) -> Self {
        Self {
            id,
            shape,
            dtype,
            element,
            samples,
            errors,
            storage: Some(storage),
            host_copy: std::sync::OnceLock::new(),
        }
    }

    /// The batch's sequence number (0, 1, 2, ... in pop order).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// `[n, ...sample_shape]`.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// The requested output dtype.
    pub fn dtype(&self) -> OutDtype {
        self.dtype
    }

    /// The element type of the data (`Float32` for `F32`, the source type for `Native`).
    pub fn element(&self) -> DataType {
        self.element
    }

    /// The samples, in push order.
    pub fn samples(&self) -> &[SampleInfo] {
        &self.samples
    }

    /// Samples that were filled instead of read (`OnError::Fill`), by push index.
    pub fn errors(&self) -> &[(u64, SampleError)] {
        &self.errors
    }

    fn device(&self) -> Option<&dyn DeviceTensor> {
        self.storage.as_ref().and_then(|t| t.device())
    }

    /// The tensor's bytes (native endian). For a batch of the CUDA engine the first call
    /// copies the tensor to the host (synchronously) and keeps the copy.
    ///
    /// # Errors
    /// `Gpu` when the device copy fails (a later call tries again); never an empty or
    /// partial slice in place of the data.
    pub fn data(&self) -> Result<&[u8]> {
        if let Some(d) = self.device() {
            if let Some(copy) = self.host_copy.get() {
                return Ok(copy);
            }
            let copy = d.to_host()?;
            return Ok(self.host_copy.get_or_init(|| copy));
        }
        Ok(self.storage.as_ref().and_then(|t| t.host()).unwrap_or(&[]))
    }

    /// The tensor as `f32` values; `None` when the element type is not `Float32`.
    ///
    /// # Errors
    /// As [`Batch::data`].
    pub fn as_f32(&self) -> Result<Option<&[f32]>> {
        if self.element != DataType::Float32 {
            return Ok(None);
        }
        Ok(Some(bytemuck::cast_slice(self.data()?)))
    }

    /// The tensor as `u16` values (bf16/f16 bits, or a 2-byte source with `Native`);
    /// `None` for other element types.
    ///
    /// # Errors
    /// As [`Batch::data`].
    pub fn as_u16(&self) -> Result<Option<&[u16]>> {
        if self.element.size() != 2 {
            return Ok(None);
        }
        Ok(Some(bytemuck::cast_slice(self.data()?)))
    }

    /// A copy of the tensor in host memory (synchronous for a device batch).
    ///
    /// # Errors
    /// `Gpu` when the device copy fails.
    pub fn to_host(&self) -> Result<Vec<u8>> {
        match self.device() {
            Some(d) => d.to_host(),
            None => Ok(self.data()?.to_vec()),
        }
    }

    /// Whether the tensor lives in device memory.
    pub fn is_device(&self) -> bool {
        self.device().is_some()
    }

    /// The device address of the tensor (CUDA engine only).
    pub fn device_ptr(&self) -> Option<u64> {
        self.device().and_then(|d| d.device_ptr())
    }

    /// The raw `CUevent` recorded after the tensor's last write (CUDA engine only): a
    /// consumer on another stream waits on it before reading.
    pub fn ready_event(&self) -> Option<u64> {
        self.device().and_then(|d| d.ready_event())
    }

    /// The raw `CUstream` the tensor was written on (CUDA engine only).
    pub fn ready_stream(&self) -> Option<u64> {
        self.device().and_then(|d| d.ready_stream())
    }

    /// Returns the batch's buffer once `event` (a raw `CUevent`, recorded by the consumer
    /// after its last use of the tensor) has completed on the device, without a host
    /// sync. For a host batch this is the same as dropping it.
    ///
    /// # Errors
    /// `Gpu` when the driver refuses the wait.
    ///
    /// # Safety
    /// For a device batch, `event` must be a live `CUevent` of the pipeline's CUDA context
    /// (the device's primary context, as torch and cupy use it), recorded after the
    /// consumer's last use of the tensor, and it must stay alive until that wait has been
    /// enqueued (this call returns). The driver dereferences it: any other integer is
    /// undefined behaviour. For a host batch the event is not used.
    pub unsafe fn release_event(mut self, event: u64) -> Result<()> {
        match self.storage.take() {
            // SAFETY: the caller's contract above is the tensor's.
            Some(t) => unsafe { t.release_event(event) },
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device tensor whose copy to the host fails, as a broken device would.
    #[derive(Debug)]
    struct FailingDevice;

    impl Tensor for FailingDevice {
        fn host(&self) -> Option<&[u8]> {
            None
        }
        fn device(&self) -> Option<&dyn DeviceTensor> {
            Some(self)
        }
    }

    impl DeviceTensor for FailingDevice {
        fn device_ptr(&self) -> Option<u64> {
            Some(0x1000)
        }
        fn ready_event(&self) -> Option<u64> {
            None
        }
        fn ready_stream(&self) -> Option<u64> {
            None
        }
        fn to_host(&self) -> Result<Vec<u8>> {
            Err(Error::Closed)
        }
    }

    #[test]
    fn a_failed_device_copy_is_an_error_never_an_empty_tensor() {
        let b = Batch::new(
            0,
            vec![1, 4],
            OutDtype::F32,
            DataType::Float32,
            Vec::new(),
            Vec::new(),
            Box::new(FailingDevice),
        );
        assert!(b.is_device());
        assert!(matches!(b.data(), Err(Error::Closed)));
        assert!(matches!(b.as_f32(), Err(Error::Closed)));
        assert!(matches!(b.to_host(), Err(Error::Closed)));
        // A later call tries again rather than caching the failure as data.
        assert!(b.data().is_err());
    }

    #[test]
    fn uris_with_a_scheme_keep_it_and_normalize_their_path() {
        let n = |s: &str| normalize(std::path::Path::new(s)).display().to_string();
        assert_eq!(n("s3://bucket/a.zarr"), "s3://bucket/a.zarr");
        assert_eq!(n("s3://bucket/x/../a.zarr/./"), "s3://bucket/a.zarr");
        assert_eq!(n("s3://bucket/../../a.zarr"), "s3://bucket/a.zarr", "never above the bucket");
        assert_eq!(n("http://127.0.0.1:80/d//a.zarr"), "http://127.0.0.1:80/d/a.zarr");
        assert_eq!(n("file:///data/../a.zarr"), "file:///a.zarr");
        assert_eq!(n("/data/run/../a.zarr"), "/data/a.zarr");
    }
}
