//! Batched reads: owned destination buffers ([`IoBuf`]), the requests that carry them to
//! the I/O threads, and the results that carry them back.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;

use crate::error::Error;

/// An owned byte buffer a read can fill while it travels to an I/O thread and back.
///
/// Implemented for `Vec<u8>` and `Box<[u8]>`; another crate implements it for its pinned
/// host memory. A store calls [`as_mut_slice`](IoBuf::as_mut_slice) once per read, keeps
/// the raw pointer it returns, lets several I/O threads write disjoint sub-ranges of it,
/// and does not touch or move the value until every write is done.
///
/// # Safety
/// Implementors guarantee that the slice returned by `as_mut_slice` stays valid (not
/// freed, reallocated or accessed by anyone else) for as long as the value is alive and
/// not accessed again, even though the `&mut self` borrow has ended; and that dropping
/// the value is the only thing that ends that validity. Plain owning buffers satisfy
/// this; a buffer whose memory another handle can free concurrently does not.
pub unsafe trait IoBuf: Any + Send {
    /// The writable bytes.
    fn as_mut_slice(&mut self) -> &mut [u8];
}

impl fmt::Debug for dyn IoBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn IoBuf")
    }
}

// SAFETY: a Vec's heap allocation is owned by the Vec and only changes through `&mut self`.
unsafe impl IoBuf for Vec<u8> {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }
}

// SAFETY: the boxed slice is owned and never reallocated.
unsafe impl IoBuf for Box<[u8]> {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }
}

/// Recovers the concrete buffer type from a returned `Box<dyn IoBuf>`; gives the box back
/// unchanged if it holds another type.
///
/// # Errors
/// The original box when it does not hold a `B`.
pub fn downcast_buf<B: IoBuf>(buf: Box<dyn IoBuf>) -> Result<Box<B>, Box<dyn IoBuf>> {
    // Upcast the reference so the type id is the buffer's, not the Box's.
    let is_b = (&*buf as &dyn Any).is::<B>();
    if is_b {
        let raw: *mut dyn IoBuf = Box::into_raw(buf);
        // SAFETY: the value behind the pointer is a `B` (checked just above) allocated by a
        // `Box`, so reinterpreting the thin part as `*mut B` and re-boxing is exactly what
        // `Box<dyn Any>::downcast` does.
        Ok(unsafe { Box::from_raw(raw.cast::<B>()) })
    } else {
        Err(buf)
    }
}

/// One ranged read: `len` bytes of `key` from `offset` into `buf[buf_offset..buf_offset+len]`.
pub struct ReadRequest {
    /// The key (relative to the store root) or absolute path.
    pub key: String,
    /// Byte offset in the file.
    pub offset: u64,
    /// Bytes wanted. A read past end of file returns fewer; zero is allowed and does no I/O.
    pub len: usize,
    /// Where in `buf` the bytes go.
    pub buf_offset: usize,
    /// The destination; returned in the [`ReadResult`].
    pub buf: Box<dyn IoBuf>,
}

impl ReadRequest {
    /// A read of `len` bytes into a new zero-filled `Vec<u8>` of exactly `len` bytes.
    pub fn to_vec(key: impl Into<String>, offset: u64, len: usize) -> Self {
        Self { key: key.into(), offset, len, buf_offset: 0, buf: Box::new(vec![0u8; len]) }
    }

    /// A read into `buf[buf_offset..buf_offset+len]` of a caller-provided buffer.
    pub fn into_buf(
        key: impl Into<String>,
        offset: u64,
        len: usize,
        buf: Box<dyn IoBuf>,
        buf_offset: usize,
    ) -> Self {
        Self { key: key.into(), offset, len, buf_offset, buf }
    }
}

impl fmt::Debug for ReadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadRequest")
            .field("key", &self.key)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("buf_offset", &self.buf_offset)
            .finish_non_exhaustive()
    }
}

/// The outcome of one [`ReadRequest`], with its buffer handed back.
pub struct ReadResult {
    /// The request's key.
    pub key: String,
    /// The request's offset.
    pub offset: u64,
    /// The request's length.
    pub len: usize,
    /// The request's buffer offset.
    pub buf_offset: usize,
    /// The buffer, now holding `bytes` bytes at `buf_offset` on success.
    pub buf: Box<dyn IoBuf>,
    /// Bytes read (fewer than `len` only at end of file), or the error.
    pub outcome: Result<usize, Error>,
}

impl ReadResult {
    /// Bytes read, or the error.
    ///
    /// # Errors
    /// The read's error.
    pub fn bytes(&self) -> Result<usize, &Error> {
        self.outcome.as_ref().copied()
    }

    /// Bytes read, requiring all `len` of them (for ranges a header said exist).
    ///
    /// # Errors
    /// The read's error, or [`Error::ShortRead`] with `path` when fewer bytes came back.
    pub fn exact(&self, path: impl Into<PathBuf>) -> Result<(), Error> {
        match &self.outcome {
            Ok(n) if *n == self.len => Ok(()),
            Ok(n) => Err(Error::ShortRead {
                path: path.into(),
                offset: self.offset,
                expected: self.len,
                got: *n,
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

impl fmt::Debug for ReadResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadResult")
            .field("key", &self.key)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("buf_offset", &self.buf_offset)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// Why `try_submit` did not take a batch.
#[derive(Debug)]
pub enum TrySubmitError {
    /// The submit queue is full: back-pressure, not failure. The requests come back
    /// untouched; retry after completing some work, or call the blocking `submit`.
    Again(Vec<ReadRequest>),
    /// The store failed (not because it was busy).
    Failed(Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downcast_recovers_the_concrete_buffer_or_gives_it_back() {
        let b: Box<dyn IoBuf> = Box::new(vec![1u8, 2, 3]);
        let v = downcast_buf::<Vec<u8>>(b).unwrap();
        assert_eq!(*v, vec![1, 2, 3]);
        let b: Box<dyn IoBuf> = Box::new(vec![7u8].into_boxed_slice());
        let back = downcast_buf::<Vec<u8>>(b).unwrap_err();
        let boxed = downcast_buf::<Box<[u8]>>(back).unwrap();
        assert_eq!(&**boxed, &[7u8]);
    }
}
