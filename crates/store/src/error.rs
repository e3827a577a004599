//! The crate's one error type. Every variant names the path (or key) it is about and,
//! for operating-system failures, the structured OS error (`io::ErrorKind` plus the raw
//! errno), so callers can branch on it without parsing strings.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The system call that failed, carried by [`Error::Io`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoOp {
    /// `open(2)` (and the `fstat` that checks the result is a regular file).
    Open,
    /// `stat(2)`.
    Stat,
    /// `pread(2)`.
    Read,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Open => "open",
            IoOp::Stat => "stat",
            IoOp::Read => "read",
        })
    }
}

/// Everything that can go wrong in a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file does not exist. Distinct from every other I/O failure: for sharded
    /// formats an absent object usually means "use the fill value".
    #[error("{}: not found", path.display())]
    NotFound { path: PathBuf },
    /// The path names a directory; keys name files.
    #[error("{}: is a directory, but keys must name files", path.display())]
    IsDirectory { path: PathBuf },
    /// Any other operating-system failure (permission denied, not a directory, EIO, ...).
    #[error("{op} {}: {kind} (os error {})", path.display(), fmt_errno(*raw_os_error))]
    Io { op: IoOp, path: PathBuf, kind: io::ErrorKind, raw_os_error: Option<i32> },
    /// A key with a `..` component, which could name a file outside the store root.
    #[error("key {key:?} has a `..` component; keys must stay inside the store root")]
    KeyEscapesRoot { key: String },
    /// An empty key.
    #[error("empty key: a key must name a file")]
    EmptyKey,
    /// `offset + len` does not fit in a `u64`.
    #[error("{}: a read of {len} bytes at offset {offset} overflows u64", path.display())]
    RangeOverflow { path: PathBuf, offset: u64, len: usize },
    /// A read request's destination range does not fit in its buffer.
    #[error(
        "read of {len} bytes into buffer offset {buf_offset} for key {key:?} does not fit the {buf_len}-byte buffer"
    )]
    BufferTooSmall { key: String, buf_offset: usize, len: usize, buf_len: usize },
    /// A read that had to be complete ended early: the file is shorter than the caller
    /// (or a header) said it is, e.g. a truncated shard.
    #[error(
        "{}: wanted {expected} bytes at offset {offset} but the file ended after {got}; it is truncated",
        path.display()
    )]
    ShortRead { path: PathBuf, offset: u64, expected: usize, got: usize },
    /// The file is larger than this platform can hold in one buffer.
    #[error("{}: {len} bytes do not fit in one buffer on this platform", path.display())]
    TooLarge { path: PathBuf, len: u64 },
    /// The store was dropped before this queued operation ran; it never touched the file.
    #[error("{}: the store was dropped before this read ran", path.display())]
    ShutDown { path: PathBuf },
    /// The store let go of this read without finishing it (every [`crate::Completer`] of
    /// its ticket dropped with the read unfilled): a bug in the store, reported instead
    /// of leaving the reader waiting for good.
    #[error("{}: the store dropped this read without finishing it (a bug in the store)", path.display())]
    Abandoned { path: PathBuf },
    /// A configuration value is out of range.
    #[error("invalid store configuration: {field} = {value}: {reason}")]
    InvalidConfig { field: &'static str, value: String, reason: &'static str },
    /// An I/O thread could not be started.
    #[error("could not start I/O thread {index}: {kind} (os error {})", fmt_errno(*raw_os_error))]
    SpawnThread { index: usize, kind: io::ErrorKind, raw_os_error: Option<i32> },
    /// A URI the object-store backend cannot serve: no bucket or host, or a path that is
    /// not a valid object path (empty segments, `.` or `..`).
    #[error("{uri}: {reason}")]
    BadUri { uri: String, reason: &'static str },
    /// A key in the per-scheme options map that the scheme's client does not know.
    #[error(
        "object store option {key:?} is not known for {scheme}:// (use the object_store crate's keys, e.g. aws_endpoint, aws_skip_signature, google_service_account, azure_storage_account_name, timeout)"
    )]
    UnknownOption { scheme: &'static str, key: String },
    /// The client for an object store could not be built from its options and the
    /// environment (a bad endpoint URL, a missing account name, ...).
    #[error("{url}: cannot configure the object store client: {detail}")]
    ClientConfig { url: String, detail: String },
    /// A request to an object store failed for good: after the retry budget for errors
    /// worth retrying (5xx, throttling, timeouts, dropped connections), at once for the
    /// others. `status` is the HTTP status where the server answered one.
    #[error(
        "{url}{}: {failure}{}: {detail}",
        fmt_range(*range),
        status.map_or_else(String::new, |s| format!(" (HTTP {s})"))
    )]
    Remote {
        url: String,
        range: Option<(u64, u64)>,
        status: Option<u16>,
        failure: RemoteFailure,
        detail: String,
    },
    /// A ranged response whose body did not hold the bytes its headers promised: a
    /// truncated body or a wrong `Content-Length`. Never taken as short data.
    #[error(
        "{url} bytes {start}..{end}: the response carried {got} bytes; it was truncated or its Content-Length is wrong"
    )]
    BodyLength { url: String, start: u64, end: u64, got: u64 },
    /// The object store's tokio runtime could not be started.
    #[error("could not start the object store runtime: {kind}")]
    Runtime { kind: io::ErrorKind },
}

/// What kind of failure ended a request to an object store, carried by [`Error::Remote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoteFailure {
    /// The server answered an error status (see `status`).
    Status,
    /// The server refused the credentials (401) or the access (403).
    Denied,
    /// No answer in time: the request timeout, or the retry timeout, ran out.
    Timeout,
    /// The connection could not be made or was dropped before a response.
    Connect,
    /// The response body could not be read to its end.
    Body,
    /// The response was malformed: a wrong range, unparsable headers.
    Response,
}

impl fmt::Display for RemoteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoteFailure::Status => "error status",
            RemoteFailure::Denied => "access denied",
            RemoteFailure::Timeout => "timed out",
            RemoteFailure::Connect => "connection failed",
            RemoteFailure::Body => "body read failed",
            RemoteFailure::Response => "malformed response",
        })
    }
}

fn fmt_range(range: Option<(u64, u64)>) -> String {
    range.map_or_else(String::new, |(a, b)| format!(" bytes {a}..{b}"))
}

fn fmt_errno(raw: Option<i32>) -> String {
    raw.map_or_else(|| "none".to_owned(), |e| e.to_string())
}

impl Error {
    /// Maps an OS error from `op` on `path`: `NotFound` and `IsADirectory` get their own
    /// variants, everything else keeps its kind and errno in [`Error::Io`].
    pub fn from_io(op: IoOp, path: &Path, err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound => Error::NotFound { path: path.to_owned() },
            io::ErrorKind::IsADirectory => Error::IsDirectory { path: path.to_owned() },
            kind => Error::Io { op, path: path.to_owned(), kind, raw_os_error: err.raw_os_error() },
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// The path this error is about, where it has one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::NotFound { path }
            | Error::IsDirectory { path }
            | Error::Io { path, .. }
            | Error::RangeOverflow { path, .. }
            | Error::ShortRead { path, .. }
            | Error::TooLarge { path, .. }
            | Error::ShutDown { path }
            | Error::Abandoned { path } => Some(path),
            Error::KeyEscapesRoot { .. }
            | Error::EmptyKey
            | Error::BufferTooSmall { .. }
            | Error::InvalidConfig { .. }
            | Error::SpawnThread { .. }
            | Error::BadUri { .. }
            | Error::UnknownOption { .. }
            | Error::ClientConfig { .. }
            | Error::Remote { .. }
            | Error::BodyLength { .. }
            | Error::Runtime { .. } => None,
        }
    }
}
