//! `FsStore`: files under a root directory, read by a pool of I/O threads with `pread`
//! into caller buffers, through a bounded fd cache.
//!
//! Every open, stat and read runs on an I/O thread (lesson 10: an open on the caller's
//! thread stalled the first wave); the synchronous calls of [`Store`] submit and wait.
//! Reads larger than `max_part` are split into parts that different threads fetch at
//! once. A full queue is back-pressure (lesson 9): `submit` blocks, `try_submit` gives
//! the requests back.

mod fd_cache;
mod queue;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::Store;
use crate::error::{Error, IoOp, Result};
use crate::key;
use crate::request::{IoBuf, ReadRequest, ReadResult, TrySubmitError, downcast_buf};
use crate::split;
use crate::stats::{OpKind, Recorder, StoreStats};
use crate::sync::{self, Arc, AtomicPtr, AtomicUsize, Mutex, Oneshot, Ordering, thread};
use crate::ticket::{Completer, Ticket};

use fd_cache::{FdCache, Opener, StdOpener};
use queue::JobQueue;

/// Configuration of an [`FsStore`].
///
/// ```
/// let cfg = store::FsStoreConfig { io_threads: 16, ..Default::default() };
/// assert!(cfg.min_part <= cfg.max_part);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsStoreConfig {
    /// I/O threads. Not capped by the core count: threads blocked in `pread` on slow
    /// storage use no CPU, and more of them means more requests in flight.
    pub io_threads: usize,
    /// Most read parts (and stats) queued and not yet started; beyond it `submit` blocks
    /// and `try_submit` answers `Again`.
    pub queue_depth: usize,
    /// Most open fds kept cached.
    pub fd_cache_capacity: usize,
    /// Reads larger than this are split into parts fetched concurrently.
    pub max_part: usize,
    /// No part is smaller than this (it wins over `max_part` when they conflict).
    pub min_part: usize,
}

impl Default for FsStoreConfig {
    fn default() -> Self {
        Self {
            io_threads: 8,
            queue_depth: 1024,
            fd_cache_capacity: 256,
            max_part: 4 << 20,
            min_part: 1 << 20,
        }
    }
}

impl FsStoreConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, value: usize, reason| {
            Err(Error::InvalidConfig { field, value: value.to_string(), reason })
        };
        if self.io_threads == 0 {
            return bad("io_threads", self.io_threads, "need at least one I/O thread");
        }
        if self.queue_depth == 0 {
            return bad("queue_depth", self.queue_depth, "need room for at least one job");
        }
        if self.fd_cache_capacity == 0 {
            return bad("fd_cache_capacity", self.fd_cache_capacity, "must be at least 1");
        }
        if self.min_part == 0 {
            return bad("min_part", self.min_part, "must be at least 1 byte");
        }
        if self.max_part < self.min_part {
            return bad("max_part", self.max_part, "must be at least min_part");
        }
        Ok(())
    }
}

/// One submitted read, shared by its parts.
struct RequestState {
    index: usize,
    completer: Completer,
    key: String,
    path: PathBuf,
    offset: u64,
    len: usize,
    buf_offset: usize,
    /// The buffer stays here, unmoved, until the last part finishes.
    buf: Mutex<Option<Box<dyn IoBuf>>>,
    /// `buf`'s first byte, taken once the buffer sat in its final place; parts write
    /// disjoint sub-ranges through it (see `run_part`).
    base: AtomicPtr<u8>,
    parts_left: AtomicUsize,
    /// Per part: (length asked, outcome).
    outcomes: Mutex<Vec<(usize, Option<Result<usize>>)>>,
    stats: Arc<Recorder>,
}

impl RequestState {
    /// Records one part's outcome; the last part assembles the read's result and
    /// completes it. Completion happens strictly after every part's bytes are written.
    fn finish_part(&self, part: usize, outcome: Result<usize>) {
        if let Some(slot) = sync::lock(&self.outcomes).get_mut(part) {
            slot.1 = Some(outcome);
        }
        // AcqRel: the last part sees every other part's writes to the buffer.
        if self.parts_left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let outcomes = std::mem::take(&mut *sync::lock(&self.outcomes));
        // Bytes are counted as a contiguous prefix: after a short part (end of file) the
        // rest of the range does not exist.
        let mut total = 0usize;
        let mut short = false;
        let mut result = Ok(0);
        for (asked, got) in outcomes {
            match got {
                Some(Ok(n)) => {
                    if !short {
                        total += n;
                        short = n < asked;
                    }
                }
                Some(Err(e)) => {
                    result = Err(e);
                    break;
                }
                None => {
                    result = Err(Error::ShutDown { path: self.path.clone() });
                    break;
                }
            }
        }
        let outcome = result.map(|_| total);
        if outcome.is_err() {
            self.stats.error();
        }
        let buf = sync::lock(&self.buf).take().unwrap_or_else(|| Box::new(Vec::new()));
        self.completer.complete(
            self.index,
            ReadResult {
                key: self.key.clone(),
                offset: self.offset,
                len: self.len,
                buf_offset: self.buf_offset,
                buf,
                outcome,
            },
        );
        self.stats.exit();
    }
}

enum Job {
    Part { req: Arc<RequestState>, part: usize, offset: u64, len: usize, buf_at: usize },
    Stat { path: PathBuf, reply: Arc<Oneshot<Result<Option<u64>>>> },
}

impl Job {
    /// Completes a job that will never run.
    fn cancel(self) {
        match self {
            Job::Part { req, part, .. } => {
                let path = req.path.clone();
                req.finish_part(part, Err(Error::ShutDown { path }));
            }
            Job::Stat { path, reply } => reply.fill(Err(Error::ShutDown { path })),
        }
    }
}

struct Shared {
    queue: JobQueue<Job>,
    cache: FdCache,
    stats: Arc<Recorder>,
}

/// A [`Store`] over local (or network-mounted) files. See the module docs.
pub struct FsStore {
    root: PathBuf,
    config: FsStoreConfig,
    shared: Arc<Shared>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStore").field("root", &self.root).field("config", &self.config).finish()
    }
}

impl FsStore {
    /// A store rooted at `root` (which need not exist yet: keys are resolved per call).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`], or [`Error::SpawnThread`] when an I/O thread cannot start.
    pub fn new(root: impl Into<PathBuf>, config: FsStoreConfig) -> Result<Self> {
        Self::with_opener(root.into(), config, Box::new(StdOpener))
    }

    fn with_opener(root: PathBuf, config: FsStoreConfig, opener: Box<dyn Opener>) -> Result<Self> {
        config.validate()?;
        let stats = Arc::new(Recorder::new());
        let shared = Arc::new(Shared {
            queue: JobQueue::new(config.queue_depth),
            cache: FdCache::new(opener, config.fd_cache_capacity, stats.clone()),
            stats,
        });
        let mut store = FsStore { root, config, shared, workers: Vec::new() };
        for index in 0..store.config.io_threads {
            let shared = store.shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("store-io-{index}"))
                .spawn(move || worker(&shared));
            match spawned {
                Ok(h) => store.workers.push(h),
                // Dropping `store` closes the queue and joins the threads already started.
                Err(e) => {
                    return Err(Error::SpawnThread {
                        index,
                        kind: e.kind(),
                        raw_os_error: e.raw_os_error(),
                    });
                }
            }
        }
        Ok(store)
    }

    /// The root directory relative keys resolve against.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration in use.
    pub fn config(&self) -> &FsStoreConfig {
        &self.config
    }

    /// Turns requests into a ticket and part jobs; requests that need no I/O (bad key,
    /// bad buffer range, zero length) complete at once.
    fn prepare(&self, reads: Vec<ReadRequest>) -> (Ticket, Vec<Job>) {
        let (ticket, completer) = Ticket::for_reads(&reads);
        self.shared.stats.enter(reads.len());
        let mut jobs = Vec::new();
        for (index, mut r) in reads.into_iter().enumerate() {
            let done_now = |r: ReadRequest, outcome: Result<usize>| {
                if outcome.is_err() {
                    self.shared.stats.error();
                }
                completer.complete(
                    index,
                    ReadResult {
                        key: r.key,
                        offset: r.offset,
                        len: r.len,
                        buf_offset: r.buf_offset,
                        buf: r.buf,
                        outcome,
                    },
                );
                self.shared.stats.exit();
            };
            let path = match key::resolve(&self.root, &r.key) {
                Ok(p) => p,
                Err(e) => {
                    done_now(r, Err(e));
                    continue;
                }
            };
            let buf_len = r.buf.as_mut_slice().len();
            if r.buf_offset.checked_add(r.len).is_none_or(|end| end > buf_len) {
                let e = Error::BufferTooSmall {
                    key: r.key.clone(),
                    buf_offset: r.buf_offset,
                    len: r.len,
                    buf_len,
                };
                done_now(r, Err(e));
                continue;
            }
            if u64::try_from(r.len).ok().and_then(|l| r.offset.checked_add(l)).is_none() {
                let e = Error::RangeOverflow { path, offset: r.offset, len: r.len };
                done_now(r, Err(e));
                continue;
            }
            let parts = split::split(r.len, self.config.max_part, self.config.min_part);
            if parts.is_empty() {
                done_now(r, Ok(0));
                continue;
            }
            let state = Arc::new(RequestState {
                index,
                completer: completer.clone(),
                key: r.key,
                path,
                offset: r.offset,
                len: r.len,
                buf_offset: r.buf_offset,
                buf: Mutex::new(Some(r.buf)),
                base: AtomicPtr::new(std::ptr::null_mut()),
                parts_left: AtomicUsize::new(parts.len()),
                outcomes: Mutex::new(parts.iter().map(|&(_, l)| (l, None)).collect()),
                stats: self.shared.stats.clone(),
            });
            // Take the pointer only now that the buffer sits where it will stay until
            // the last part is done (moving the box afterwards could invalidate it).
            if let Some(b) = sync::lock(&state.buf).as_mut() {
                state.base.store(b.as_mut_slice().as_mut_ptr(), Ordering::Release);
            }
            for (part, &(rel, len)) in parts.iter().enumerate() {
                jobs.push(Job::Part {
                    req: state.clone(),
                    part,
                    offset: state.offset + rel as u64,
                    len,
                    buf_at: state.buf_offset + rel,
                });
            }
        }
        (ticket, jobs)
    }

    fn run_sync<T>(&self, job: Job, reply: &Oneshot<Result<T>>) -> Result<T> {
        if let Err(job) = self.shared.queue.push(job) {
            job.cancel();
        }
        reply.take()
    }

    fn stat_path(&self, path: PathBuf) -> Result<Option<u64>> {
        let reply = Arc::new(Oneshot::new());
        self.run_sync(Job::Stat { path, reply: reply.clone() }, &reply)
    }

    fn read_one(&self, r: ReadRequest) -> Result<ReadResult> {
        let t = self.submit(vec![r])?;
        let mut results = t.wait();
        Ok(results.pop().unwrap_or_else(|| ReadResult {
            key: String::new(),
            offset: 0,
            len: 0,
            buf_offset: 0,
            buf: Box::new(Vec::new()),
            outcome: Ok(0),
        }))
    }
}

impl FsStore {
    /// A synchronous read of an already-open file runs on the caller's thread: through
    /// the I/O threads it would gain nothing but a hand-off, a buffer allocated per call
    /// and a copy (the CUDA engine's workers read straight into pinned staging this way).
    /// Opens still happen only on the I/O threads, so a slow open never blocks a caller
    /// here: a file not yet open goes the queued way. Counted as one part either way.
    fn read_sync(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if let Some(n) = self.read_open_here(key, offset, buf) {
            return n;
        }
        let res = self.read_one(ReadRequest::to_vec(key, offset, buf.len()))?;
        let n = res.outcome?;
        let src = downcast_buf::<Vec<u8>>(res.buf).map_err(|_| Error::BufferTooSmall {
            key: key.to_owned(),
            buf_offset: 0,
            len: buf.len(),
            buf_len: 0,
        })?;
        let n = n.min(buf.len()).min(src.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }

    /// `read_sync` on the caller's thread when the file's fd is cached; `None` otherwise
    /// (including bad keys and ranges, which the queued path reports).
    fn read_open_here(&self, key: &str, offset: u64, buf: &mut [u8]) -> Option<Result<usize>> {
        let path = key::resolve(&self.root, key).ok()?;
        u64::try_from(buf.len()).ok().and_then(|l| offset.checked_add(l))?;
        if buf.is_empty() {
            return None;
        }
        let fd = self.shared.cache.acquire_open(&path)?;
        let stats = &self.shared.stats;
        stats.enter(1);
        let t0 = Instant::now();
        let out =
            pread_full(fd.file(), buf, offset).map_err(|e| Error::from_io(IoOp::Read, &path, &e));
        stats.op(OpKind::Part, t0.elapsed(), *out.as_ref().unwrap_or(&0));
        if out.is_err() {
            stats.error();
        }
        stats.exit();
        Some(out)
    }

    fn read_all_sync(&self, key: &str) -> Result<Vec<u8>> {
        let path = key::resolve(&self.root, key)?;
        // Errors of the stat and the read are counted where they happen; only the ones
        // made here are counted here.
        let len = match self.stat_path(path.clone())? {
            Some(l) => l,
            None => {
                self.shared.stats.error();
                return Err(Error::NotFound { path });
            }
        };
        let len = usize::try_from(len).map_err(|_| Error::TooLarge { path: path.clone(), len })?;
        let res = self.read_one(ReadRequest::to_vec(key, 0, len))?;
        let n = res.outcome?;
        if n < len {
            // The file shrank between the stat and the read.
            self.shared.stats.error();
            return Err(Error::ShortRead { path, offset: 0, expected: len, got: n });
        }
        let v = downcast_buf::<Vec<u8>>(res.buf).map_err(|_| Error::ShortRead {
            path,
            offset: 0,
            expected: len,
            got: 0,
        })?;
        Ok(*v)
    }
}

impl Store for FsStore {
    fn local_file(&self, key: &str) -> Option<PathBuf> {
        key::resolve(&self.root, key).ok()
    }

    fn stat(&self, key: &str) -> Result<Option<u64>> {
        let t0 = Instant::now();
        let out = key::resolve(&self.root, key).and_then(|path| self.stat_path(path));
        self.shared.stats.op(OpKind::Stat, t0.elapsed(), 0);
        out
    }

    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let t0 = Instant::now();
        let out = self.read_sync(key, offset, buf);
        self.shared.stats.op(OpKind::Read, t0.elapsed(), 0);
        out
    }

    fn read_exact(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let n = self.read(key, offset, buf)?;
        if n < buf.len() {
            let path = key::resolve(&self.root, key)?;
            return Err(Error::ShortRead { path, offset, expected: buf.len(), got: n });
        }
        Ok(())
    }

    fn read_all(&self, key: &str) -> Result<Vec<u8>> {
        let t0 = Instant::now();
        let out = self.read_all_sync(key);
        self.shared.stats.op(OpKind::ReadAll, t0.elapsed(), 0);
        out
    }
    fn submit(&self, reads: Vec<ReadRequest>) -> Result<Ticket> {
        self.shared.stats.submitted(reads.len());
        let (ticket, jobs) = self.prepare(reads);
        for job in jobs {
            if let Err(job) = self.shared.queue.push(job) {
                job.cancel();
            }
        }
        Ok(ticket)
    }

    fn try_submit(&self, reads: Vec<ReadRequest>) -> Result<Ticket, TrySubmitError> {
        let n = reads.len();
        let (ticket, jobs) = self.prepare(reads);
        match self.shared.queue.try_push_all(jobs) {
            Ok(()) => {
                self.shared.stats.submitted(n);
                Ok(ticket)
            }
            Err(jobs) => {
                self.shared.stats.again();
                Err(TrySubmitError::Again(unprepare(ticket, jobs, &self.shared.stats)))
            }
        }
    }

    fn stats(&self) -> StoreStats {
        self.shared.stats.snapshot()
    }
}

/// Undoes `prepare` for a refused batch: completes each request with a placeholder so its
/// buffer comes back, then rebuilds the original requests in order.
fn unprepare(ticket: Ticket, jobs: Vec<Job>, stats: &Recorder) -> Vec<ReadRequest> {
    let mut seen = std::collections::HashSet::new();
    for job in jobs {
        if let Job::Part { req, .. } = job {
            // Each request once: its remaining part references drop with `job`.
            if seen.insert(req.index) {
                let buf = sync::lock(&req.buf).take().unwrap_or_else(|| Box::new(Vec::new()));
                req.completer.complete(
                    req.index,
                    ReadResult {
                        key: req.key.clone(),
                        offset: req.offset,
                        len: req.len,
                        buf_offset: req.buf_offset,
                        buf,
                        outcome: Ok(0),
                    },
                );
                stats.exit();
            }
        }
    }
    // Requests that completed at once in `prepare` (bad keys, zero length) are done too.
    ticket
        .wait()
        .into_iter()
        .map(|r| ReadRequest {
            key: r.key,
            offset: r.offset,
            len: r.len,
            buf_offset: r.buf_offset,
            buf: r.buf,
        })
        .collect()
}

fn worker(shared: &Shared) {
    while let Some(job) = shared.queue.pop() {
        match job {
            Job::Part { req, part, offset, len, buf_at } => {
                let t0 = Instant::now();
                let outcome = run_part(shared, &req, offset, len, buf_at);
                let bytes = outcome.as_ref().map_or(0, |n| *n);
                shared.stats.op(OpKind::Part, t0.elapsed(), bytes);
                req.finish_part(part, outcome);
            }
            Job::Stat { path, reply } => {
                reply.fill(stat_file(&path).inspect_err(|_| shared.stats.error()))
            }
        }
    }
}

fn stat_file(path: &Path) -> Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::IsDirectory { path: path.to_owned() }),
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::from_io(IoOp::Stat, path, &e)),
    }
}

fn run_part(
    shared: &Shared,
    req: &RequestState,
    offset: u64,
    len: usize,
    buf_at: usize,
) -> Result<usize> {
    let fd = shared.cache.acquire(&req.path)?;
    let base = req.base.load(Ordering::Acquire);
    if base.is_null() {
        return Err(Error::ShutDown { path: req.path.clone() });
    }
    // SAFETY: `prepare` checked `buf_offset + req.len <= buffer length`, and the parts
    // split `req.len` into disjoint ranges, so `buf_at..buf_at+len` lies inside the buffer
    // and no other thread writes it. The buffer is owned by `req` (in `req.buf`), which
    // outlives this call and is neither moved nor touched until the last part finished.
    let dst = unsafe { std::slice::from_raw_parts_mut(base.add(buf_at), len) };
    pread_full(fd.file(), dst, offset).map_err(|e| Error::from_io(IoOp::Read, &req.path, &e))
}

/// Reads until `dst` is full or end of file, retrying `EINTR`.
fn pread_full(file: &fs::File, dst: &mut [u8], offset: u64) -> std::io::Result<usize> {
    // `pread` takes a signed offset: bytes at or beyond i64::MAX cannot exist, so they read
    // as end of file instead of failing with EINVAL.
    let room = (i64::MAX as u64).saturating_sub(offset);
    let dst = match usize::try_from(room) {
        Ok(room) if room < dst.len() => &mut dst[..room],
        _ => dst,
    };
    let mut filled = 0;
    while filled < dst.len() {
        match file.read_at(&mut dst[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Drop for FsStore {
    fn drop(&mut self) {
        // Queued work that never started completes with `ShutDown`; reads already on an
        // I/O thread finish normally. Either way every ticket completes.
        for job in self.shared.queue.close() {
            job.cancel();
        }
        let me = thread::current().id();
        for h in self.workers.drain(..) {
            // A completion callback on an I/O thread may drop the last handle to the
            // store; that thread cannot join itself, and it exits on its own.
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }
}

#[cfg(all(test, not(damacy_loom)))]
mod tests;
