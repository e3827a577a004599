//! `UriStore`: one [`Store`] for every sample URI, choosing the backend by scheme: `s3://`,
//! `gs://`, `az://`, `http(s)://` go to a [`RemoteStore`] per bucket or origin (opened on
//! first use and kept), `file://` and plain paths to one [`FsStore`] rooted at `/`.
//!
//! Above this, nothing knows which store served the bytes: keys are the URIs themselves.

use std::collections::HashMap;
use std::fmt;

use crate::Store;
use crate::error::{Error, Result};
use crate::fs::{FsStore, FsStoreConfig};
use crate::remote::{RemoteConfig, RemoteStore, Scheme};
use crate::request::{ReadRequest, ReadResult, TrySubmitError};
use crate::stats::StoreStats;
use crate::sync::{self, Arc, Mutex};
use crate::ticket::Ticket;
use crate::{Span, SpanRead};

/// True when `uri` is served by an object store (its scheme is one of [`Scheme`]'s).
pub fn is_remote_uri(uri: &str) -> bool {
    Scheme::of(uri).is_some()
}

/// Where a key goes.
enum Route<'k> {
    Fs(&'k str),
    Remote(Arc<RemoteStore>),
}

/// Every URI through one store; see the module docs.
pub struct UriStore {
    fs: FsStore,
    remote: RemoteConfig,
    /// Stores by `scheme://authority`, opened on first use.
    remotes: Mutex<HashMap<String, Arc<RemoteStore>>>,
}

impl fmt::Debug for UriStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opened: Vec<String> = sync::lock(&self.remotes).keys().cloned().collect();
        f.debug_struct("UriStore").field("fs", &self.fs).field("remotes", &opened).finish()
    }
}

impl UriStore {
    /// A store for local paths (`fs`) and object-store URIs (`remote`).
    ///
    /// # Errors
    /// Any [`FsStoreConfig::validate`] or [`RemoteConfig::validate`] error; the file
    /// store's thread start failures.
    pub fn new(fs: FsStoreConfig, remote: RemoteConfig) -> Result<Self> {
        remote.validate()?;
        Ok(Self { fs: FsStore::new("/", fs)?, remote, remotes: Mutex::new(HashMap::new()) })
    }

    /// The remote store serving `uri`, opened now if it is the first use of its bucket.
    ///
    /// # Errors
    /// As [`RemoteStore::new`].
    pub fn remote(&self, uri: &str) -> Result<Arc<RemoteStore>> {
        let (scheme, rest) = uri.split_once("://").unwrap_or(("", uri));
        let base = format!("{scheme}://{}", rest.split('/').next().unwrap_or_default());
        let mut map = sync::lock(&self.remotes);
        if let Some(s) = map.get(&base) {
            return Ok(Arc::clone(s));
        }
        // Building a client does no I/O (credentials are fetched on the first request),
        // so holding the lock here delays other first uses only briefly.
        let s = Arc::new(RemoteStore::new(uri, &self.remote)?);
        map.insert(base, Arc::clone(&s));
        Ok(s)
    }

    fn route<'k>(&self, key: &'k str) -> Result<Route<'k>> {
        if let Some(path) = key.strip_prefix("file://") {
            return Ok(Route::Fs(path));
        }
        if is_remote_uri(key) {
            return self.remote(key).map(Route::Remote);
        }
        Ok(Route::Fs(key))
    }

    /// The target of each read, or the error that fails it without I/O.
    fn submit_routed(&self, reads: Vec<ReadRequest>) -> Result<Ticket> {
        let (ticket, completer) = Ticket::for_reads(&reads);
        // Group by target, keeping each read's index in the caller's batch.
        let mut fs_reads: (Vec<usize>, Vec<ReadRequest>) = (Vec::new(), Vec::new());
        let mut fs_keys = Vec::new();
        let mut remote_reads: Vec<(Arc<RemoteStore>, Vec<usize>, Vec<ReadRequest>)> = Vec::new();
        for (i, mut r) in reads.into_iter().enumerate() {
            match self.route(&r.key) {
                Ok(Route::Fs(path)) => {
                    let path = path.to_owned();
                    fs_keys.push(std::mem::replace(&mut r.key, path));
                    fs_reads.0.push(i);
                    fs_reads.1.push(r);
                }
                Ok(Route::Remote(s)) => {
                    match remote_reads.iter_mut().find(|(t, ..)| Arc::ptr_eq(t, &s)) {
                        Some((_, idx, rs)) => {
                            idx.push(i);
                            rs.push(r);
                        }
                        None => remote_reads.push((s, vec![i], vec![r])),
                    }
                }
                Err(e) => {
                    completer.complete(i, failed(r, e));
                }
            }
        }
        let forward = |sub: Ticket, idx: Vec<usize>, fs_keys: Option<Vec<String>>| {
            let c = completer.clone();
            sub.on_complete(move |results| {
                for (k, (i, mut r)) in idx.into_iter().zip(results).enumerate() {
                    // The file store saw the path without `file://`: give the caller
                    // back the key it asked with.
                    if let Some(key) = fs_keys.as_ref().and_then(|keys| keys.get(k)) {
                        r.key.clone_from(key);
                    }
                    c.complete(i, r);
                }
            });
        };
        if !fs_reads.1.is_empty() {
            let (idx, rs) = fs_reads;
            forward(self.fs.submit(rs)?, idx, Some(fs_keys));
        }
        for (s, idx, rs) in remote_reads {
            forward(s.submit(rs)?, idx, None);
        }
        Ok(ticket)
    }
}

fn failed(r: ReadRequest, e: Error) -> ReadResult {
    ReadResult {
        key: r.key,
        offset: r.offset,
        len: r.len,
        buf_offset: r.buf_offset,
        buf: r.buf,
        outcome: Err(e),
    }
}

impl Store for UriStore {
    fn local_file(&self, key: &str) -> Option<std::path::PathBuf> {
        match self.route(key).ok()? {
            Route::Fs(p) => self.fs.local_file(p),
            Route::Remote(_) => None,
        }
    }

    fn stat(&self, key: &str) -> Result<Option<u64>> {
        match self.route(key)? {
            Route::Fs(p) => self.fs.stat(p),
            Route::Remote(s) => s.stat(key),
        }
    }

    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match self.route(key)? {
            Route::Fs(p) => self.fs.read(p, offset, buf),
            Route::Remote(s) => s.read(key, offset, buf),
        }
    }

    fn read_exact(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self.route(key)? {
            Route::Fs(p) => self.fs.read_exact(p, offset, buf),
            Route::Remote(s) => s.read_exact(key, offset, buf),
        }
    }

    fn read_all(&self, key: &str) -> Result<Vec<u8>> {
        match self.route(key)? {
            Route::Fs(p) => self.fs.read_all(p),
            Route::Remote(s) => s.read_all(key),
        }
    }

    fn read_span(&self, key: &str, span: Span) -> Result<Option<SpanRead>> {
        match self.route(key)? {
            Route::Fs(p) => self.fs.read_span(p, span),
            Route::Remote(s) => s.read_span(key, span),
        }
    }

    fn submit(&self, reads: Vec<ReadRequest>) -> Result<Ticket> {
        // The common case, every read on local files, goes straight to the file store.
        if reads.iter().all(|r| !r.key.contains("://")) {
            return self.fs.submit(reads);
        }
        self.submit_routed(reads)
    }

    fn try_submit(&self, reads: Vec<ReadRequest>) -> Result<Ticket, TrySubmitError> {
        // Only the file store has a queue that can be full; object stores bound requests
        // in flight instead and take every read at once.
        if reads.iter().all(|r| !r.key.contains("://")) {
            return self.fs.try_submit(reads);
        }
        self.submit_routed(reads).map_err(TrySubmitError::Failed)
    }

    fn merge_gap_hint(&self, key: &str) -> u64 {
        match self.route(key) {
            Ok(Route::Remote(s)) => s.merge_gap_hint(key),
            Ok(Route::Fs(_)) | Err(_) => 0,
        }
    }

    fn wants_read_ahead(&self, key: &str) -> bool {
        match self.route(key) {
            Ok(Route::Remote(s)) => s.wants_read_ahead(key),
            Ok(Route::Fs(_)) | Err(_) => false,
        }
    }

    /// The file store's counters plus every object store's.
    fn stats(&self) -> StoreStats {
        let mut s = self.fs.stats();
        for r in sync::lock(&self.remotes).values() {
            s.merge(&r.stats());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_and_file_uris_read_local_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), b"0123456789").unwrap();
        let s = UriStore::new(
            FsStoreConfig { io_threads: 1, ..Default::default() },
            RemoteConfig::default(),
        )
        .unwrap();
        let path = dir.path().join("a.bin").display().to_string();
        let uri = format!("file://{path}");
        assert_eq!(s.stat(&path).unwrap(), Some(10));
        assert_eq!(s.read_all(&uri).unwrap(), b"0123456789");
        let rs = s
            .submit(vec![ReadRequest::to_vec(uri.clone(), 2, 3), ReadRequest::to_vec(path, 5, 2)])
            .unwrap()
            .wait();
        assert_eq!(rs[0].key, uri, "the caller's key comes back");
        assert_eq!(rs[0].bytes(), Ok(3));
        assert_eq!(rs[1].bytes(), Ok(2));
        assert_eq!(s.merge_gap_hint(&uri), 0);
        // Local files are read on the workers; object stores' reads are submitted ahead.
        assert!(!s.wants_read_ahead(&uri));
        assert!(s.wants_read_ahead("s3://bucket/a.zarr/c/0"));
        assert!(s.merge_gap_hint("s3://bucket/a.zarr/c/0") > 0);
        // Local files can be read by other means (GPUDirect Storage); objects cannot.
        let file = dir.path().join("a.bin");
        assert_eq!(s.local_file(&uri).as_deref(), Some(file.as_path()));
        assert_eq!(s.local_file(&file.display().to_string()).as_deref(), Some(file.as_path()));
        assert_eq!(s.local_file("s3://bucket/a.zarr/c/0"), None);
        assert!(is_remote_uri("s3://b/k") && is_remote_uri("https://h/k") && !is_remote_uri(&uri));
    }

    #[test]
    fn a_bad_uri_fails_its_read_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), b"xy").unwrap();
        let s = UriStore::new(
            FsStoreConfig { io_threads: 1, ..Default::default() },
            RemoteConfig::default(),
        )
        .unwrap();
        let good = dir.path().join("a.bin").display().to_string();
        let rs = s
            .submit(vec![
                ReadRequest::to_vec("s3:///nobucket", 0, 1),
                ReadRequest::to_vec(good, 0, 2),
            ])
            .unwrap()
            .wait();
        assert!(matches!(rs[0].bytes(), Err(Error::BadUri { .. })), "{:?}", rs[0]);
        assert_eq!(rs[1].bytes(), Ok(2));
    }
}
