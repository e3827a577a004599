//! DLPack capsules (dlpack.h 1.0, and the legacy pre-1.0 struct) as the Python array API
//! standard's `__dlpack__` hands them out.
//!
//! The capsule protocol: the producer names a capsule `dltensor` (`dltensor_versioned`);
//! a consumer that takes the tensor renames it `used_dltensor` (`used_dltensor_versioned`)
//! and calls the managed tensor's `deleter` when done. The capsule's destructor calls the
//! deleter only when nobody took the tensor. The deleter may run on any thread, with or
//! without the GIL, so what it frees (`Export::owner`) is plain Rust that needs no GIL.

use std::any::Any;
use std::ffi::{CStr, c_void};

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;

/// `DLDeviceType::kDLCPU`.
pub(crate) const KDL_CPU: i32 = 1;
/// `DLDeviceType::kDLCUDA`.
pub(crate) const KDL_CUDA: i32 = 2;

/// `DLPACK_FLAG_BITMASK_IS_COPIED`.
const FLAG_IS_COPIED: u64 = 1 << 1;

const NAME: &CStr = c"dltensor";
const USED_NAME: &CStr = c"used_dltensor";
const VERSIONED_NAME: &CStr = c"dltensor_versioned";
const USED_VERSIONED_NAME: &CStr = c"used_dltensor_versioned";

#[repr(C)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

#[repr(C)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

#[repr(C)]
struct DLPackVersion {
    major: u32,
    minor: u32,
}

#[repr(C)]
struct DLManagedTensorVersioned {
    version: DLPackVersion,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    flags: u64,
    dl_tensor: DLTensor,
}

/// The element type as DLPack spells it: `(type code, bits)`.
pub(crate) fn dl_dtype(t: zarr::DataType) -> (u8, u8) {
    use zarr::DataType as D;
    // kDLInt 0, kDLUInt 1, kDLFloat 2, kDLBfloat 4, kDLBool 6.
    match t {
        D::Bool => (6, 8),
        D::Int8 => (0, 8),
        D::Int16 => (0, 16),
        D::Int32 => (0, 32),
        D::Int64 => (0, 64),
        D::UInt8 => (1, 8),
        D::UInt16 => (1, 16),
        D::UInt32 => (1, 32),
        D::UInt64 => (1, 64),
        D::Float16 => (2, 16),
        D::BFloat16 => (4, 16),
        D::Float32 => (2, 32),
        D::Float64 => (2, 64),
    }
}

/// What one capsule exports: a dense row-major tensor and what keeps its memory alive.
pub(crate) struct Export {
    /// The first element (host or device address).
    pub(crate) data: u64,
    /// `(device_type, device_id)`.
    pub(crate) device: (i32, i32),
    /// `(type code, bits)`.
    pub(crate) dtype: (u8, u8),
    pub(crate) shape: Vec<u64>,
    /// Dropped when the consumer lets go (any thread, no GIL needed).
    pub(crate) owner: Box<dyn Any + Send>,
    /// The producer made a copy for this capsule (`copy=True`, or a device batch asked
    /// for on the CPU).
    pub(crate) copied: bool,
}

/// A managed tensor with the arrays it points into and its owner, freed as one box.
/// `#[repr(C)]` with the managed struct first: the deleter's pointer is the box's.
#[repr(C)]
struct Legacy {
    managed: DLManagedTensor,
    shape: Box<[i64]>,
    strides: Box<[i64]>,
    owner: Box<dyn Any + Send>,
}

#[repr(C)]
struct Versioned {
    managed: DLManagedTensorVersioned,
    shape: Box<[i64]>,
    strides: Box<[i64]>,
    owner: Box<dyn Any + Send>,
}

/// Frees a `Legacy` box (the DLPack deleter).
///
/// # Safety
/// `m` must come from `Box::into_raw` of a `Legacy` in [`capsule`], and be deleted once.
unsafe extern "C" fn delete_legacy(m: *mut DLManagedTensor) {
    // A panic must not unwind into C (it would abort): dropping the owner runs the batch's
    // Drop, which gives the buffer back to the engine.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: per the contract above, `m` is the start of a boxed `Legacy`.
        drop(unsafe { Box::from_raw(m.cast::<Legacy>()) });
    });
}

/// Frees a `Versioned` box (the DLPack deleter).
///
/// # Safety
/// As [`delete_legacy`], for a `Versioned`.
unsafe extern "C" fn delete_versioned(m: *mut DLManagedTensorVersioned) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: per the contract above, `m` is the start of a boxed `Versioned`.
        drop(unsafe { Box::from_raw(m.cast::<Versioned>()) });
    });
}

/// The capsule destructor: deletes the tensor unless a consumer took it (renamed the
/// capsule). Runs with the GIL held; raises nothing.
///
/// # Safety
/// `capsule` is a live capsule made by [`capsule`].
unsafe extern "C" fn destroy_legacy(capsule: *mut ffi::PyObject) {
    // SAFETY: `capsule` is live; IsValid only reads its name and sets no error.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, USED_NAME.as_ptr()) == 1
            || ffi::PyCapsule_IsValid(capsule, NAME.as_ptr()) != 1
        {
            return;
        }
        let m = ffi::PyCapsule_GetPointer(capsule, NAME.as_ptr()).cast::<DLManagedTensor>();
        if let Some(d) = m.as_ref().and_then(|m| m.deleter) {
            d(m);
        }
    }
}

/// As [`destroy_legacy`], for versioned capsules.
///
/// # Safety
/// As [`destroy_legacy`].
unsafe extern "C" fn destroy_versioned(capsule: *mut ffi::PyObject) {
    // SAFETY: as in `destroy_legacy`.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, USED_VERSIONED_NAME.as_ptr()) == 1
            || ffi::PyCapsule_IsValid(capsule, VERSIONED_NAME.as_ptr()) != 1
        {
            return;
        }
        let m = ffi::PyCapsule_GetPointer(capsule, VERSIONED_NAME.as_ptr())
            .cast::<DLManagedTensorVersioned>();
        if let Some(d) = m.as_ref().and_then(|m| m.deleter) {
            d(m);
        }
    }
}

/// `shape` and its row-major strides (in elements) as DLPack's `int64_t` arrays.
/// DLPack's `int64_t` shape (or strides) array.
type Dims = Box<[i64]>;

fn shape_and_strides(shape: &[u64]) -> PyResult<(Dims, Dims)> {
    let too_big = || PyValueError::new_err(format!("shape {shape:?} does not fit int64"));
    let dims: Vec<i64> =
        shape.iter().map(|&d| i64::try_from(d)).collect::<Result<_, _>>().map_err(|_| too_big())?;
    let mut strides = vec![1i64; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1].checked_mul(dims[i + 1].max(1)).ok_or_else(too_big)?;
    }
    Ok((dims.into_boxed_slice(), strides.into_boxed_slice()))
}

/// A new capsule exporting `e`: versioned (DLPack 1.0) or legacy.
pub(crate) fn capsule(py: Python<'_>, e: Export, versioned: bool) -> PyResult<Bound<'_, PyAny>> {
    let (mut shape, mut strides) = shape_and_strides(&e.shape)?;
    let ndim = i32::try_from(shape.len())
        .map_err(|_| PyValueError::new_err("too many dimensions for DLPack"))?;
    let tensor = DLTensor {
        data: e.data as usize as *mut c_void,
        device: DLDevice { device_type: e.device.0, device_id: e.device.1 },
        ndim,
        dtype: DLDataType { code: e.dtype.0, bits: e.dtype.1, lanes: 1 },
        shape: shape.as_mut_ptr(),
        strides: strides.as_mut_ptr(),
        byte_offset: 0,
    };
    // The boxed slices' heap storage does not move when the box holding them does, so the
    // pointers above stay valid for the life of the box.
    let (ptr, name, destructor): (*mut c_void, &CStr, ffi::PyCapsule_Destructor) = if versioned {
        let b = Box::new(Versioned {
            managed: DLManagedTensorVersioned {
                version: DLPackVersion { major: 1, minor: 0 },
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_versioned),
                flags: if e.copied { FLAG_IS_COPIED } else { 0 },
                dl_tensor: tensor,
            },
            shape,
            strides,
            owner: e.owner,
        });
        (Box::into_raw(b).cast(), VERSIONED_NAME, destroy_versioned as ffi::PyCapsule_Destructor)
    } else {
        let b = Box::new(Legacy {
            managed: DLManagedTensor {
                dl_tensor: tensor,
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_legacy),
            },
            shape,
            strides,
            owner: e.owner,
        });
        (Box::into_raw(b).cast(), NAME, destroy_legacy as ffi::PyCapsule_Destructor)
    };
    // SAFETY: `ptr` is a live box whose first field is the managed tensor; the name is a
    // static C string, as the capsule API requires (it keeps the pointer).
    let obj = unsafe { ffi::PyCapsule_New(ptr, name.as_ptr(), Some(destructor)) };
    if obj.is_null() {
        // The capsule was not made: the box is still ours to free.
        // SAFETY: `ptr` came from `Box::into_raw` just above and was handed to no one.
        unsafe {
            if versioned {
                delete_versioned(ptr.cast());
            } else {
                delete_legacy(ptr.cast());
            }
        }
    }
    // SAFETY: `obj` is a new reference or null with the error set.
    unsafe { Bound::from_owned_ptr_or_err(py, obj) }
}
