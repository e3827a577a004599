//! The completion of an asynchronous cuFile read: a signal ordered *after* the read on its
//! stream, never a "submitted" flag.
//!
//! The C predecessor's history (damacy #116–#119) records a completion query that said
//! "done" for any submitted `cuFileReadAsync`, before the read had retired on its stream,
//! so kernels read bytes not yet written. Here a [`ReadCompletion`] can only be made from
//! a [`Retirement`] that the stream reaches after the read (on a GPU, an event recorded
//! on the read's stream right after it), and it owns the parameter block cuFile reads and
//! writes when the stream reaches the read, so that block outlives the read: dropping a
//! completion whose read has not retired waits for it (and leaks the block if even that
//! wait fails, rather than free memory the read may still write).

use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::error::{Error, Result};

/// A signal that the stream of a read passes after the read retired.
pub trait Retirement {
    /// Whether the stream has passed the signal, without blocking.
    ///
    /// # Errors
    /// A failure of the query (the device's error).
    fn query(&self) -> Result<bool>;

    /// Blocks until the stream passed the signal.
    ///
    /// # Errors
    /// A failure of the wait (the device's error).
    fn wait(&self) -> Result<()>;
}

/// What `cuFileReadAsync` reads (size and offsets) and writes (bytes read, or a negative
/// error) when its stream reaches the read; it must stay in place until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct ReadParams {
    /// Bytes to read.
    pub size: usize,
    /// Offset in the file.
    pub file_offset: i64,
    /// Offset in the registered buffer.
    pub buf_offset: i64,
    /// Written by cuFile: bytes read, or a negative error.
    pub bytes_read: isize,
}

impl ReadParams {
    /// The value `bytes_read` holds until cuFile writes it (no read returns it).
    pub const UNWRITTEN: isize = isize::MIN;
}

/// The completion of one asynchronous read of `len` bytes at `file_offset`, valid while
/// the registrations it borrows (`'a`) live.
#[derive(Debug)]
pub struct ReadCompletion<'a, R: Retirement> {
    signal: R,
    params: NonNull<ReadParams>,
    requested: u64,
    file_offset: u64,
    _registrations: PhantomData<&'a ()>,
}

// SAFETY: the parameter block is owned by the completion and only read after the signal
// says the read retired; the signal is Send.
unsafe impl<R: Retirement + Send> Send for ReadCompletion<'_, R> {}

impl<'a, R: Retirement> ReadCompletion<'a, R> {
    /// A completion of the read that takes its parameters from `params` (see
    /// [`ReadCompletion::params_ptr`]), signalled by `signal`.
    ///
    /// # Safety
    /// `signal` must be ordered after the read on the read's stream (the stream passes it
    /// only once the read retired), and the read must be given no parameter block but
    /// this completion's.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) unsafe fn new(signal: R, params: Box<ReadParams>) -> Self {
        let requested = params.size as u64;
        let file_offset = params.file_offset.unsigned_abs();
        Self {
            signal,
            // Box::into_raw is never null.
            params: NonNull::from(Box::leak(params)),
            requested,
            file_offset,
            _registrations: PhantomData,
        }
    }

    /// A parameter block for a read of `len` bytes at `file_offset` into `buf_offset`.
    ///
    /// # Errors
    /// [`Error::Overflow`] when a length or offset does not fit cuFile's types.
    pub fn params(len: u64, file_offset: u64, buf_offset: u64) -> Result<Box<ReadParams>> {
        let of = |what| Error::Overflow { index: 0, what };
        Ok(Box::new(ReadParams {
            size: usize::try_from(len).map_err(|_| of("cuFile read length"))?,
            file_offset: i64::try_from(file_offset).map_err(|_| of("cuFile file offset"))?,
            buf_offset: i64::try_from(buf_offset).map_err(|_| of("cuFile buffer offset"))?,
            bytes_read: ReadParams::UNWRITTEN,
        }))
    }

    /// The parameter block, for tests standing in for cuFile.
    #[cfg(test)]
    pub(crate) fn params_ptr(&self) -> *mut ReadParams {
        self.params.as_ptr()
    }

    /// Whether the read retired (its stream passed the signal), without blocking.
    ///
    /// # Errors
    /// The signal's query failure.
    pub fn is_done(&self) -> Result<bool> {
        self.signal.query()
    }

    /// The read's outcome if it retired, `None` while it has not.
    ///
    /// # Errors
    /// As [`ReadCompletion::wait`], once retired.
    pub fn outcome(&self) -> Result<Option<u64>> {
        if !self.signal.query()? {
            return Ok(None);
        }
        self.bytes().map(Some)
    }

    /// Blocks until the read retired and returns the bytes read (always `len`).
    ///
    /// # Errors
    /// The signal's wait failure; [`Error::CufileIo`] when cuFile reports a failed read;
    /// [`Error::CufileShortRead`] when the file ends before `len` bytes.
    pub fn wait(&self) -> Result<u64> {
        self.signal.wait()?;
        self.bytes()
    }

    /// The outcome in the parameter block; call only once the signal passed.
    fn bytes(&self) -> Result<u64> {
        // SAFETY: the block is alive (owned) and the read retired, so cuFile no longer
        // writes it; volatile because a foreign agent wrote it.
        let n = unsafe { std::ptr::read_volatile(&raw const (*self.params.as_ptr()).bytes_read) };
        if n == ReadParams::UNWRITTEN {
            return Err(Error::CufileIo { call: "cuFileReadAsync", code: 0 });
        }
        if n < 0 {
            return Err(Error::CufileIo { call: "cuFileReadAsync", code: -(n as i64) });
        }
        let read = n as u64;
        if read != self.requested {
            return Err(Error::CufileShortRead {
                file_offset: self.file_offset,
                requested: self.requested,
                read,
            });
        }
        Ok(read)
    }
}

impl<R: Retirement> Drop for ReadCompletion<'_, R> {
    fn drop(&mut self) {
        if self.signal.wait().is_ok() {
            // SAFETY: made by Box::leak in `new`; the read retired, so nothing writes it.
            drop(unsafe { Box::from_raw(self.params.as_ptr()) });
        }
        // Otherwise the block stays allocated: the read may still write it.
    }
}
