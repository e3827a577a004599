//! `RemoteStore`: objects in S3, GCS, Azure Blob Storage or behind plain HTTP, read through
//! the `object_store` crate as concurrent ranged GETs on a tokio runtime the store owns.
//!
//! Object stores reward concurrency, not threads: every request costs tens of
//! milliseconds, so a large read is split into parts (never below `min_part`, never
//! empty: see `split`) fetched at once, and up to `max_in_flight` requests of all
//! callers run together. The engines stay synchronous: `submit` spawns one task per read
//! and completes its [`Ticket`] from the runtime; the synchronous calls spawn and wait on
//! a channel, so they work from any thread, a runtime thread included.
//!
//! Nothing is silently short: a ranged response must carry exactly the bytes its range
//! header promises ([`Error::BodyLength`] otherwise), and fewer bytes than asked are
//! accepted only where the object ends.

mod classify;
mod client;
mod config;

pub use config::{RemoteConfig, Scheme};

use std::fmt;
use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use tokio::sync::Semaphore;

use crate::Store;
use crate::error::{Error, Result};
use crate::request::{IoBuf, ReadRequest, ReadResult};
use crate::split;
use crate::stats::{OpKind, Recorder, StoreStats};
use crate::sync::Arc;
use crate::ticket::{Completer, Ticket};
use crate::{Span, SpanRead};

/// The state every task of a store shares.
#[derive(Debug)]
struct Shared {
    inner: Arc<dyn ObjectStore>,
    /// `scheme://authority`, the prefix of every URL this store names in errors.
    base: String,
    permits: Semaphore,
    stats: Recorder,
    min_part: usize,
    max_part: usize,
    merge_gap: u64,
}

/// Objects under one bucket, container or HTTP origin. Keys are full URIs under that
/// origin (`s3://bucket/a.zarr/zarr.json`) or paths relative to it (`a.zarr/zarr.json`).
///
/// # Examples
/// See `tests/remote.rs`: a loopback S3 server, reads through `s3://` and `http://`.
pub struct RemoteStore {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    scheme: Scheme,
}

impl fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteStore")
            .field("base", &self.shared.base)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl RemoteStore {
    /// A store for the bucket (or HTTP origin) of `uri`, configured from `config` and the
    /// environment. Nothing is requested yet: a bad credential shows in the first read.
    ///
    /// # Errors
    /// [`Error::BadUri`] for an unknown scheme or a URI without bucket or host;
    /// [`Error::UnknownOption`], [`Error::InvalidConfig`], [`Error::ClientConfig`] for
    /// bad options; [`Error::Runtime`] when the runtime cannot start.
    pub fn new(uri: &str, config: &RemoteConfig) -> Result<Self> {
        config.validate()?;
        let Some(scheme) = Scheme::of(uri) else {
            return Err(Error::BadUri {
                uri: uri.to_owned(),
                reason: "not an object store URI (s3://, gs://, az://, http://, https://)",
            });
        };
        let base = base_of(uri)?;
        let inner = client::build(scheme, &base, config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.runtime_threads)
            .thread_name("damacy-object-store")
            .enable_time()
            .enable_io()
            .build()
            .map_err(|e| Error::Runtime { kind: e.kind() })?;
        let shared = Arc::new(Shared {
            inner,
            base,
            permits: Semaphore::new(config.max_in_flight),
            stats: Recorder::new(),
            min_part: config.min_part,
            max_part: config.max_part,
            merge_gap: config.merge_gap,
        });
        Ok(Self { shared, runtime: Some(runtime), scheme })
    }

    /// `scheme://authority` of this store.
    pub fn base(&self) -> &str {
        &self.shared.base
    }

    /// The scheme this store serves.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.runtime.as_ref().map(tokio::runtime::Runtime::handle)
    }

    /// Runs `fut` on the runtime and waits for it on this thread (a channel, so that any
    /// thread may call, a runtime worker included).
    fn block<T: Send + 'static>(
        &self,
        key: &str,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let shut = || Error::ShutDown { path: key.into() };
        let handle = self.handle().ok_or_else(shut)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        handle.spawn(async move {
            // The receiver waits until this sends or is dropped; a send cannot fail
            // while it waits.
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| Err(shut()))
    }

    /// The object path and display URL of `key`.
    fn locate(&self, key: &str) -> Result<(ObjectPath, String)> {
        locate(&self.shared.base, key)
    }

    fn timed<T>(
        &self,
        kind: OpKind,
        bytes: impl Fn(&T) -> usize,
        r: Result<T>,
        t0: Instant,
    ) -> Result<T> {
        let n = r.as_ref().map_or(0, &bytes);
        self.shared.stats.op(kind, t0.elapsed(), n);
        if r.is_err() {
            self.shared.stats.error();
        }
        r
    }
}

impl Drop for RemoteStore {
    fn drop(&mut self) {
        // Never block here (the last handle may drop on a runtime thread): tasks still
        // running are dropped, and their guards complete their reads with `ShutDown`.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// `scheme://authority` of `uri`.
fn base_of(uri: &str) -> Result<String> {
    let bad = |reason| Error::BadUri { uri: uri.to_owned(), reason };
    let (scheme, rest) = uri.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad("no bucket, container or host after the scheme"));
    }
    Ok(format!("{scheme}://{authority}"))
}

/// The object path of `key` under `base`, and the URL to name in errors.
fn locate(base: &str, key: &str) -> Result<(ObjectPath, String)> {
    let rel = match key.strip_prefix(base) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        Some(_) | None if key.contains("://") => {
            return Err(Error::BadUri {
                uri: key.to_owned(),
                reason: "names another bucket or host than the store's",
            });
        }
        _ => key.trim_start_matches('/'),
    };
    let url = format!("{base}/{rel}");
    if rel.is_empty() {
        return Err(Error::EmptyKey);
    }
    if rel.split('/').any(|seg| seg == "..") {
        return Err(Error::KeyEscapesRoot { key: key.to_owned() });
    }
    let path = ObjectPath::parse(rel).map_err(|_| Error::BadUri {
        uri: url.clone(),
        reason: "not a valid object path (empty segment, `.`, or a control character)",
    })?;
    Ok((path, url))
}

/// One part of a read: `Some(bytes)` (fewer than asked only where the object ends), or
/// `None` when the part starts at or past the end of the object.
async fn fetch_part(
    sh: &Shared,
    path: &ObjectPath,
    url: &str,
    start: u64,
    len: u64,
) -> Result<Option<Bytes>> {
    let end = start.checked_add(len).ok_or(Error::RangeOverflow {
        path: url.into(),
        offset: start,
        len: len as usize,
    })?;
    let _permit = sh.permits.acquire().await.map_err(|_| Error::ShutDown { path: url.into() })?;
    let t0 = Instant::now();
    let opts = GetOptions { range: Some(GetRange::Bounded(start..end)), ..Default::default() };
    let got = match sh.inner.get_opts(path, opts).await {
        Ok(r) => {
            let range = r.range.clone();
            let body = r.bytes().await.map_err(|e| classify::error(&e, url, Some((start, end))))?;
            check_body(url, start, end, &range, body.len())?;
            Ok(Some(body))
        }
        Err(e) if classify::may_be_past_end(&e) => match sh.inner.head(path).await {
            Ok(meta) if meta.size <= start => Ok(None),
            _ => Err(classify::error(&e, url, Some((start, end)))),
        },
        Err(e) => Err(classify::error(&e, url, Some((start, end)))),
    };
    sh.stats.op(
        OpKind::Part,
        t0.elapsed(),
        got.as_ref().map_or(0, |b| b.as_ref().map_or(0, Bytes::len)),
    );
    if got.is_err() {
        sh.stats.error();
    }
    got
}

/// A ranged answer must start where asked, end at or before where asked, and carry
/// exactly as many bytes as its range says.
fn check_body(
    url: &str,
    start: u64,
    end: u64,
    range: &std::ops::Range<u64>,
    got: usize,
) -> Result<()> {
    let got = got as u64;
    let ok =
        range.start == start && range.end <= end && range.end.checked_sub(range.start) == Some(got);
    if ok { Ok(()) } else { Err(Error::BodyLength { url: url.to_owned(), start, end, got }) }
}

/// Fetches `len` bytes at `offset` as concurrent parts; the pieces `(relative offset,
/// bytes)` in order, a contiguous prefix of the range (shorter only at end of object).
async fn fetch_range(
    sh: Arc<Shared>,
    path: ObjectPath,
    url: String,
    offset: u64,
    len: usize,
) -> Result<Vec<(usize, Bytes)>> {
    let parts = split::split(len, sh.max_part, sh.min_part);
    if let [(_, l)] = parts[..] {
        return Ok(fetch_part(&sh, &path, &url, offset, l as u64)
            .await?
            .map(|b| (0, b))
            .into_iter()
            .collect());
    }
    let mut tasks = Vec::with_capacity(parts.len());
    for &(rel, l) in &parts {
        let (sh, path, url) = (Arc::clone(&sh), path.clone(), url.clone());
        let start = offset.checked_add(rel as u64).ok_or(Error::RangeOverflow {
            path: url.clone().into(),
            offset,
            len,
        })?;
        tasks
            .push(tokio::spawn(async move { fetch_part(&sh, &path, &url, start, l as u64).await }));
    }
    let mut pieces = Vec::with_capacity(parts.len());
    let mut ended = false;
    for (task, &(rel, l)) in tasks.into_iter().zip(&parts) {
        let r = task.await.map_err(|_| Error::ShutDown { path: url.clone().into() })?;
        if ended {
            // Past the end of the object: whatever these parts answered (nothing, or a
            // range error) does not change the read.
            continue;
        }
        match r? {
            Some(b) => {
                ended = b.len() < l;
                pieces.push((rel, b));
            }
            None => ended = true,
        }
    }
    Ok(pieces)
}

/// Copies pieces into `dst`; the bytes written (a contiguous prefix).
fn copy_pieces(pieces: &[(usize, Bytes)], dst: &mut [u8]) -> usize {
    let mut n = 0;
    for (rel, b) in pieces {
        if let Some(d) = dst.get_mut(*rel..rel + b.len()) {
            d.copy_from_slice(b);
            n = rel + b.len();
        }
    }
    n
}

/// A submitted read in flight: whoever drops it without finishing (a runtime shut down
/// with the task pending) completes it with `ShutDown`, so no waiter ever hangs.
struct Pending {
    completer: Completer,
    index: usize,
    key: String,
    offset: u64,
    len: usize,
    buf_offset: usize,
    buf: Option<Box<dyn IoBuf>>,
    shared: Arc<Shared>,
}

impl Pending {
    fn finish(mut self, outcome: Result<usize>) {
        if let Some(buf) = self.buf.take() {
            self.complete(buf, outcome);
        }
    }

    fn complete(&self, buf: Box<dyn IoBuf>, outcome: Result<usize>) {
        if outcome.is_err() {
            self.shared.stats.error();
        }
        self.shared.stats.exit();
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
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let path = self.key.clone().into();
            self.complete(buf, Err(Error::ShutDown { path }));
        }
    }
}

async fn run_read(mut p: Pending, path: ObjectPath, url: String) {
    let sh = Arc::clone(&p.shared);
    let t0 = Instant::now();
    let outcome = fetch_range(sh, path, url, p.offset, p.len).await;
    let outcome = outcome.map(|pieces| {
        let buf = p.buf.as_mut().map(|b| b.as_mut_slice());
        buf.and_then(|b| b.get_mut(p.buf_offset..p.buf_offset + p.len))
            .map_or(0, |d| copy_pieces(&pieces, d))
    });
    p.shared.stats.op(OpKind::Read, t0.elapsed(), *outcome.as_ref().unwrap_or(&0));
    p.finish(outcome);
}

impl Store for RemoteStore {
    fn stat(&self, key: &str) -> Result<Option<u64>> {
        let t0 = Instant::now();
        let r = self.locate(key).and_then(|(path, url)| {
            let sh = Arc::clone(&self.shared);
            self.block(key, async move {
                let _permit = sh
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| Error::ShutDown { path: url.clone().into() })?;
                match sh.inner.head(&path).await {
                    Ok(meta) => Ok(Some(meta.size)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(classify::error(&e, &url, None)),
                }
            })
        });
        self.timed(OpKind::Stat, |_| 0, r, t0)
    }

    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let t0 = Instant::now();
        let len = buf.len();
        let r = self.locate(key).and_then(|(path, url)| {
            let sh = Arc::clone(&self.shared);
            let pieces = self.block(key, fetch_range(sh, path, url, offset, len))?;
            Ok(copy_pieces(&pieces, buf))
        });
        self.timed(OpKind::Read, |n| *n, r, t0)
    }

    fn read_all(&self, key: &str) -> Result<Vec<u8>> {
        let t0 = Instant::now();
        let r = self.locate(key).and_then(|(path, url)| {
            let sh = Arc::clone(&self.shared);
            self.block(key, async move {
                let _permit = sh
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| Error::ShutDown { path: url.clone().into() })?;
                let r = sh
                    .inner
                    .get_opts(&path, GetOptions::default())
                    .await
                    .map_err(|e| classify::error(&e, &url, None))?;
                let (size, range) = (r.meta.size, r.range.clone());
                let body = r.bytes().await.map_err(|e| classify::error(&e, &url, None))?;
                check_body(&url, 0, size, &range, body.len())?;
                if range.end != size {
                    return Err(Error::BodyLength {
                        url,
                        start: 0,
                        end: size,
                        got: body.len() as u64,
                    });
                }
                Ok(body.to_vec())
            })
        });
        self.timed(OpKind::ReadAll, Vec::len, r, t0)
    }

    fn read_span(&self, key: &str, span: Span) -> Result<Option<SpanRead>> {
        let t0 = Instant::now();
        let r = self.locate(key).and_then(|(path, url)| {
            let sh = Arc::clone(&self.shared);
            self.block(key, async move { read_span(&sh, &path, &url, span).await })
        });
        self.timed(
            OpKind::Read,
            |s: &Option<SpanRead>| s.as_ref().map_or(0, |s| s.bytes.len()),
            r,
            t0,
        )
    }

    fn submit(&self, reads: Vec<ReadRequest>) -> Result<Ticket> {
        let (ticket, completer) = Ticket::for_reads(&reads);
        self.shared.stats.submitted(reads.len());
        let handle = self.handle().cloned();
        for (index, r) in reads.into_iter().enumerate() {
            self.shared.stats.enter(1);
            let ReadRequest { key, offset, len, buf_offset, mut buf } = r;
            let buf_len = buf.as_mut_slice().len();
            let p = Pending {
                completer: completer.clone(),
                index,
                key,
                offset,
                len,
                buf_offset,
                buf: Some(buf),
                shared: Arc::clone(&self.shared),
            };
            if buf_offset.checked_add(len).is_none_or(|end| end > buf_len) {
                let e = Error::BufferTooSmall { key: p.key.clone(), buf_offset, len, buf_len };
                p.finish(Err(e));
                continue;
            }
            if len == 0 {
                p.finish(Ok(0));
                continue;
            }
            match (self.locate(&p.key), &handle) {
                (Ok((path, url)), Some(h)) => {
                    h.spawn(run_read(p, path, url));
                }
                (Err(e), _) => p.finish(Err(e)),
                // No runtime: `p` drops and completes with `ShutDown`.
                (Ok(_), None) => {}
            }
        }
        Ok(ticket)
    }

    fn merge_gap_hint(&self, _key: &str) -> u64 {
        self.shared.merge_gap
    }

    fn wants_read_ahead(&self, _key: &str) -> bool {
        true
    }

    fn stats(&self) -> StoreStats {
        self.shared.stats.snapshot()
    }
}

async fn read_span(
    sh: &Shared,
    path: &ObjectPath,
    url: &str,
    span: Span,
) -> Result<Option<SpanRead>> {
    let _permit = sh.permits.acquire().await.map_err(|_| Error::ShutDown { path: url.into() })?;
    let (range, n) = match span {
        Span::Head(n) => (GetRange::Bounded(0..n as u64), n),
        Span::Tail(n) => (GetRange::Suffix(n as u64), n),
    };
    if n == 0 {
        return head_span(sh, path, url).await;
    }
    match sh.inner.get_opts(path, GetOptions { range: Some(range), ..Default::default() }).await {
        Ok(r) => {
            let (size, got) = (r.meta.size, r.range.clone());
            let body = r.bytes().await.map_err(|e| classify::error(&e, url, None))?;
            let (want_start, want_len) = span.within(size);
            check_body(url, want_start, want_start + want_len as u64, &got, body.len())?;
            if body.len() != want_len {
                return Err(Error::BodyLength {
                    url: url.to_owned(),
                    start: want_start,
                    end: want_start + want_len as u64,
                    got: body.len() as u64,
                });
            }
            Ok(Some(SpanRead { object_len: size, bytes: body.to_vec() }))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        // An empty object has no byte to range over: its length says all.
        Err(e) if classify::may_be_past_end(&e) => head_span(sh, path, url).await,
        Err(e) => Err(classify::error(&e, url, None)),
    }
}

async fn head_span(sh: &Shared, path: &ObjectPath, url: &str) -> Result<Option<SpanRead>> {
    match sh.inner.head(path).await {
        Ok(meta) if meta.size == 0 => Ok(Some(SpanRead { object_len: 0, bytes: Vec::new() })),
        Ok(meta) => Err(Error::Remote {
            url: url.to_owned(),
            range: None,
            status: Some(416),
            failure: crate::RemoteFailure::Response,
            detail: format!("range refused for an object of {} bytes", meta.size),
        }),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(classify::error(&e, url, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_resolve_under_the_base_and_never_leave_it() {
        let (p, url) = locate("s3://b", "s3://b/a.zarr/zarr.json").unwrap();
        assert_eq!((p.as_ref(), url.as_str()), ("a.zarr/zarr.json", "s3://b/a.zarr/zarr.json"));
        let (p, _) = locate("s3://b", "a/c/0").unwrap();
        assert_eq!(p.as_ref(), "a/c/0");
        assert!(matches!(locate("s3://b", "s3://other/x"), Err(Error::BadUri { .. })));
        assert!(matches!(locate("s3://b", "s3://bb/x"), Err(Error::BadUri { .. })));
        assert_eq!(locate("s3://b", "a/../x"), Err(Error::KeyEscapesRoot { key: "a/../x".into() }));
        assert_eq!(locate("s3://b", "s3://b"), Err(Error::EmptyKey));
        assert!(matches!(locate("s3://b", "a//b"), Err(Error::BadUri { .. })));
        assert_eq!(base_of("http://127.0.0.1:80/x/y").unwrap(), "http://127.0.0.1:80");
        assert!(matches!(base_of("s3:///x"), Err(Error::BadUri { .. })));
    }

    #[test]
    fn schemes_and_their_option_keys() {
        assert_eq!(Scheme::of("s3://b/k"), Some(Scheme::S3));
        assert_eq!(Scheme::of("gs://b/k"), Some(Scheme::Gcs));
        assert_eq!(Scheme::of("az://c/k"), Some(Scheme::Azure));
        assert_eq!(Scheme::of("https://h/k"), Some(Scheme::Https));
        assert_eq!(Scheme::of("file:///x"), None);
        assert_eq!(Scheme::of("/abs/path"), None);
        assert_eq!(Scheme::Https.options_key(), "http");
    }

    #[test]
    fn bodies_must_match_their_range_exactly() {
        assert!(check_body("u", 10, 20, &(10..20), 10).is_ok());
        assert!(
            check_body("u", 10, 20, &(10..15), 5).is_ok(),
            "a range clipped at the end of object"
        );
        let e = check_body("u", 10, 20, &(10..20), 7).unwrap_err();
        assert_eq!(e, Error::BodyLength { url: "u".into(), start: 10, end: 20, got: 7 });
        assert!(check_body("u", 10, 20, &(12..20), 8).is_err(), "a range starting elsewhere");
        assert!(check_body("u", 10, 20, &(10..25), 15).is_err(), "more than asked");
    }

    #[test]
    fn config_validation_names_the_field_or_the_option() {
        let mut c = RemoteConfig { min_part: 0, ..Default::default() };
        assert!(matches!(c.validate(), Err(Error::InvalidConfig { field: "min_part", .. })));
        c = RemoteConfig { max_part: 1, ..Default::default() };
        assert!(matches!(c.validate(), Err(Error::InvalidConfig { field: "max_part", .. })));
        c = RemoteConfig::default();
        c.options.entry("s3".into()).or_default().insert("aws_endpoitn".into(), "x".into());
        assert_eq!(
            c.validate(),
            Err(Error::UnknownOption { scheme: "s3", key: "aws_endpoitn".into() })
        );
        c = RemoteConfig::default();
        c.options.entry("ftp".into()).or_default();
        assert!(matches!(c.validate(), Err(Error::BadUri { .. })));
    }
}
