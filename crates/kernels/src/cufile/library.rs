//! The loaded library: [`CufileLib`] wraps each cuFile call into a `Result` and counts
//! registrations; error names and driver properties.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use super::raw;

use crate::error::{Error, Result};
use crate::search::{CUFILE, Candidate, SearchInputs, candidates_for, load_first};
use crate::sync::{Arc, AtomicU64, Mutex, OnceLock, Ordering, PoisonError, Weak};

/// `CUFILEOP_BASE_ERR`: cuFile's own error codes are `5000 + n`.
pub const OP_BASE_ERR: i32 = 5000;
/// `CU_FILE_CUDA_DRIVER_ERROR`: the status's `cu_err` holds the driver's error.
pub const CUDA_DRIVER_ERROR: i32 = OP_BASE_ERR + 11;
/// `CU_FILE_DRIVER_NOT_INITIALIZED`.
pub const DRIVER_NOT_INITIALIZED: i32 = OP_BASE_ERR + 1;

/// The name of a `CUfileOpError` value (`cufile.h`'s `CUFILEOP_STATUS_ENTRIES`).
pub fn op_error_name(err: i32) -> &'static str {
    match err {
        0 => "CU_FILE_SUCCESS",
        5001 => "CU_FILE_DRIVER_NOT_INITIALIZED (nvidia-fs is not loaded: allow compat mode)",
        5002 => "CU_FILE_DRIVER_INVALID_PROPS",
        5003 => "CU_FILE_DRIVER_UNSUPPORTED_LIMIT",
        5004 => "CU_FILE_DRIVER_VERSION_MISMATCH",
        5005 => "CU_FILE_DRIVER_VERSION_READ_ERROR",
        5006 => "CU_FILE_DRIVER_CLOSING",
        5007 => "CU_FILE_PLATFORM_NOT_SUPPORTED",
        5008 => "CU_FILE_IO_NOT_SUPPORTED",
        5009 => "CU_FILE_DEVICE_NOT_SUPPORTED",
        5010 => "CU_FILE_NVFS_DRIVER_ERROR",
        5011 => "CU_FILE_CUDA_DRIVER_ERROR",
        5012 => "CU_FILE_CUDA_POINTER_INVALID",
        5013 => "CU_FILE_CUDA_MEMORY_TYPE_INVALID",
        5014 => "CU_FILE_CUDA_POINTER_RANGE_ERROR",
        5015 => "CU_FILE_CUDA_CONTEXT_MISMATCH",
        5016 => "CU_FILE_INVALID_MAPPING_SIZE",
        5017 => "CU_FILE_INVALID_MAPPING_RANGE",
        5018 => "CU_FILE_INVALID_FILE_TYPE",
        5019 => "CU_FILE_INVALID_FILE_OPEN_FLAG",
        5020 => "CU_FILE_DIO_NOT_SET",
        5022 => "CU_FILE_INVALID_VALUE",
        5023 => "CU_FILE_MEMORY_ALREADY_REGISTERED",
        5024 => "CU_FILE_MEMORY_NOT_REGISTERED",
        5025 => "CU_FILE_PERMISSION_DENIED",
        5026 => "CU_FILE_DRIVER_ALREADY_OPEN",
        5027 => "CU_FILE_HANDLE_NOT_REGISTERED",
        5028 => "CU_FILE_HANDLE_ALREADY_REGISTERED",
        5029 => "CU_FILE_DEVICE_NOT_FOUND",
        5030 => "CU_FILE_INTERNAL_ERROR",
        5031 => "CU_FILE_GETNEWFD_FAILED",
        5033 => "CU_FILE_NVFS_SETUP_ERROR",
        5034 => "CU_FILE_IO_DISABLED",
        5035 => "CU_FILE_BATCH_SUBMIT_FAILED",
        5036 => "CU_FILE_GPU_MEMORY_PINNING_FAILED",
        5037 => "CU_FILE_BATCH_FULL",
        5038 => "CU_FILE_ASYNC_NOT_SUPPORTED",
        5039 => "CU_FILE_INTERNAL_BATCH_SETUP_ERROR",
        5040 => "CU_FILE_INTERNAL_BATCH_SUBMIT_ERROR",
        5041 => "CU_FILE_INTERNAL_BATCH_GETSTATUS_ERROR",
        5042 => "CU_FILE_INTERNAL_BATCH_CANCEL_ERROR",
        5043 => "CU_FILE_NOMEM_ERROR",
        5044 => "CU_FILE_IO_ERROR",
        5045 => "CU_FILE_INTERNAL_BUF_REGISTER_ERROR",
        5046 => "CU_FILE_HASH_OPR_ERROR",
        5047 => "CU_FILE_INVALID_CONTEXT_ERROR",
        5048 => "CU_FILE_NVFS_INTERNAL_DRIVER_ERROR",
        5049 => "CU_FILE_BATCH_NOCOMPAT_ERROR",
        5050 => "CU_FILE_IO_MAX_ERROR",
        _ => "unknown cuFile error",
    }
}

/// The name of a read's failure code (the negated byte count): a `CUfileOpError` above
/// 5000, else an `errno`.
pub fn io_error_name(code: i64) -> String {
    match i32::try_from(code) {
        Ok(0) => "no byte count written by the read".into(),
        Ok(c) if c > OP_BASE_ERR => op_error_name(c).into(),
        Ok(c) => format!("errno {c}: {}", std::io::Error::from_raw_os_error(c)),
        Err(_) => "an out-of-range code".into(),
    }
}

fn status(call: &'static str, s: raw::Status) -> Result<()> {
    if s.err == 0 { Ok(()) } else { Err(Error::Cufile { call, err: s.err, cu_err: s.cu_err }) }
}

/// A file system cuFile may read natively (`CUfileDriverStatusFlags_t`, the bit numbers
/// of [`DriverProperties::fs_flags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum FileSystem {
    /// DDN Lustre.
    Lustre = 0,
    /// WekaFS.
    WekaFs = 1,
    /// NFS.
    Nfs = 2,
    /// IBM Spectrum Scale (GPFS).
    Gpfs = 3,
    /// Local NVMe.
    Nvme = 4,
    /// NVMe over fabrics.
    NvmeOf = 5,
    /// SCSI.
    Scsi = 6,
    /// ScaleFlux computational storage.
    ScaleFluxCsd = 7,
    /// NVMesh block devices.
    NvMesh = 8,
    /// BeeGFS.
    BeeGfs = 9,
    /// ScateFS.
    ScateFs = 12,
    /// VirtioFS.
    VirtioFs = 13,
}

/// What `cuFileDriverGetProperties` reports, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DriverProperties {
    /// nvidia-fs version (0.0 when it is not loaded).
    pub nvfs_version: (u32, u32),
    /// One bit per [`FileSystem`] supported natively.
    pub fs_flags: u32,
    /// `CUfileDriverControlFlags_t` bits.
    pub control_flags: u32,
    /// `CUfileFeatureFlags_t` bits.
    pub feature_flags: u32,
    /// Largest direct I/O, KiB.
    pub max_direct_io_kib: u64,
}

impl DriverProperties {
    /// Decodes the C struct.
    pub fn from_raw(p: &raw::DrvProps) -> Self {
        Self {
            nvfs_version: (p.nvfs.major_version, p.nvfs.minor_version),
            fs_flags: p.nvfs.dstatusflags,
            control_flags: p.nvfs.dcontrolflags,
            feature_flags: p.fflags,
            max_direct_io_kib: p.nvfs.max_direct_io_size as u64,
        }
    }

    /// Whether GDS reads `fs` natively (DMA to the device, no bounce buffer).
    pub fn supports(&self, fs: FileSystem) -> bool {
        self.fs_flags & (1 << fs as u32) != 0
    }

    /// Whether compat mode (POSIX reads through a bounce buffer) is allowed
    /// (`CU_FILE_ALLOW_COMPAT_MODE`).
    pub fn compat_mode_allowed(&self) -> bool {
        self.control_flags & (1 << 1) != 0
    }

    /// Whether the stream APIs are supported (`CU_FILE_STREAMS_SUPPORTED`).
    pub fn streams_supported(&self) -> bool {
        self.feature_flags & (1 << 2) != 0
    }

    /// Whether batch I/O is supported (`CU_FILE_BATCH_IO_SUPPORTED`).
    pub fn batch_io_supported(&self) -> bool {
        self.feature_flags & (1 << 1) != 0
    }
}

/// Calls a library made: registrations and deregistrations of each kind, counted when
/// they succeed (a leak shows as more registrations than deregistrations once every
/// owner dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegistrationCounts {
    /// `cuFileDriverOpen` / `cuFileDriverClose`.
    pub drivers: (u64, u64),
    /// `cuFileHandleRegister` / `cuFileHandleDeregister`.
    pub handles: (u64, u64),
    /// `cuFileBufRegister` / `cuFileBufDeregister`.
    pub buffers: (u64, u64),
    /// `cuFileStreamRegister` / `cuFileStreamDeregister`.
    pub streams: (u64, u64),
}

impl RegistrationCounts {
    /// Whether every registration of every kind was deregistered.
    pub fn balanced(&self) -> bool {
        [self.drivers, self.handles, self.buffers, self.streams].iter().all(|(a, b)| a == b)
    }
}

#[derive(Debug, Default)]
struct Counters([AtomicU64; 8]);

impl Counters {
    fn bump(&self, i: usize) {
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    fn pair(&self, i: usize) -> (u64, u64) {
        (self.0[i].load(Ordering::Relaxed), self.0[i + 1].load(Ordering::Relaxed))
    }
}

const DRIVERS: usize = 0;
const HANDLES: usize = 2;
const BUFFERS: usize = 4;
const STREAMS: usize = 6;

/// A loaded cuFile library and the entry points this crate uses.
pub struct CufileLib {
    path: PathBuf,
    driver_open: raw::DriverCall,
    driver_close: raw::DriverCall,
    get_properties: raw::DriverGetProperties,
    handle_register: raw::HandleRegister,
    handle_deregister: raw::HandleDeregister,
    buf_register: raw::BufRegister,
    buf_deregister: raw::BufDeregister,
    read: raw::Read,
    read_async: raw::ReadAsync,
    stream_register: raw::StreamRegister,
    stream_deregister: raw::StreamDeregister,
    counters: Counters,
    /// The driver session opened through this library, while any owner holds it (see
    /// [`Driver::open`]).
    pub(crate) session: Mutex<SessionSlot>,
    // Last: the function pointers above must not outlive it (fields drop in order).
    _lib: libloading::Library,
}

impl std::fmt::Debug for CufileLib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CufileLib")
            .field("path", &self.path)
            .field("counts", &self.counts())
            .finish()
    }
}

fn symbol<T: Copy>(lib: &libloading::Library, path: &Path, name: &'static str) -> Result<T> {
    // SAFETY: `T` is the function pointer type declared in `raw` for this very symbol,
    // taken from cufile.h.
    unsafe { lib.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|_| Error::CufileSymbol { library: path.to_path_buf(), symbol: name })
}

impl CufileLib {
    /// Loads the first library found along `search::candidates_for(&CUFILE, inputs)`.
    ///
    /// # Errors
    /// [`Error::CufileMissing`] listing every candidate when none loads;
    /// [`Error::CufileSymbol`] when the library found lacks an entry point.
    pub fn open(inputs: &SearchInputs) -> Result<Self> {
        let list = candidates_for(&CUFILE, inputs);
        let Some((lib, path)) = load_first(&list) else {
            return Err(Error::CufileMissing {
                searched: list.iter().map(Candidate::as_path).collect(),
            });
        };
        let driver_close = symbol(&lib, &path, raw::DRIVER_CLOSE)
            .or_else(|_| symbol(&lib, &path, raw::DRIVER_CLOSE_V1))?;
        Ok(Self {
            driver_open: symbol(&lib, &path, raw::DRIVER_OPEN)?,
            driver_close,
            get_properties: symbol(&lib, &path, raw::DRIVER_GET_PROPERTIES)?,
            handle_register: symbol(&lib, &path, raw::HANDLE_REGISTER)?,
            handle_deregister: symbol(&lib, &path, raw::HANDLE_DEREGISTER)?,
            buf_register: symbol(&lib, &path, raw::BUF_REGISTER)?,
            buf_deregister: symbol(&lib, &path, raw::BUF_DEREGISTER)?,
            read: symbol(&lib, &path, raw::READ)?,
            read_async: symbol(&lib, &path, raw::READ_ASYNC)?,
            stream_register: symbol(&lib, &path, raw::STREAM_REGISTER)?,
            stream_deregister: symbol(&lib, &path, raw::STREAM_DEREGISTER)?,
            counters: Counters::default(),
            session: Mutex::new(SessionSlot::default()),
            path,
            _lib: lib,
        })
    }

    /// The process-wide library, searched for once with `SearchInputs::from_env_for(&CUFILE)`.
    ///
    /// # Errors
    /// As [`CufileLib::open`] (the first outcome is kept).
    pub fn global() -> Result<Arc<Self>> {
        static LIB: OnceLock<Result<Arc<CufileLib>>> = OnceLock::new();
        LIB.get_or_init(|| Self::open(&SearchInputs::from_env_for(&CUFILE)).map(Arc::new)).clone()
    }

    /// The file (or soname) that was loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The registrations and deregistrations made through this library so far.
    pub fn counts(&self) -> RegistrationCounts {
        let c = &self.counters;
        RegistrationCounts {
            drivers: c.pair(DRIVERS),
            handles: c.pair(HANDLES),
            buffers: c.pair(BUFFERS),
            streams: c.pair(STREAMS),
        }
    }

    /// `cuFileDriverOpen`.
    ///
    /// # Errors
    /// [`Error::Cufile`] with the library's status.
    pub fn driver_open(&self) -> Result<()> {
        // SAFETY: no arguments; the library initializes its own state.
        status(raw::DRIVER_OPEN, unsafe { (self.driver_open)() })?;
        self.counters.bump(DRIVERS);
        Ok(())
    }

    /// `cuFileDriverClose`.
    ///
    /// # Errors
    /// [`Error::Cufile`] with the library's status.
    pub fn driver_close(&self) -> Result<()> {
        // SAFETY: no arguments.
        status(raw::DRIVER_CLOSE, unsafe { (self.driver_close)() })?;
        self.counters.bump(DRIVERS + 1);
        Ok(())
    }

    /// `cuFileDriverGetProperties`, decoded.
    ///
    /// # Errors
    /// [`Error::Cufile`] with the library's status.
    pub fn properties(&self) -> Result<DriverProperties> {
        let mut p = raw::DrvProps::default();
        // SAFETY: a valid out-pointer to the C struct.
        status(raw::DRIVER_GET_PROPERTIES, unsafe { (self.get_properties)(&mut p) })?;
        Ok(DriverProperties::from_raw(&p))
    }

    /// `cuFileHandleRegister` of an open file descriptor.
    ///
    /// # Errors
    /// [`Error::Cufile`] with the library's status.
    ///
    /// # Safety
    /// `fd` must stay open until the handle is deregistered.
    pub unsafe fn handle_register(&self, fd: RawFd) -> Result<raw::Handle> {
        let mut descr = raw::Descr {
            kind: raw::HANDLE_TYPE_OPAQUE_FD,
            handle: raw::DescrHandle { fd },
            fs_ops: std::ptr::null(),
        };
        let mut h: raw::Handle = std::ptr::null_mut();
        // SAFETY: valid out-pointer and descriptor; the fd per the caller's contract.
        status(raw::HANDLE_REGISTER, unsafe { (self.handle_register)(&mut h, &mut descr) })?;
        self.counters.bump(HANDLES);
        Ok(h)
    }

    /// `cuFileHandleDeregister`.
    ///
    /// # Safety
    /// `h` must be a handle registered by this library and not deregistered yet, with no
    /// read of it in flight.
    pub unsafe fn handle_deregister(&self, h: raw::Handle) {
        // SAFETY: the caller's contract.
        unsafe { (self.handle_deregister)(h) };
        self.counters.bump(HANDLES + 1);
    }

    /// `cuFileBufRegister` of `len` bytes of device memory at `ptr`.
    ///
    /// # Errors
    /// [`Error::Cufile`] with the library's status.
    ///
    /// # Safety
    /// `ptr..ptr + len` must be device memory of the context current on this thread, live
    /// until deregistered.
    pub unsafe fn buf_register(&self, ptr: u64, len: usize) -> Result<()> {
        // SAFETY: the caller's contract.
        status(raw::BUF_REGISTER, unsafe { (self.buf_register)(ptr as *const _, len, 0) })?;
        self.counters.bump(BUFFERS);
        Ok(())
    }

    /// `cuFileBufDeregister`.
    ///
    /// # Errors
    /// [`Error::Cufile`] with the library's status.
    ///
    /// # Safety
    /// `ptr` must have been registered by this library, with no read into it in flight.
    pub unsafe fn buf_deregister(&self, ptr: u64) -> Result<()> {
        // SAFETY: the caller's contract.
        status(raw::BUF_DEREGISTER, unsafe { (self.buf_deregister)(ptr as *const _) })?;
        self.counters.bump(BUFFERS + 1);
        Ok(())
    }

    /// `cuFileRead`: a synchronous read of `size` bytes at `file_offset` into
    /// `buf + buf_offset`; the bytes read.
    ///
    /// # Errors
    /// [`Error::CufileIo`] for a negative return.
    ///
    /// # Safety
    /// `h` registered and live; `buf + buf_offset .. + size` device (or registered host)
    /// memory of the current context.
    pub unsafe fn read(
        &self,
        h: raw::Handle,
        buf: u64,
        size: usize,
        file_offset: i64,
        buf_offset: i64,
    ) -> Result<usize> {
        // SAFETY: the caller's contract.
        let n = unsafe { (self.read)(h, buf as *mut _, size, file_offset, buf_offset) };
        usize::try_from(n).map_err(|_| Error::CufileIo { call: raw::READ, code: -(n as i64) })
    }

    /// `cuFileReadAsync`: enqueues a read on `stream` taking its parameters from `params`
    /// when the stream reaches it.
    ///
    /// # Errors
    /// [`Error::Cufile`] when the read is refused.
    ///
    /// # Safety
    /// `h` registered and live; `buf` a registered device buffer holding
    /// `params.buf_offset + params.size` bytes; `params` and both stay valid until the
    /// read retired on `stream`, a stream of the current context registered with flags
    /// 0 (the parameters are read when the stream reaches the read).
    pub unsafe fn read_async(
        &self,
        h: raw::Handle,
        buf: u64,
        params: *mut super::completion::ReadParams,
        stream: raw::Stream,
    ) -> Result<()> {
        // SAFETY: the caller's contract; the field pointers lie inside the live block.
        let s = unsafe {
            (self.read_async)(
                h,
                buf as *mut _,
                &raw mut (*params).size,
                &raw mut (*params).file_offset,
                &raw mut (*params).buf_offset,
                &raw mut (*params).bytes_read,
                stream,
            )
        };
        status(raw::READ_ASYNC, s)
    }

    /// `cuFileStreamRegister` with `flags`.
    ///
    /// # Errors
    /// [`Error::Cufile`] with the library's status.
    ///
    /// # Safety
    /// `stream` a live stream of the current context, deregistered before it is destroyed.
    pub unsafe fn stream_register(&self, stream: raw::Stream, flags: u32) -> Result<()> {
        // SAFETY: the caller's contract.
        status(raw::STREAM_REGISTER, unsafe { (self.stream_register)(stream, flags) })?;
        self.counters.bump(STREAMS);
        Ok(())
    }

    /// `cuFileStreamDeregister`.
    ///
    /// # Errors
    /// [`Error::Cufile`] with the library's status.
    ///
    /// # Safety
    /// `stream` registered by this library and still alive.
    pub unsafe fn stream_deregister(&self, stream: raw::Stream) -> Result<()> {
        // SAFETY: the caller's contract.
        status(raw::STREAM_DEREGISTER, unsafe { (self.stream_deregister)(stream) })?;
        self.counters.bump(STREAMS + 1);
        Ok(())
    }
}

/// Which driver session of a library is live, and whether the driver is open.
#[derive(Debug, Default)]
pub(crate) struct SessionSlot {
    pub(crate) live: Weak<Session>,
    pub(crate) open: bool,
    pub(crate) generation: u64,
}

/// An open driver session: `cuFileDriverClose` runs when the last `Driver` clone (and
/// every registration made under it, each holding one) is dropped, unless a newer session
/// took the open driver over meanwhile.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) lib: Arc<CufileLib>,
    pub(crate) generation: u64,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Under the slot's lock, so that an open racing with this close either took the
        // driver over (a newer generation: no close) or waits for the close to finish.
        let mut slot = self.lib.session.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.generation == self.generation && slot.open {
            slot.open = false;
            // Nothing to do about a failing close at teardown; the counts show it.
            let _ = self.lib.driver_close();
        }
    }
}
