//! Byte sources: the [`Store`] trait, [`FsStore`] (I/O thread pool, fd cache, range
//! splitting), [`RemoteStore`] (S3, GCS, Azure and HTTP through the `object_store` crate,
//! concurrent ranged GETs), [`UriStore`] (one store for every URI, chosen by scheme) and
//! [`LatencyStore`] (seeded latency injection around any store).
//!
//! This crate knows nothing about zarr: it moves bytes between keys and buffers.
//!
//! ```
//! use store::{FsStore, FsStoreConfig, ReadRequest, Store};
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("a.bin"), b"hello world")?;
//! let s = FsStore::new(dir.path(), FsStoreConfig { io_threads: 2, ..Default::default() })?;
//! assert_eq!(s.stat("a.bin")?, Some(11));
//! assert_eq!(s.stat("missing")?, None);
//! let results = s.submit(vec![ReadRequest::to_vec("a.bin", 6, 5)])?.wait();
//! assert_eq!(results[0].bytes(), Ok(5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod budget;
mod error;
mod fs;
mod key;
mod latency;
#[cfg(not(damacy_loom))]
mod remote;
mod request;
mod split;
mod stats;
mod sync;
mod ticket;
#[cfg(not(damacy_loom))]
mod uri;

pub use budget::{ByteBudget, BytePermit};
pub use error::{Error, IoOp, RemoteFailure, Result};
pub use fs::{FsStore, FsStoreConfig};
pub use latency::{DelayModel, LatencyConfig, LatencyStore};
#[cfg(not(damacy_loom))]
pub use remote::{RemoteConfig, RemoteStore, Scheme};
pub use request::{IoBuf, ReadRequest, ReadResult, TrySubmitError, downcast_buf};
pub use stats::{HISTOGRAM_BUCKETS, LatencyHistogram, OpKind, StoreStats};
pub use ticket::{Completer, Ticket};
#[cfg(not(damacy_loom))]
pub use uri::{UriStore, is_remote_uri};

/// A source of bytes addressed by key. Object safe: use it as `Arc<dyn Store>`.
///
/// Keys are `/`-separated paths relative to the store's root, or absolute paths; a `..`
/// component is refused with [`Error::KeyEscapesRoot`].
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The length of `key`'s object, or `None` when it does not exist (absence is not an
    /// error).
    ///
    /// # Errors
    /// Any other failure: a directory ([`Error::IsDirectory`]), permission denied or a
    /// path through a non-directory ([`Error::Io`]), a bad key.
    fn stat(&self, key: &str) -> Result<Option<u64>>;

    /// Reads up to `buf.len()` bytes of `key` from `offset` into `buf`; returns how many
    /// were read, fewer only where the object ends (0 at or past its end).
    ///
    /// # Errors
    /// [`Error::NotFound`] when `key` is absent; other failures typed, with the path.
    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// Like [`read`](Self::read) but requires all `buf.len()` bytes.
    ///
    /// # Errors
    /// As `read`, plus [`Error::ShortRead`] when the object ends early (truncated).
    fn read_exact(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let n = self.read(key, offset, buf)?;
        if n < buf.len() {
            return Err(Error::ShortRead { path: key.into(), offset, expected: buf.len(), got: n });
        }
        Ok(())
    }

    /// The whole object.
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent; [`Error::ShortRead`] when it shrank while being
    /// read; other failures typed, with the path.
    fn read_all(&self, key: &str) -> Result<Vec<u8>>;

    /// Starts a batch of ranged reads and returns at once (blocking only while the
    /// store's queue is full: back-pressure). Per-read failures, including bad keys and
    /// buffers too small for their range, are in the per-read results, not here.
    ///
    /// # Errors
    /// Only when the store itself cannot take work (never for a busy store).
    fn submit(&self, reads: Vec<ReadRequest>) -> Result<Ticket>;

    /// Like [`submit`](Self::submit) but never blocks: a full queue answers
    /// [`TrySubmitError::Again`] with the requests given back. The default implementation
    /// has no queue to be full and calls `submit`.
    ///
    /// # Errors
    /// `Again` (back-pressure, retry later) or `Failed`.
    fn try_submit(&self, reads: Vec<ReadRequest>) -> Result<Ticket, TrySubmitError> {
        self.submit(reads).map_err(TrySubmitError::Failed)
    }

    /// The first or last bytes of `key` together with its length, in one request where
    /// the store can (an object store's prefix or suffix range GET), so that a shard
    /// index at either end needs no separate `stat`. `None` when `key` is absent; fewer
    /// than asked when the object is shorter (then `bytes` is all of it). The default
    /// implementation stats, then reads.
    ///
    /// # Errors
    /// As [`stat`](Self::stat) and [`read`](Self::read); [`Error::ShortRead`] when the
    /// object shrank between the two.
    fn read_span(&self, key: &str, span: Span) -> Result<Option<SpanRead>> {
        let Some(object_len) = self.stat(key)? else {
            return Ok(None);
        };
        let (offset, n) = span.within(object_len);
        let mut bytes = vec![0; n];
        self.read_exact(key, offset, &mut bytes)?;
        Ok(Some(SpanRead { object_len, bytes }))
    }

    /// The local file that holds `key`'s bytes as they are, when this store reads local
    /// files, so that a reader may read them by other means (GPUDirect Storage reads
    /// them straight into device memory). `None` (the default) for every other store:
    /// object stores, and stores that transform, delay or count their reads.
    fn local_file(&self, key: &str) -> Option<std::path::PathBuf> {
        let _ = key;
        None
    }

    /// Ranges of one object separated by fewer unneeded bytes than this are cheaper read
    /// as one request (a planner hint: 0 for local files, where each read is cheap; about
    /// a MiB for object stores, where each request costs tens of milliseconds).
    fn merge_gap_hint(&self, key: &str) -> u64 {
        let _ = key;
        0
    }

    /// Whether every request for `key` waits long enough (an object store's round trip)
    /// that a reader should have many in flight: engines then [`submit`](Self::submit)
    /// their reads ahead of the decode workers instead of reading on them, so requests in
    /// flight are not bounded by worker count. `false` for local files, where a worker's
    /// synchronous read is cheapest.
    fn wants_read_ahead(&self, key: &str) -> bool {
        let _ = key;
        false
    }

    /// A snapshot of the store's counters.
    fn stats(&self) -> StoreStats;
}

/// Which end of an object [`Store::read_span`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Span {
    /// The first `n` bytes.
    Head(usize),
    /// The last `n` bytes.
    Tail(usize),
}

impl Span {
    /// `(offset, length)` of this span in an object of `object_len` bytes (clipped to it).
    pub fn within(self, object_len: u64) -> (u64, usize) {
        let clip = |n: usize| usize::try_from(object_len).map_or(n, |len| n.min(len));
        match self {
            Span::Head(n) => (0, clip(n)),
            Span::Tail(n) => {
                let n = clip(n);
                (object_len - n as u64, n)
            }
        }
    }
}

/// The answer of [`Store::read_span`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRead {
    /// The whole object's length.
    pub object_len: u64,
    /// The span's bytes (the whole object when it is shorter than the span).
    pub bytes: Vec<u8>,
}

// The user's handle types, not synchronization primitives of this crate: these are
// std's `Arc`/`Box` whatever `crate::sync` says.
macro_rules! forward_store {
    ($ptr:ty) => {
        impl<S: Store + ?Sized> Store for $ptr {
            fn stat(&self, key: &str) -> Result<Option<u64>> {
                (**self).stat(key)
            }
            fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
                (**self).read(key, offset, buf)
            }
            fn read_exact(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
                (**self).read_exact(key, offset, buf)
            }
            fn read_all(&self, key: &str) -> Result<Vec<u8>> {
                (**self).read_all(key)
            }
            fn submit(&self, reads: Vec<ReadRequest>) -> Result<Ticket> {
                (**self).submit(reads)
            }
            fn try_submit(&self, reads: Vec<ReadRequest>) -> Result<Ticket, TrySubmitError> {
                (**self).try_submit(reads)
            }
            fn read_span(&self, key: &str, span: Span) -> Result<Option<SpanRead>> {
                (**self).read_span(key, span)
            }
            fn merge_gap_hint(&self, key: &str) -> u64 {
                (**self).merge_gap_hint(key)
            }
            fn wants_read_ahead(&self, key: &str) -> bool {
                (**self).wants_read_ahead(key)
            }
            fn stats(&self) -> StoreStats {
                (**self).stats()
            }
        }
    };
}
forward_store!(std::sync::Arc<S>);
forward_store!(Box<S>);
