//! The owning types over a CUDA device: registered device buffers, registered streams and
//! the event that completes a read.

use cudarc::driver::{CudaContext, CudaStream, sys};
use gpu_schedule::{CudaBackend, CudaDeviceMem, CudaStreamHandle};

use super::completion::{ReadCompletion, Retirement};
use super::driver::{Driver, FileHandle};
use super::raw;
use crate::error::{Error, Result};
use crate::module::{check, guarded};
use crate::sync::Arc;

/// An event recorded on a read's stream right after the read: the stream passes it only
/// once the read retired. Created with blocking sync, so a wait sleeps.
#[derive(Debug)]
pub struct StreamEvent {
    event: sys::CUevent,
    ctx: Arc<CudaContext>,
}

// SAFETY: a CUevent is a driver handle usable from any thread once its context is bound,
// which every method does first.
unsafe impl Send for StreamEvent {}
// SAFETY: as above; the driver synchronizes concurrent calls on one event.
unsafe impl Sync for StreamEvent {}

impl StreamEvent {
    /// Records a new event on `stream` (of `ctx`, bound on this thread).
    fn record_after(ctx: &Arc<CudaContext>, stream: sys::CUstream) -> Result<Self> {
        let flags = sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32
            | sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC as u32;
        let mut event: sys::CUevent = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the context is current.
        check("cufile", "cuEventCreate", unsafe { sys::cuEventCreate(&mut event, flags) })?;
        let e = Self { event, ctx: Arc::clone(ctx) };
        // SAFETY: a live event and stream of the current context.
        check("cufile", "cuEventRecord", unsafe { sys::cuEventRecord(e.event, stream) })?;
        Ok(e)
    }
}

impl Retirement for StreamEvent {
    fn query(&self) -> Result<bool> {
        guarded("cufile", "cuCtxSetCurrent", || self.ctx.bind_to_thread())?;
        // SAFETY: a live event.
        match unsafe { sys::cuEventQuery(self.event) } {
            sys::CUresult::CUDA_SUCCESS => Ok(true),
            sys::CUresult::CUDA_ERROR_NOT_READY => Ok(false),
            r => check("cufile", "cuEventQuery", r).map(|()| false),
        }
    }

    fn wait(&self) -> Result<()> {
        guarded("cufile", "cuCtxSetCurrent", || self.ctx.bind_to_thread())?;
        // SAFETY: a live event; BLOCKING_SYNC makes this a sleep, not a spin.
        check("cufile", "cuEventSynchronize", unsafe { sys::cuEventSynchronize(self.event) })
    }
}

impl Drop for StreamEvent {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: created in `record_after`, destroyed once.
            let _ = unsafe { sys::cuEventDestroy_v2(self.event) };
        }
    }
}

/// Device memory registered with cuFile (`cuFileBufRegister`), once, for many reads; it
/// holds the memory, which outlives the registration.
#[derive(Debug)]
pub struct RegisteredBuffer {
    ctx: Arc<CudaContext>,
    // Dropped after `Drop::drop` deregistered the buffer.
    mem: CudaDeviceMem,
    driver: Driver,
}

impl RegisteredBuffer {
    /// Registers all of `mem` (device memory of `backend`'s device).
    ///
    /// # Errors
    /// [`Error::Cufile`] from `cuFileBufRegister`; [`Error::Driver`] when the context
    /// cannot be bound.
    pub fn register(driver: &Driver, backend: &CudaBackend, mem: CudaDeviceMem) -> Result<Self> {
        let ctx = Arc::clone(backend.context());
        guarded("cufile", "cuCtxSetCurrent", || ctx.bind_to_thread())?;
        // SAFETY: the whole allocation, of this context, held by the registration.
        unsafe { driver.lib().buf_register(mem.device_ptr(), mem.len()) }?;
        Ok(Self { ctx, mem, driver: driver.clone() })
    }

    /// The registered memory.
    pub fn mem(&self) -> &CudaDeviceMem {
        &self.mem
    }

    /// Bytes registered.
    pub fn len(&self) -> u64 {
        self.mem.len() as u64
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    /// Reads `len` bytes of `file` at `file_offset` into this buffer at `buf_offset`
    /// (`cuFileRead`, synchronous: the bytes are in place when it returns).
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when the read passes the buffer's end; [`Error::Overflow`]
    /// for offsets past cuFile's types; [`Error::CufileIo`] for a failed read;
    /// [`Error::CufileShortRead`] when fewer bytes came; [`Error::Driver`] when the
    /// context cannot be bound.
    pub fn read_from(
        &self,
        file: &FileHandle,
        file_offset: u64,
        len: usize,
        buf_offset: u64,
    ) -> Result<()> {
        match buf_offset.checked_add(len as u64) {
            Some(end) if end <= self.len() => {}
            _ => {
                return Err(Error::BufferTooSmall {
                    kernel: "cuFileRead",
                    what: "registered buffer",
                    needed: buf_offset.saturating_add(len as u64),
                    len: self.len(),
                });
            }
        }
        let overflow = |what| Error::Overflow { index: 0, what };
        let at = i64::try_from(file_offset).map_err(|_| overflow("cuFileRead offset"))?;
        let buf_at = i64::try_from(buf_offset).map_err(|_| overflow("cuFileRead offset"))?;
        guarded("cufile", "cuCtxSetCurrent", || self.ctx.bind_to_thread())?;
        // SAFETY: the handle and buffer are registered and borrowed for the call; the
        // read lies inside the buffer (checked); the context is current.
        let n = unsafe {
            file.driver().lib().read(file.raw(), self.mem.device_ptr(), len, at, buf_at)
        }?;
        if n != len {
            let (requested, read) = (len as u64, n as u64);
            return Err(Error::CufileShortRead { file_offset, requested, read });
        }
        Ok(())
    }
}

impl Drop for RegisteredBuffer {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: registered in `register`, deregistered once; reads borrow the
            // buffer, so none is in flight.
            let _ = unsafe { self.driver.lib().buf_deregister(self.mem.device_ptr()) };
        }
    }
}

/// A stream registered with cuFile when it is adopted (`cuFileStreamRegister`, flags 0:
/// sizes and offsets are read when the stream reaches each read). Registering eagerly
/// keeps libcufile's compat mode from setting up the stream's state lazily on its first
/// read, which races with itself. It holds the stream, which outlives the registration.
#[derive(Debug)]
pub struct RegisteredStream {
    ctx: Arc<CudaContext>,
    // Dropped after `Drop::drop` deregistered the stream.
    stream: Arc<CudaStream>,
    driver: Driver,
}

impl RegisteredStream {
    /// Registers `stream` (a stream of `backend`'s device).
    ///
    /// # Errors
    /// [`Error::Cufile`] from `cuFileStreamRegister`; [`Error::Driver`] when the context
    /// cannot be bound.
    pub fn adopt(
        driver: &Driver,
        backend: &CudaBackend,
        stream: &CudaStreamHandle,
    ) -> Result<Self> {
        let ctx = Arc::clone(backend.context());
        guarded("cufile", "cuCtxSetCurrent", || ctx.bind_to_thread())?;
        let stream = Arc::clone(stream.stream());
        // SAFETY: a live stream of this context, held (so not destroyed) until `Drop`
        // deregisters it.
        unsafe { driver.lib().stream_register(stream.cu_stream() as raw::Stream, 0) }?;
        Ok(Self { ctx, stream, driver: driver.clone() })
    }

    /// Enqueues a read of `len` bytes of `file` at `file_offset` into `buf` at
    /// `buf_offset` on this stream, and records the event that completes it. The
    /// completion borrows the stream, the file and the buffer, so none is deregistered
    /// before the read retired.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when `buf_offset + len` passes the buffer's end;
    /// [`Error::Overflow`] for values past cuFile's types; [`Error::Cufile`] when cuFile
    /// refuses the read; [`Error::Driver`] when the event cannot be recorded (the stream
    /// is then synchronized before returning, so the read's parameters outlive it).
    pub fn read_async<'a>(
        &'a self,
        file: &'a FileHandle,
        buf: &'a RegisteredBuffer,
        buf_offset: u64,
        file_offset: u64,
        len: u64,
    ) -> Result<ReadCompletion<'a, StreamEvent>> {
        match buf_offset.checked_add(len) {
            Some(end) if end <= buf.len() => {}
            _ => {
                return Err(Error::BufferTooSmall {
                    kernel: "cuFileReadAsync",
                    what: "registered buffer",
                    needed: buf_offset.saturating_add(len),
                    len: buf.len(),
                });
            }
        }
        let mut params = ReadCompletion::<StreamEvent>::params(len, file_offset, buf_offset)?;
        guarded("cufile", "cuCtxSetCurrent", || self.ctx.bind_to_thread())?;
        let stream = self.stream.cu_stream();
        // SAFETY: the handle and buffer are registered and borrowed for `'a`; the read
        // lies inside the buffer (checked); the stream is registered with flags 0; the
        // parameter block is heap memory that stays put, owned below by the completion
        // (or, on a failed record, kept until the stream is synchronized).
        unsafe {
            file.driver().lib().read_async(
                file.raw(),
                buf.mem.device_ptr(),
                &raw mut *params,
                stream as raw::Stream,
            )
        }?;
        match StreamEvent::record_after(&self.ctx, stream) {
            // SAFETY: the event was recorded on the read's stream after the read, and the
            // read was given this very parameter block.
            Ok(event) => Ok(unsafe { ReadCompletion::new(event, params) }),
            Err(e) => {
                // SAFETY: a live stream of the current context.
                if unsafe { sys::cuStreamSynchronize(stream) } != sys::CUresult::CUDA_SUCCESS {
                    // The read may still write the block: never free it.
                    Box::leak(params);
                }
                Err(e)
            }
        }
    }
}

impl Drop for RegisteredStream {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: registered in `adopt`, deregistered once, before the stream it holds
            // can be destroyed; completions borrow the registration, so no read is in
            // flight.
            let _ = unsafe {
                self.driver.lib().stream_deregister(self.stream.cu_stream() as raw::Stream)
            };
        }
    }
}
