//! A bounded cache of open files keyed by path.
//!
//! - A read pins the fd it uses; only unpinned fds are evicted, least recently used first.
//! - When every cached fd is pinned (or opening), a new file is opened outside the cache
//!   for that one use and closed afterwards (counted in `uncached_opens`).
//! - Single flight: threads asking for a file another thread is opening wait for that
//!   open instead of opening it again, and share its outcome.
//! - A failed open is handed to the threads that waited on it and then forgotten: the
//!   next acquire opens again.
//!
//! Opens and closes run without the lock held (they can block on a network file system).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoOp, Result};
use crate::stats::Recorder;
use crate::sync::{self, Arc, Condvar, Mutex};

/// Opens a file for reading. The production opener is [`StdOpener`]; tests inject mocks
/// to count opens, slow them down or make them fail.
pub(crate) trait Opener: Send + Sync + fmt::Debug {
    /// # Errors
    /// The mapped OS error, or [`Error::IsDirectory`].
    fn open(&self, path: &Path) -> Result<File>;
}

/// `open(2)` read-only, then `fstat` to refuse directories (which Linux lets you open).
#[derive(Debug, Default)]
pub(crate) struct StdOpener;

impl Opener for StdOpener {
    fn open(&self, path: &Path) -> Result<File> {
        let file = File::open(path).map_err(|e| Error::from_io(IoOp::Open, path, &e))?;
        let meta = file.metadata().map_err(|e| Error::from_io(IoOp::Stat, path, &e))?;
        if meta.is_dir() {
            return Err(Error::IsDirectory { path: path.to_owned() });
        }
        Ok(file)
    }
}

#[derive(Debug)]
enum Entry {
    /// One thread is opening the file; `flight` identifies that attempt.
    Opening { flight: u64, waiters: usize },
    /// Open; `lru_tick` is its key in `State::lru` while `pins == 0`.
    Open { file: Arc<File>, pins: usize, lru_tick: u64 },
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<PathBuf, Entry>,
    /// Unpinned open entries by last release, oldest first.
    lru: BTreeMap<u64, PathBuf>,
    tick: u64,
    next_flight: u64,
    /// Errors of failed flights that still have waiters to collect them: (error, waiters left).
    failed: HashMap<u64, (Error, usize)>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct FdCache {
    opener: Box<dyn Opener>,
    capacity: usize,
    state: Mutex<State>,
    /// Signalled whenever a flight ends.
    flight_done: Condvar,
    stats: Arc<Recorder>,
}

/// A pinned (or uncached) open file; unpins on drop.
#[derive(Debug)]
pub(crate) struct FdGuard<'a> {
    cache: &'a FdCache,
    file: Arc<File>,
    /// `None` for an uncached fd, which simply closes on drop.
    path: Option<PathBuf>,
}

impl FdGuard<'_> {
    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for FdGuard<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            self.cache.release(path);
        }
    }
}

impl FdCache {
    pub(crate) fn new(opener: Box<dyn Opener>, capacity: usize, stats: Arc<Recorder>) -> Self {
        Self {
            opener,
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
            flight_done: Condvar::new(),
            stats,
        }
    }

    /// Number of cached entries (open or opening).
    #[cfg(all(test, not(damacy_loom)))]
    pub(crate) fn len(&self) -> usize {
        sync::lock(&self.state).entries.len()
    }

    /// Whether `path` holds a cached open fd.
    #[cfg(all(test, not(damacy_loom)))]
    pub(crate) fn is_cached(&self, path: &Path) -> bool {
        matches!(sync::lock(&self.state).entries.get(path), Some(Entry::Open { .. }))
    }

    /// A pinned fd for `path` if one is open in the cache; never opens (a caller that
    /// must not block on an open falls back to the I/O threads on `None`).
    pub(crate) fn acquire_open(&self, path: &Path) -> Option<FdGuard<'_>> {
        let mut st = sync::lock(&self.state);
        let st_ref = &mut *st;
        let Some(Entry::Open { file, pins, lru_tick }) = st_ref.entries.get_mut(path) else {
            return None;
        };
        if *pins == 0 {
            st_ref.lru.remove(lru_tick);
        }
        *pins += 1;
        let file = file.clone();
        drop(st);
        Recorder::bump(&self.stats.fd_hits);
        Some(FdGuard { cache: self, file, path: Some(path.to_owned()) })
    }

    /// Returns a pinned fd for `path`, opening it (once, however many threads ask) if
    /// needed.
    ///
    /// # Errors
    /// The open's error, shared by every thread that waited on that open.
    pub(crate) fn acquire(&self, path: &Path) -> Result<FdGuard<'_>> {
        let mut st = sync::lock(&self.state);
        let mut waiting_on: Option<u64> = None;
        loop {
            if let Some(f) = waiting_on
                && let Some((err, left)) = st.failed.get_mut(&f)
            {
                let err = err.clone();
                *left -= 1;
                if *left == 0 {
                    st.failed.remove(&f);
                }
                return Err(err);
            }
            let st_ref = &mut *st;
            match st_ref.entries.get_mut(path) {
                Some(Entry::Open { file, pins, lru_tick }) => {
                    if *pins == 0 {
                        st_ref.lru.remove(lru_tick);
                    }
                    *pins += 1;
                    let file = file.clone();
                    drop(st);
                    // A thread that waited for the open counted a miss already.
                    if waiting_on.is_none() {
                        Recorder::bump(&self.stats.fd_hits);
                    }
                    return Ok(FdGuard { cache: self, file, path: Some(path.to_owned()) });
                }
                Some(Entry::Opening { flight, waiters }) => {
                    if waiting_on != Some(*flight) {
                        *waiters += 1;
                        if waiting_on.is_none() {
                            Recorder::bump(&self.stats.fd_open_waits);
                            Recorder::bump(&self.stats.fd_misses);
                        }
                        waiting_on = Some(*flight);
                    }
                    st = sync::wait(&self.flight_done, st);
                }
                None => break,
            }
        }
        if waiting_on.is_none() {
            Recorder::bump(&self.stats.fd_misses);
        }

        // Make room: evict the least recently used unpinned fd, or go uncached.
        let mut evicted = None;
        if st.entries.len() >= self.capacity {
            match st.lru.pop_first() {
                Some((_, victim)) => {
                    evicted = st.entries.remove(&victim);
                    Recorder::bump(&self.stats.fd_evictions);
                }
                None => {
                    drop(st);
                    Recorder::bump(&self.stats.opens);
                    Recorder::bump(&self.stats.uncached_opens);
                    let file = self.opener.open(path)?;
                    return Ok(FdGuard { cache: self, file: Arc::new(file), path: None });
                }
            }
        }
        let flight = st.next_flight;
        st.next_flight += 1;
        st.entries.insert(path.to_owned(), Entry::Opening { flight, waiters: 0 });
        drop(st);
        // Close the victim outside the lock.
        drop(evicted);

        Recorder::bump(&self.stats.opens);
        let opened = self.opener.open(path);

        let mut st = sync::lock(&self.state);
        // Only this thread removes its own Opening entry, and eviction only takes
        // unpinned Open entries, so the entry is still ours.
        let waiters = match st.entries.remove(path) {
            Some(Entry::Opening { flight: f, waiters }) if f == flight => waiters,
            Some(other) => {
                st.entries.insert(path.to_owned(), other);
                0
            }
            None => 0,
        };
        let out = match opened {
            Ok(file) => {
                let file = Arc::new(file);
                st.entries.insert(
                    path.to_owned(),
                    Entry::Open { file: file.clone(), pins: 1, lru_tick: 0 },
                );
                Ok(FdGuard { cache: self, file, path: Some(path.to_owned()) })
            }
            Err(e) => {
                if waiters > 0 {
                    st.failed.insert(flight, (e.clone(), waiters));
                }
                Err(e)
            }
        };
        drop(st);
        self.flight_done.notify_all();
        out
    }

    fn release(&self, path: PathBuf) {
        let mut st = sync::lock(&self.state);
        st.tick += 1;
        let tick = st.tick;
        if let Some(Entry::Open { pins, lru_tick, .. }) = st.entries.get_mut(&path) {
            *pins = pins.saturating_sub(1);
            if *pins == 0 {
                *lru_tick = tick;
                st.lru.insert(tick, path);
            }
        }
    }
}

#[cfg(all(test, not(damacy_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Opens real files, counting opens per path, optionally slowly, optionally failing
    /// the first `fail_first` opens with EACCES.
    #[derive(Debug, Default)]
    struct MockOpener {
        opens: std::sync::Mutex<HashMap<PathBuf, usize>>,
        delay: Duration,
        fail_first: AtomicUsize,
    }

    impl Opener for MockOpener {
        fn open(&self, path: &Path) -> Result<File> {
            *self.opens.lock().unwrap().entry(path.to_owned()).or_default() += 1;
            std::thread::sleep(self.delay);
            if self
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                let e = std::io::Error::from_raw_os_error(13);
                return Err(Error::from_io(IoOp::Open, path, &e));
            }
            StdOpener.open(path)
        }
    }

    fn files(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let paths = (0..n)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                std::fs::write(&p, format!("file {i}")).unwrap();
                p
            })
            .collect();
        (dir, paths)
    }

    fn cache(cap: usize, opener: MockOpener) -> (FdCache, Arc<MockOpener>, Arc<Recorder>) {
        // The cache owns a boxed opener; share the counts through an Arc wrapper.
        #[derive(Debug)]
        struct Shared(Arc<MockOpener>);
        impl Opener for Shared {
            fn open(&self, path: &Path) -> Result<File> {
                self.0.open(path)
            }
        }
        let o = Arc::new(opener);
        let rec = Arc::new(Recorder::new());
        (FdCache::new(Box::new(Shared(o.clone())), cap, rec.clone()), o, rec)
    }

    fn read_string(g: &FdGuard<'_>) -> String {
        // Positional reads: a cached fd is shared, so its cursor must not matter.
        let mut buf = [0u8; 64];
        let n = std::os::unix::fs::FileExt::read_at(g.file(), &mut buf, 0).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn bound_is_respected_and_lru_unpinned_is_evicted() {
        let (_d, p) = files(6);
        let (c, o, rec) = cache(3, MockOpener::default());
        for path in &p {
            let g = c.acquire(path).unwrap();
            assert!(read_string(&g).starts_with("file"));
            drop(g);
            assert!(c.len() <= 3);
        }
        assert_eq!(c.len(), 3);
        // The three most recent stay; the oldest went.
        assert!(!c.is_cached(&p[0]) && !c.is_cached(&p[2]));
        assert!(c.is_cached(&p[3]) && c.is_cached(&p[4]) && c.is_cached(&p[5]));
        let s = rec.snapshot();
        assert_eq!((s.opens, s.fd_misses, s.fd_hits, s.fd_evictions), (6, 6, 0, 3));
        drop(c.acquire(&p[5]).unwrap());
        assert_eq!(rec.snapshot().fd_hits, 1);
        assert_eq!(o.opens.lock().unwrap()[&p[5]], 1);
    }

    #[test]
    fn pinned_fd_survives_eviction_pressure() {
        let (_d, p) = files(8);
        let (c, o, _) = cache(2, MockOpener::default());
        let pinned = c.acquire(&p[0]).unwrap();
        for path in &p[1..] {
            drop(c.acquire(path).unwrap());
        }
        assert!(c.is_cached(&p[0]), "a pinned fd must not be evicted");
        assert_eq!(read_string(&pinned), "file 0");
        drop(pinned);
        drop(c.acquire(&p[0]).unwrap());
        assert_eq!(o.opens.lock().unwrap()[&p[0]], 1, "still cached: no second open");
    }

    #[test]
    fn all_pinned_opens_uncached_and_counts_it() {
        let (_d, p) = files(3);
        let (c, _, rec) = cache(2, MockOpener::default());
        let a = c.acquire(&p[0]).unwrap();
        let b = c.acquire(&p[1]).unwrap();
        let third = c.acquire(&p[2]).unwrap();
        assert_eq!(read_string(&third), "file 2");
        assert_eq!(c.len(), 2);
        assert!(!c.is_cached(&p[2]));
        assert_eq!(rec.snapshot().uncached_opens, 1);
        drop(third);
        drop((a, b));
        // With room again (after an eviction) the file is cached normally.
        drop(c.acquire(&p[2]).unwrap());
        assert!(c.is_cached(&p[2]));
        assert_eq!(rec.snapshot().uncached_opens, 1);
    }

    #[test]
    fn many_threads_one_open() {
        let (_d, p) = files(1);
        let opener = MockOpener { delay: Duration::from_millis(50), ..Default::default() };
        let (c, o, rec) = cache(4, opener);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    let g = c.acquire(&p[0]).unwrap();
                    let mut buf = [0u8; 6];
                    std::os::unix::fs::FileExt::read_exact_at(g.file(), &mut buf, 0).unwrap();
                    assert_eq!(&buf, b"file 0");
                });
            }
        });
        assert_eq!(o.opens.lock().unwrap()[&p[0]], 1);
        let s = rec.snapshot();
        assert_eq!(s.opens, 1);
        assert_eq!(s.fd_misses + s.fd_hits, 16);
        assert!(s.fd_open_waits >= 1, "some threads must have joined the open: {s:?}");
    }

    #[test]
    fn failed_open_reaches_waiters_and_is_retried_next_time() {
        let (_d, p) = files(1);
        let opener = MockOpener {
            delay: Duration::from_millis(50),
            fail_first: AtomicUsize::new(1),
            ..Default::default()
        };
        let (c, o, _) = cache(4, opener);
        let errs: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8).map(|_| s.spawn(|| c.acquire(&p[0]).map(|_| ()))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // One open failed; every thread that joined it saw the same typed error. Threads
        // that arrived after the failure opened again and succeeded.
        let failures: Vec<_> = errs.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(!failures.is_empty());
        for e in &failures {
            assert_eq!(
                **e,
                Error::Io {
                    op: IoOp::Open,
                    path: p[0].clone(),
                    kind: std::io::ErrorKind::PermissionDenied,
                    raw_os_error: Some(13)
                }
            );
        }
        let g = c.acquire(&p[0]).unwrap();
        assert_eq!(read_string(&g), "file 0");
        let opens = o.opens.lock().unwrap()[&p[0]];
        assert!((2..=3).contains(&opens), "one failed open, then retry: {opens}");
        assert!(sync::lock(&c.state).failed.is_empty(), "failure records are collected");
    }
}
