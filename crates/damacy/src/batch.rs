//! Samples going in and batches coming out.

use std::path::PathBuf;
use std::sync::Arc;

use zarr::{Aabb, DataType};

use crate::config::OutDtype;
use crate::error::{Error, Result, SampleError};
use crate::slots::{SlotLease, Slots};

/// One crop: an array's absolute path and a half-open box in the array's axis order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sample {
    pub uri: PathBuf,
    pub aabb: Aabb,
}

impl Sample {
    /// A sample from corners.
    ///
    /// # Errors
    /// `Sample` with a format error when the box is empty or the corners' ranks differ.
    ///
    /// The uri is normalized lexically (`.` and `a/..` removed) so that paths like
    /// `/data/run/../a.zarr` name the array they mean; symbolic links are not resolved.
    pub fn new(uri: impl Into<PathBuf>, lo: Vec<u64>, hi: Vec<u64>) -> Result<Self> {
        let uri = normalize(&uri.into());
        match Aabb::new(lo, hi) {
            Ok(aabb) => Ok(Self { uri, aabb }),
            Err(e) => Err(Error::Sample {
                index: u64::MAX,
                uri,
                source: Box::new(SampleError::Format(e)),
            }),
        }
    }
}

/// Removes `.` components and resolves `..` against the preceding component.
fn normalize(p: &std::path::Path) -> PathBuf {
    use std::path::Component;
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
}

/// A finished batch: a `[n, ...sample_shape]` row-major tensor in host memory. Dropping
/// it returns its buffer to the pipeline. Several batches may be held at once; each owns
/// its own buffer.
#[derive(Debug)]
pub struct Batch {
    pub(crate) id: u64,
    pub(crate) shape: Vec<u64>,
    pub(crate) dtype: OutDtype,
    pub(crate) element: DataType,
    pub(crate) samples: Vec<SampleInfo>,
    pub(crate) errors: Vec<(u64, SampleError)>,
    pub(crate) bytes: usize,
    pub(crate) lease: Option<SlotLease>,
    pub(crate) slots: Arc<Slots>,
}

impl Batch {
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

    /// The tensor's bytes (native endian).
    pub fn data(&self) -> &[u8] {
        match &self.lease {
            Some(l) => &self.slots.bytes(l)[..self.bytes],
            None => &[],
        }
    }

    /// The tensor as `f32` values, when the element type is `Float32`.
    pub fn as_f32(&self) -> Option<&[f32]> {
        (self.element == DataType::Float32).then(|| bytemuck::cast_slice(self.data()))
    }

    /// The tensor as `u16` values (bf16/f16 bits, or a u16 source with `Native`).
    pub fn as_u16(&self) -> Option<&[u16]> {
        (self.element.size() == 2).then(|| bytemuck::cast_slice(self.data()))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.slots.release(lease);
        }
    }
}
