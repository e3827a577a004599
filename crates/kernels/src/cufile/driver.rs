//! The cuFile driver session and registered file handles: the owning types that need no
//! CUDA type (so they build, and fail typed, on any machine).

use std::fs::File;
use std::os::fd::AsRawFd;

use super::library::{CufileLib, DriverProperties, Session};
use super::raw;
use crate::error::Result;
use crate::sync::{Arc, PoisonError};

/// The cuFile driver, opened once per library while any clone or registration lives.
#[derive(Debug, Clone)]
pub struct Driver {
    session: Arc<Session>,
}

impl Driver {
    /// Opens the driver through `lib`, or joins the session already open through it (the
    /// driver is process-wide state in libcufile, opened once).
    ///
    /// # Errors
    /// [`crate::Error::Cufile`] when `cuFileDriverOpen` fails (without nvidia-fs and with
    /// compat mode not allowed: `CU_FILE_DRIVER_NOT_INITIALIZED`; set
    /// `CUFILE_FORCE_COMPAT_MODE=true` or allow compat mode in `cufile.json`).
    pub fn open(lib: &Arc<CufileLib>) -> Result<Self> {
        // Held across the open on purpose: two first users must not both open the
        // driver (it happens once per session, not per read).
        let mut slot = lib.session.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(session) = slot.live.upgrade() {
            return Ok(Self { session });
        }
        if !slot.open {
            lib.driver_open()?;
            slot.open = true;
        }
        slot.generation += 1;
        let session = Arc::new(Session { lib: Arc::clone(lib), generation: slot.generation });
        slot.live = Arc::downgrade(&session);
        Ok(Self { session })
    }

    /// The library.
    pub fn lib(&self) -> &Arc<CufileLib> {
        &self.session.lib
    }

    /// The driver's properties (native file systems, compat mode, stream support).
    ///
    /// # Errors
    /// [`crate::Error::Cufile`] from `cuFileDriverGetProperties`.
    pub fn properties(&self) -> Result<DriverProperties> {
        self.session.lib.properties()
    }
}

/// A file registered with cuFile (`cuFileHandleRegister`); it owns the file, so the
/// descriptor stays open until the handle is deregistered in `Drop`.
#[derive(Debug)]
pub struct FileHandle {
    handle: raw::Handle,
    // Dropped after `Drop::drop` deregistered the handle.
    driver: Driver,
    file: File,
}

// SAFETY: cuFile's APIs are thread-safe (its API reference: "All APIs are thread-safe");
// the handle is an opaque token the library owns.
unsafe impl Send for FileHandle {}
// SAFETY: as above; `&FileHandle` only lends the token to reads.
unsafe impl Sync for FileHandle {}

impl FileHandle {
    /// Registers `file` (open for reading; with `O_DIRECT` for native GDS reads, any open
    /// file in compat mode).
    ///
    /// # Errors
    /// [`crate::Error::Cufile`] from `cuFileHandleRegister` (an unsupported file system
    /// without compat mode, a file not open for direct I/O where that is required).
    pub fn register(driver: &Driver, file: File) -> Result<Self> {
        // SAFETY: `file` is owned by the handle, so the descriptor outlives the
        // registration.
        let handle = unsafe { driver.lib().handle_register(file.as_raw_fd()) }?;
        Ok(Self { handle, driver: driver.clone(), file })
    }

    /// The registered file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The driver it was registered under.
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    /// The raw handle, for reads.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn raw(&self) -> raw::Handle {
        self.handle
    }
}

impl Drop for FileHandle {
    fn drop(&mut self) {
        // SAFETY: registered in `register`, deregistered once; reads borrow the handle,
        // so none is in flight (a completion waits for its read before it drops).
        unsafe { self.driver.lib().handle_deregister(self.handle) };
    }
}
