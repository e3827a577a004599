//! Reads of stores whose every request waits (object stores) are submitted ahead of the
//! decode workers (`Store::wants_read_ahead`), so requests in flight do not depend on the
//! number of decode threads; the batches are the same bytes, and
//! `object_store.read_ahead_bytes` bounds what is in flight. Both engines (the CUDA one on
//! the simulated device).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use damacy::{Backend, OutDtype, Pipeline, Sample};
use store::{FsStore, FsStoreConfig, ReadRequest, ReadResult, Store, StoreStats, Ticket};

use crate::device::{builder, fixtures};

/// What the store saw.
#[derive(Debug, Default)]
struct Seen {
    /// Submitted reads not yet handed back.
    outstanding: usize,
    /// The most outstanding at once.
    peak: usize,
    submitted: usize,
    /// Reads made synchronously (on a decode worker).
    sync_reads: usize,
    /// Gated stores hand nothing back until two reads were outstanding at once.
    released: bool,
    held: Vec<(store::Completer, Vec<ReadResult>)>,
}

/// Local files behind a store that says whether it wants reads ahead and counts what it
/// is asked. A gated store holds submitted reads' results back until two were in flight
/// at the same time: it proves, without timing, that a worker did not wait for one read
/// before the next was issued (with one decode thread). A losing store drops every
/// submitted read's completer unfilled (as a store with a panicking I/O thread or a
/// cancelled task would).
#[derive(Debug)]
struct Counting {
    inner: FsStore,
    ahead: bool,
    gated: bool,
    losing: bool,
    seen: Arc<Mutex<Seen>>,
}

impl Counting {
    fn new(ahead: bool, gated: bool) -> Self {
        let inner = FsStore::new("/", FsStoreConfig { io_threads: 2, ..Default::default() })
            .expect("file store");
        Self { inner, ahead, gated, losing: false, seen: Arc::default() }
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }

    /// Hands back every held read (a test that failed to get two in flight must still
    /// end, and its pipeline drop).
    fn release(&self) {
        let held = {
            let mut s = self.seen.lock().unwrap();
            s.released = true;
            let held = std::mem::take(&mut s.held);
            s.outstanding -= held.iter().map(|(_, r)| r.len()).sum::<usize>();
            held
        };
        for (c, r) in held {
            deliver(&c, r);
        }
    }
}

fn deliver(completer: &store::Completer, results: Vec<ReadResult>) {
    for (i, r) in results.into_iter().enumerate() {
        assert!(completer.complete(i, r));
    }
}

impl Store for Counting {
    fn stat(&self, key: &str) -> store::Result<Option<u64>> {
        self.inner.stat(key)
    }
    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> store::Result<usize> {
        self.seen.lock().unwrap().sync_reads += 1;
        self.inner.read(key, offset, buf)
    }
    fn read_all(&self, key: &str) -> store::Result<Vec<u8>> {
        self.inner.read_all(key)
    }
    fn submit(&self, reads: Vec<ReadRequest>) -> store::Result<Ticket> {
        let n = reads.len();
        let (ticket, completer) = Ticket::for_reads(&reads);
        if self.losing {
            self.seen.lock().unwrap().submitted += n;
            drop(completer);
            return Ok(ticket);
        }
        let flush = {
            let mut s = self.seen.lock().unwrap();
            s.submitted += n;
            s.outstanding += n;
            s.peak = s.peak.max(s.outstanding);
            if !s.released && s.peak >= 2 {
                s.released = true;
                let held = std::mem::take(&mut s.held);
                s.outstanding -= held.iter().map(|(_, r)| r.len()).sum::<usize>();
                held
            } else {
                Vec::new()
            }
        };
        for (c, r) in flush {
            deliver(&c, r);
        }
        let (seen, gated) = (Arc::clone(&self.seen), self.gated);
        self.inner.submit(reads)?.on_complete(move |results| {
            let mut s = seen.lock().unwrap();
            if gated && !s.released {
                // Still outstanding: not handed back. (Counting it done here let a first
                // read that completed before the second was submitted keep the gate shut
                // for good, on a loaded machine.)
                s.held.push((completer, results));
                return;
            }
            s.outstanding -= results.len();
            drop(s);
            deliver(&completer, results);
        });
        Ok(ticket)
    }
    fn wants_read_ahead(&self, _key: &str) -> bool {
        self.ahead
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

/// Two samples from two fixture arrays (so at least two read ops per batch), in three
/// batches, and the batches as the plain file store reads them.
fn samples_and_reference(dev: Backend) -> (Vec<Sample>, Vec<Vec<u8>>, damacy::ConfigBuilder) {
    let fx = fixtures();
    let pick = |name: &str| fx.iter().find(|f| f.name == name).expect(name).path.clone();
    let (a, b) = (pick("shard_end_u16_zstd"), pick("blosc_zstd_shuffle_f32"));
    let samples: Vec<Sample> = (0..6u64)
        .map(|i| {
            let path = if i % 2 == 0 { &a } else { &b };
            Sample::new(path, vec![i, 2 * i, 1], vec![i + 4, 2 * i + 8, 9]).expect("box")
        })
        .collect();
    let cfg = builder(&[4, 8, 8], 2, OutDtype::F32, dev).decode_threads(1);
    let reference = crate::device::read_all(cfg.clone().build().unwrap(), samples.clone())
        .expect("reference read");
    (samples, reference, cfg)
}

fn read_through(cfg: damacy::Config, samples: Vec<Sample>, store: Arc<Counting>) -> Vec<Vec<u8>> {
    let meta = Arc::new(FsStore::new("/", FsStoreConfig::default()).unwrap());
    let mut p = Pipeline::with_stores(cfg, meta, Arc::clone(&store) as _).expect("pipeline");
    p.push(samples).expect("push");
    p.finish();
    let mut out = Vec::new();
    loop {
        match p.pop_timeout(Duration::from_secs(120)) {
            Ok(Some(b)) => out.push(b.to_host().expect("host bytes")),
            Ok(None) => return out,
            Err(damacy::Error::Timeout { .. }) => {
                // Not a synchronization: only a failing engine (reads never two in flight
                // at once) gets here, and the test must fail rather than hang.
                store.release();
                panic!("no batch in 120 s: the gated store never saw two reads in flight");
            }
            Err(e) => panic!("batch: {e}"),
        }
    }
}

fn reads_are_submitted_ahead_with_one_decode_thread(dev: Backend) {
    let (samples, reference, cfg) = samples_and_reference(dev);
    let store = Arc::new(Counting::new(true, true));
    let got = read_through(cfg.build().unwrap(), samples, Arc::clone(&store));
    assert_eq!(got, reference, "the same bytes as the file store's");
    let (submitted, sync_reads, peak) = store.seen(|s| (s.submitted, s.sync_reads, s.peak));
    assert!(submitted >= 6, "every read op submitted ({submitted})");
    assert_eq!(sync_reads, 0, "no read made on a worker");
    assert!(peak >= 2, "reads in flight together with one decode thread ({peak})");
}

fn local_files_are_read_on_the_workers(dev: Backend) {
    let (samples, reference, cfg) = samples_and_reference(dev);
    let store = Arc::new(Counting::new(false, false));
    let got = read_through(cfg.build().unwrap(), samples, Arc::clone(&store));
    assert_eq!(got, reference);
    let (submitted, sync_reads) = store.seen(|s| (s.submitted, s.sync_reads));
    assert_eq!(submitted, 0);
    assert!(sync_reads >= 6, "{sync_reads}");
}

fn the_read_ahead_budget_bounds_reads_in_flight(dev: Backend) {
    let (samples, reference, cfg) = samples_and_reference(dev);
    let mut cfg = cfg.build().unwrap();
    // One byte: each read is clamped to the whole budget and so runs alone.
    cfg.object_store.read_ahead_bytes = 1;
    let store = Arc::new(Counting::new(true, false));
    let got = read_through(cfg, samples, Arc::clone(&store));
    assert_eq!(got, reference);
    let (submitted, peak) = store.seen(|s| (s.submitted, s.peak));
    assert!(submitted >= 6, "{submitted}");
    assert_eq!(peak, 1, "never more than the budget in flight");
}

/// A read ahead that the store abandons fails its batch with `Abandoned`, naming the
/// shard file, and the stream ends: no worker waits for it for good (before, the
/// pipeline hung in `pop`, and in its drop).
fn a_read_the_store_abandons_fails_its_batch_instead_of_hanging(dev: Backend) {
    let (samples, reference, cfg) = samples_and_reference(dev);
    let meta = Arc::new(FsStore::new("/", FsStoreConfig::default()).unwrap());
    let store = Arc::new(Counting { losing: true, ..Counting::new(true, false) });
    let mut p = Pipeline::with_stores(cfg.build().unwrap(), meta, Arc::clone(&store) as _).unwrap();
    p.push(samples).expect("push");
    p.finish();
    let mut failed = 0;
    for k in 0..reference.len() {
        match p.pop_timeout(Duration::from_secs(120)) {
            Err(damacy::Error::Sample { source, .. }) => {
                match &*source {
                    damacy::SampleError::Store(store::Error::Abandoned { path }) => {
                        assert!(path.to_string_lossy().contains("/c/"), "batch {k}: {path:?}");
                    }
                    other => panic!("batch {k}: expected Abandoned, got {other:?}"),
                }
                failed += 1;
            }
            other => panic!(
                "batch {k}: expected its read's failure, got {:?}",
                other.map(|b| b.is_some())
            ),
        }
    }
    assert_eq!(failed, reference.len());
    assert!(p.pop_timeout(Duration::from_secs(120)).expect("end").is_none());
    assert!(store.seen(|s| s.submitted) >= reference.len(), "the reads went ahead");
}

macro_rules! on_each_engine {
    ($($body:ident => $host:ident, $sim:ident;)*) => {$(
        #[test]
        fn $host() {
            $body(Backend::Host)
        }

        #[test]
        fn $sim() {
            $body(Backend::Simulated)
        }
    )*};
}

on_each_engine! {
    reads_are_submitted_ahead_with_one_decode_thread => reads_are_submitted_ahead_with_one_decode_thread_host, reads_are_submitted_ahead_with_one_decode_thread_sim;
    local_files_are_read_on_the_workers => local_files_are_read_on_the_workers_host, local_files_are_read_on_the_workers_sim;
    the_read_ahead_budget_bounds_reads_in_flight => the_read_ahead_budget_bounds_reads_in_flight_host, the_read_ahead_budget_bounds_reads_in_flight_sim;
    a_read_the_store_abandons_fails_its_batch_instead_of_hanging => a_read_the_store_abandons_fails_its_batch_instead_of_hanging_host, a_read_the_store_abandons_fails_its_batch_instead_of_hanging_sim;
}

/// A metadata store whose shard-index reads (`read_span`) wait until `want` of them are
/// in progress at once: it proves, without timing, that shard indexes are fetched by
/// more concurrent requests than there are file-store I/O threads.
#[derive(Debug)]
struct Rendezvous {
    inner: FsStore,
    want: usize,
    /// (reads inside now, most at once, whether `want` was reached).
    state: Mutex<(usize, usize, bool)>,
    cv: std::sync::Condvar,
}

impl Store for Rendezvous {
    fn stat(&self, key: &str) -> store::Result<Option<u64>> {
        self.inner.stat(key)
    }
    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> store::Result<usize> {
        self.inner.read(key, offset, buf)
    }
    fn read_all(&self, key: &str) -> store::Result<Vec<u8>> {
        self.inner.read_all(key)
    }
    fn submit(&self, reads: Vec<ReadRequest>) -> store::Result<Ticket> {
        self.inner.submit(reads)
    }
    fn read_span(&self, key: &str, span: store::Span) -> store::Result<Option<store::SpanRead>> {
        let mut st = self.state.lock().unwrap();
        st.0 += 1;
        st.1 = st.1.max(st.0);
        if st.0 >= self.want {
            st.2 = true;
            self.cv.notify_all();
        }
        // A hang guard, not a synchronization: only an engine that never has `want` index
        // reads in flight waits the full time, and the test then fails on `reached`.
        let (mut st, _) =
            self.cv.wait_timeout_while(st, Duration::from_secs(120), |s| !s.2).unwrap();
        st.0 -= 1;
        drop(st);
        self.inner.read_span(key, span)
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

#[test]
fn shard_indexes_are_fetched_by_more_requests_than_io_threads() {
    let fx = fixtures();
    let path = fx.iter().find(|f| f.name == "shard_end_u16_zstd").expect("fixture").path.clone();
    // 12 crops, one in each of the 20×33×17 array's 2×3×2 shards (16³).
    let samples: Vec<Sample> = (0..12u64)
        .map(|i| {
            let (z, y, x) = (i % 2 * 16, [0, 16, 31][(i / 2 % 3) as usize], i / 6 * 15);
            Sample::new(&path, vec![z, y, x], vec![z + 2, y + 2, x + 2]).expect("box")
        })
        .collect();
    let cfg = builder(&[2, 2, 2], 12, OutDtype::F32, Backend::Host)
        .io_threads(2)
        .metadata_threads(32)
        .lookahead(12)
        .build()
        .unwrap();
    let reference = crate::device::read_all(cfg.clone(), samples.clone()).expect("reference");
    let meta = Arc::new(Rendezvous {
        inner: FsStore::new("/", FsStoreConfig { io_threads: 2, ..Default::default() }).unwrap(),
        want: 8,
        state: Mutex::new((0, 0, false)),
        cv: std::sync::Condvar::new(),
    });
    let data = Arc::new(FsStore::new("/", FsStoreConfig::default()).unwrap());
    let mut p = Pipeline::with_stores(cfg, Arc::clone(&meta) as _, data).expect("pipeline");
    p.push(samples).expect("push");
    p.finish();
    let mut got = Vec::new();
    while let Some(b) = p.pop().expect("batch") {
        got.push(b.to_host().expect("bytes"));
    }
    assert_eq!(got, reference);
    let (_, most, reached) = *meta.state.lock().unwrap();
    assert!(reached, "8 shard-index reads in flight at once with 2 I/O threads (most {most})");
}
