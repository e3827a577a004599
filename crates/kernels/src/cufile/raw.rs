//! The C ABI of the cuFile entry points used, from NVIDIA's `cufile.h` (GDS 1.x, CUDA 12
//! and 13; the same declarations as cuda-python's `cycufile.pxd` generated across 12.9 to
//! 13.x). No CUDA types: a stream is the driver's opaque `CUstream` pointer.

use std::ffi::{c_int, c_uint, c_void};

/// `CUfileError_t`: a `CUfileOpError` (a C enum: `int`) and a `CUresult` (an `int`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Status {
    /// `CUfileOpError`: 0 success, else `5000 + n`.
    pub err: c_int,
    /// The CUDA driver's error when `err` is `CU_FILE_CUDA_DRIVER_ERROR`.
    pub cu_err: c_int,
}

/// `CUfileHandle_t`.
pub type Handle = *mut c_void;
/// `CUstream`.
pub type Stream = *mut c_void;
/// `off_t` on 64-bit Linux.
pub type Off = i64;

/// `CU_FILE_HANDLE_TYPE_OPAQUE_FD`: a Linux file descriptor.
pub const HANDLE_TYPE_OPAQUE_FD: c_int = 1;

/// The `handle` union of `CUfileDescr_t`.
#[derive(Clone, Copy)]
#[repr(C)]
pub union DescrHandle {
    /// A Linux file descriptor.
    pub fd: c_int,
    /// A Windows handle (unsupported by cuFile).
    pub handle: *mut c_void,
}

impl std::fmt::Debug for DescrHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Which member is live is `Descr::kind`'s to say.
        f.write_str("DescrHandle")
    }
}

/// `CUfileDescr_t`.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Descr {
    /// `enum CUfileFileHandleType`.
    pub kind: c_int,
    /// The descriptor.
    pub handle: DescrHandle,
    /// `const CUfileFSOps_t*`: null for a kernel file system.
    pub fs_ops: *const c_void,
}

/// The `nvfs` part of `CUfileDrvProps_t`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DrvPropsNvfs {
    /// nvidia-fs major version.
    pub major_version: c_uint,
    /// nvidia-fs minor version.
    pub minor_version: c_uint,
    /// Poll mode threshold in KiB.
    pub poll_thresh_size: usize,
    /// Largest direct I/O in KiB.
    pub max_direct_io_size: usize,
    /// One bit per `CUfileDriverStatusFlags_t`: the file systems GDS supports natively.
    pub dstatusflags: c_uint,
    /// One bit per `CUfileDriverControlFlags_t` (poll mode, compat mode allowed).
    pub dcontrolflags: c_uint,
}

/// `CUfileDrvProps_t`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DrvProps {
    /// nvidia-fs properties.
    pub nvfs: DrvPropsNvfs,
    /// One bit per `CUfileFeatureFlags_t` (batch I/O, streams, ...).
    pub fflags: c_uint,
    /// Device cache size in KiB.
    pub max_device_cache_size: c_uint,
    /// Per-buffer cache size in KiB.
    pub per_buffer_cache_size: c_uint,
    /// Largest pinned device memory in KiB.
    pub max_device_pinned_mem_size: c_uint,
    /// Largest batch.
    pub max_batch_io_size: c_uint,
    /// Batch timeout.
    pub max_batch_io_timeout_msecs: c_uint,
}

/// `cuFileDriverOpen` and `cuFileDriverClose_v2`.
pub type DriverCall = unsafe extern "C" fn() -> Status;
/// `cuFileDriverGetProperties`.
pub type DriverGetProperties = unsafe extern "C" fn(props: *mut DrvProps) -> Status;
/// `cuFileHandleRegister`.
pub type HandleRegister = unsafe extern "C" fn(fh: *mut Handle, descr: *mut Descr) -> Status;
/// `cuFileHandleDeregister`.
pub type HandleDeregister = unsafe extern "C" fn(fh: Handle);
/// `cuFileBufRegister`.
pub type BufRegister =
    unsafe extern "C" fn(buf_ptr_base: *const c_void, length: usize, flags: c_int) -> Status;
/// `cuFileBufDeregister`.
pub type BufDeregister = unsafe extern "C" fn(buf_ptr_base: *const c_void) -> Status;
/// `cuFileRead`: bytes read, or a negative error.
pub type Read = unsafe extern "C" fn(
    fh: Handle,
    buf_ptr_base: *mut c_void,
    size: usize,
    file_offset: Off,
    buf_ptr_offset: Off,
) -> isize;
/// `cuFileReadAsync`: the four pointers are read (and `bytes_read_p` written) when the
/// stream reaches the read, unless the stream was registered with fixed-parameter flags.
pub type ReadAsync = unsafe extern "C" fn(
    fh: Handle,
    buf_ptr_base: *mut c_void,
    size_p: *mut usize,
    file_offset_p: *mut Off,
    buf_ptr_offset_p: *mut Off,
    bytes_read_p: *mut isize,
    stream: Stream,
) -> Status;
/// `cuFileStreamRegister`.
pub type StreamRegister = unsafe extern "C" fn(stream: Stream, flags: c_uint) -> Status;
/// `cuFileStreamDeregister`.
pub type StreamDeregister = unsafe extern "C" fn(stream: Stream) -> Status;

/// Symbol names, as looked up.
pub const DRIVER_OPEN: &str = "cuFileDriverOpen";
/// `cufile.h` defines `cuFileDriverClose` as `cuFileDriverClose_v2`.
pub const DRIVER_CLOSE: &str = "cuFileDriverClose_v2";
/// Older libraries export only this name.
pub const DRIVER_CLOSE_V1: &str = "cuFileDriverClose";
/// See [`DriverGetProperties`].
pub const DRIVER_GET_PROPERTIES: &str = "cuFileDriverGetProperties";
/// See [`HandleRegister`].
pub const HANDLE_REGISTER: &str = "cuFileHandleRegister";
/// See [`HandleDeregister`].
pub const HANDLE_DEREGISTER: &str = "cuFileHandleDeregister";
/// See [`BufRegister`].
pub const BUF_REGISTER: &str = "cuFileBufRegister";
/// See [`BufDeregister`].
pub const BUF_DEREGISTER: &str = "cuFileBufDeregister";
/// See [`Read`].
pub const READ: &str = "cuFileRead";
/// See [`ReadAsync`].
pub const READ_ASYNC: &str = "cuFileReadAsync";
/// See [`StreamRegister`].
pub const STREAM_REGISTER: &str = "cuFileStreamRegister";
/// See [`StreamDeregister`].
pub const STREAM_DEREGISTER: &str = "cuFileStreamDeregister";
