//! The pipeline: samples in, batches out, in push order.
//!
//! Threads: a feeder (moves pushed samples into the prefetcher's lookahead ring), the
//! coordinator and its fellow preparers (`prepare_threads` in all: each takes the next
//! `samples_per_batch` resolved samples in push order, prepares that batch with
//! `crate::prepare` beside the others, and hands it to the engine when its turn comes,
//! so batches reach the engine in push order) and `decode_threads` decode workers (run
//! the engines' `Job`s). The engine (`crate::engine`) puts each batch into the output
//! queue in push order; `pop` takes the oldest and has it delivered.
//!
//! Lock order: `gather` is held while a preparer takes its batch's samples (it takes
//! `feed` and the prefetcher's locks inside); the turnstile's lock is a leaf, taken under
//! `feed` to see whether preparation stopped; otherwise `input`, `feed` and the output
//! queue's lock are never held together, and no lock is held across I/O, a dispatch or
//! a wait on a batch's jobs. One exception, for planning: with a decoded-chunk cache, a
//! preparer's probe (`decoded_cache::CacheProbe`) holds the cache's lock across a run of
//! lookups, which the planner makes back to back after its walk (never across its other
//! work), let go every `chunk_cache::PROBE_RELOCK` lookups and when they end, so fills,
//! releases and other preparers wait at most that long (no I/O happens there).

use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use planner::PlanLimits;
use prefetch_cache::{PrefetchConfig, Prefetcher, ReadySample, SampleRequest, Turnstile};

use crate::batch::{Batch, Sample};
use crate::config::Config;
use crate::decoded_cache::{CacheUse, DecodedCache};
use crate::engine::read_ahead::ReadAhead;
use crate::engine::{
    DeliverCtx, Engine, EngineCtx, Fatal, Job, Next, Output, Pending, Running, Scratch, Worker,
    contain, lock,
};
use crate::error::{Error, Result};
use crate::fault::{Fault, Faults};
use crate::stats::{StatCounters, Stats};

/// A lazily consumed source of samples.
type Source = Box<dyn Iterator<Item = Sample> + Send>;

enum Pushed {
    One(Sample),
    Many(Source),
}

#[derive(Default)]
struct Input {
    queue: VecDeque<Pushed>,
    /// Samples queued as `One` (what `try_push` bounds by the lookahead).
    queued_samples: usize,
    closed: bool,
}

struct Shared {
    cfg: Config,
    /// Where chunk data comes from.
    store: Arc<dyn store::Store>,
    input: Mutex<Input>,
    input_cv: Condvar,
    output: Arc<Output>,
    shutdown: AtomicBool,
    stats: Arc<StatCounters>,
    prefetcher: Prefetcher,
    feed: Mutex<Feed>,
    feed_cv: Condvar,
    /// Prefetcher cache hits and misses at the last `reset_stats`.
    cache_base: Mutex<(u64, u64)>,
    /// The decoded-chunk cache (host or device memory, by engine), shared with the engine.
    chunk_cache: Option<crate::decoded_cache::DecodedCache>,
    /// Its counters at the last `reset_stats`.
    chunk_cache_base: Mutex<chunk_cache::CacheStats>,
    /// The engine that executes planned batches.
    engine: Box<dyn Engine>,
    /// The engine's plan limits, fixed at construction.
    limits: PlanLimits,
    running: Running,
    /// The first of the pipeline's threads (or the engine's) that panicked.
    fatal: Arc<Fatal>,
    /// Faults armed by a test.
    faults: Arc<Faults>,
    /// Threads preparing batches (`Config::prepare_threads`, resolved).
    preparers: usize,
    /// The next batch's id and the next plan's number: a preparer takes a plan's
    /// samples, its first batch id and its number under this lock.
    gather: Mutex<NextPlan>,
    /// Prepared plans go to the engine through it, in plan order; once it is stopped (a
    /// preparer panicked, the engine refused a batch) no preparer takes samples any more.
    turn: Turnstile,
    /// Ids of the batches prepared so far, kept only while `PrepareOutOfOrder` is armed.
    out_of_order: (Mutex<HashSet<u64>>, Condvar),
}

/// What the next plan a preparer takes starts with.
#[derive(Debug, Default, Clone, Copy)]
struct NextPlan {
    /// Its first batch's id.
    batch: u64,
    /// Its number, in push order: its turn at the engine (`Shared::turn`).
    plan: u64,
}

/// Samples moved into the prefetcher's ring by the feeder and taken out by the
/// coordinator; `done` once the input is closed and drained.
#[derive(Debug, Default)]
struct Feed {
    fed: u64,
    taken: u64,
    done: bool,
    /// Set when a pushed iterator panicked: the push index it was producing.
    source_panicked: Option<u64>,
}

/// Streams batches of crops; see the crate docs for the flow.
pub struct Pipeline {
    shared: Arc<Shared>,
    feeder: Option<JoinHandle<()>>,
    coordinator: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("config", &self.shared.cfg).finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Creates a pipeline reading sample uris that are absolute paths (or `file://`
    /// uris) from the local file system and `s3://`, `gs://`, `az://` and `http(s)://`
    /// uris from object stores (configured by [`Config::object_store`] and the
    /// environment). All batch buffers are allocated here.
    ///
    /// # Errors
    /// Any [`Config::validate`] error; `BackendUnavailable` for `Backend::Cuda` in a build
    /// or on a machine without CUDA; `Spawn` when threads cannot start.
    pub fn new(cfg: Config) -> Result<Self> {
        cfg.validate()?;
        let store = store::UriStore::new(
            store::FsStoreConfig { io_threads: cfg.io_threads, ..Default::default() },
            cfg.object_store.to_remote()?,
        )?;
        Self::with_store(cfg, Arc::new(store))
    }

    /// Creates a pipeline over any byte store (for example a `LatencyStore` in tests and
    /// benchmarks); sample uris are keys of that store.
    ///
    /// # Errors
    /// As [`Pipeline::new`].
    pub fn with_store(cfg: Config, store: Arc<dyn store::Store>) -> Result<Self> {
        Self::with_stores(cfg, Arc::clone(&store), store)
    }

    /// Creates a pipeline that reads metadata (`zarr.json` or `.zarray`, shard indexes) from
    /// `meta_store` and chunk data from `data_store` (for example to add latency to
    /// metadata only, as the `latency` benchmark scenario does).
    ///
    /// # Errors
    /// As [`Pipeline::new`].
    pub fn with_stores(
        cfg: Config,
        meta_store: Arc<dyn store::Store>,
        store: Arc<dyn store::Store>,
    ) -> Result<Self> {
        cfg.validate()?;
        let prefetcher = Prefetcher::new(Arc::clone(&meta_store), prefetch_config(&cfg)?)
            .map_err(prefetcher_error)?;
        let (tx, rx) = crossbeam_channel::unbounded::<Box<dyn Job>>();
        let output = Arc::new(Output::default());
        let stats = Arc::new(StatCounters::default());
        let (fatal, faults) = (Arc::new(Fatal::default()), Arc::new(Faults::default()));
        let chunk_cache = crate::decoded_cache::from_config(&cfg);
        let ctx = EngineCtx {
            output: Arc::clone(&output),
            stats: Arc::clone(&stats),
            jobs: tx,
            fatal: Arc::clone(&fatal),
            faults: Arc::clone(&faults),
            read_ahead: Arc::new(ReadAhead::new(
                Arc::clone(&store),
                cfg.object_store.read_ahead_bytes,
            )),
            chunk_cache: chunk_cache.clone(),
        };
        let (engine, running) = crate::backend::open(&cfg, ctx)?;
        let limits = engine.limits(&cfg);
        let preparers = cfg.effective_prepare_threads();
        let workers = spawn_workers(cfg.effective_decode_threads(), &store, &stats, &rx)?;
        let shared = Arc::new(Shared {
            cfg,
            store,
            input: Mutex::new(Input::default()),
            input_cv: Condvar::new(),
            output,
            shutdown: AtomicBool::new(false),
            stats,
            prefetcher,
            feed: Mutex::new(Feed::default()),
            feed_cv: Condvar::new(),
            cache_base: Mutex::new((0, 0)),
            chunk_cache,
            chunk_cache_base: Mutex::new(chunk_cache::CacheStats::default()),
            engine,
            limits,
            running,
            fatal,
            faults,
            preparers,
            gather: Mutex::new(NextPlan::default()),
            turn: Turnstile::new(),
            out_of_order: (Mutex::new(HashSet::new()), Condvar::new()),
        });
        let mut p = Self { shared, feeder: None, coordinator: None, workers };
        let sh = Arc::clone(&p.shared);
        p.feeder = Some(spawn(FEEDER, move || {
            if contain(FEEDER, &sh.fatal, || feeder(&sh)).is_err() {
                // The coordinator waits for samples only this thread feeds: it takes those
                // fed so far, and `pop` reports the panic after their batches.
                lock(&sh.feed).done = true;
                sh.feed_cv.notify_all();
            }
        })?);
        let sh = Arc::clone(&p.shared);
        p.coordinator = Some(spawn(COORDINATOR, move || {
            // After a panic the engine still gets the end of its input, so it closes the
            // output once the batches before the panic are out; `pop` then reports it.
            let _ = contain(COORDINATOR, &sh.fatal, || coordinator(&sh));
            sh.engine.end_of_input();
        })?);
        Ok(p)
    }

    /// Which engine runs this pipeline, and why (for `Backend::Auto`, whether it fell
    /// back to the host engine and for what reason).
    pub fn backend(&self) -> Running {
        self.shared.running
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.cfg
    }

    /// Arms `fault` for the next `times` times its point in the pipeline's threads is
    /// reached. For the tests of the failure paths; not part of the API.
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: Fault, times: u32) {
        self.shared.faults.arm(fault, times);
    }

    /// Arms `fault` to let its point pass `skip` times, then fire the next `times` times.
    /// For the tests of the failure paths; not part of the API.
    #[doc(hidden)]
    pub fn inject_fault_after(&self, fault: Fault, skip: u32, times: u32) {
        self.shared.faults.arm_after(fault, skip, times);
    }

    /// Queues samples. The iterator is consumed lazily, as the pipeline needs samples, so
    /// an endless generator is fine and nothing is buffered beyond the lookahead; `push`
    /// itself returns at once. Samples get their push index in the order they are taken.
    ///
    /// # Errors
    /// `Closed` after [`Pipeline::finish`] or teardown.
    pub fn push<I>(&mut self, samples: I) -> Result<()>
    where
        I: IntoIterator<Item = Sample>,
        I::IntoIter: Send + 'static,
    {
        let mut inp = lock(&self.shared.input);
        if inp.closed {
            return Err(Error::Closed);
        }
        inp.queue.push_back(Pushed::Many(Box::new(samples.into_iter())));
        self.shared.input_cv.notify_all();
        Ok(())
    }

    /// Queues as many samples as the lookahead has room for, without blocking, and returns
    /// the rest (unconsumed, in order).
    ///
    /// # Errors
    /// `Closed` after [`Pipeline::finish`] or teardown.
    pub fn try_push<I>(
        &mut self,
        samples: I,
    ) -> Result<std::iter::Chain<std::option::IntoIter<Sample>, I::IntoIter>>
    where
        I: IntoIterator<Item = Sample>,
    {
        let mut it = samples.into_iter();
        let mut inp = lock(&self.shared.input);
        if inp.closed {
            return Err(Error::Closed);
        }
        let room = self.shared.cfg.effective_lookahead().saturating_sub(inp.queued_samples);
        let mut taken = 0;
        let mut held = None;
        for s in it.by_ref() {
            if taken == room {
                held = Some(s);
                break;
            }
            inp.queue.push_back(Pushed::One(s));
            inp.queued_samples += 1;
            taken += 1;
        }
        if taken > 0 {
            self.shared.input_cv.notify_all();
        }
        Ok(held.into_iter().chain(it))
    }

    /// Declares that no more samples come: the last, possibly partial, batch is built and
    /// then `pop` returns `Ok(None)`.
    pub fn finish(&mut self) {
        lock(&self.shared.input).closed = true;
        self.shared.input_cv.notify_all();
    }

    /// The next batch in push order, blocking until it is ready; `Ok(None)` once
    /// [`Pipeline::finish`] was called and every batch was returned.
    ///
    /// # Errors
    /// `Sample` naming the first failing sample's uri and push index when a sample of this
    /// batch failed (with `OnError::Fail`); the next `pop` continues with the next batch.
    /// `SampleShape` for a sample whose box has the wrong extent. `Closed` on teardown.
    /// `EnginePanicked` once a thread of the pipeline panicked, at this and every later
    /// `pop`; `DeviceBroken` for every batch after the GPU became unusable.
    pub fn pop(&mut self) -> Result<Option<Batch>> {
        self.pop_deadline(None)
    }

    /// As [`Pipeline::pop`], giving up after `timeout`.
    ///
    /// # Errors
    /// As `pop`, plus `Timeout` when no batch was ready in time (nothing is lost: a later
    /// `pop` returns it).
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<Option<Batch>> {
        self.pop_deadline(Some(Instant::now() + timeout))
    }

    fn pop_deadline(&mut self, deadline: Option<Instant>) -> Result<Option<Batch>> {
        let t0 = Instant::now();
        let sh = &*self.shared;
        let next = sh.stats.trace.span("pop", None, || sh.output.next(deadline));
        let pending = match next {
            Next::Batch(p) => p,
            Next::TimedOut => return Err(Error::Timeout { waited: t0.elapsed() }),
            Next::Done => {
                if sh.shutdown.load(Ordering::Acquire) {
                    return Err(Error::Closed);
                }
                // Reported once, after every batch before it.
                if let Some(index) = lock(&sh.feed).source_panicked.take() {
                    return Err(Error::SourcePanicked { index });
                }
                // A dead thread ended the stream early: never `Ok(None)`, at any later pop.
                if let Some(e) = sh.fatal.error() {
                    return Err(e);
                }
                return Ok(None);
            }
        };
        let result = match pending {
            Pending::Failed(error) => Err(error),
            Pending::Ready(d) => d.deliver(&DeliverCtx { cfg: &sh.cfg, stats: &sh.stats }),
        };
        sh.stats.pop_wait_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result.map(Some)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.shared.stats.snapshot(&self.shared.store.stats());
        self.shared.engine.add_stats(&mut s);
        s.prepare_threads = self.shared.preparers as u64;
        s.batches_per_plan = plan_most(&self.shared) as u64;
        let (h, m) = self.cache_totals();
        let base = *lock(&self.shared.cache_base);
        s.cache_hits = h.saturating_sub(base.0);
        s.cache_misses = m.saturating_sub(base.1);
        if let Some(c) = &self.shared.chunk_cache {
            let (now, base) = (c.stats(), *lock(&self.shared.chunk_cache_base));
            s.chunk_cache = crate::stats::ChunkCacheStats {
                capacity_bytes: c.capacity(),
                hits: now.hits.saturating_sub(base.hits),
                misses: now.misses.saturating_sub(base.misses),
                inserts: now.inserts.saturating_sub(base.inserts),
                evictions: now.evictions.saturating_sub(base.evictions),
                rejected: now.rejected.saturating_sub(base.rejected),
                joined: now.joined.saturating_sub(base.joined),
                abandoned: now.abandoned.saturating_sub(base.abandoned),
                bytes: now.bytes,
                entries: now.entries,
            };
        }
        s
    }

    /// Starts recording a timeline of the pipeline's threads, from an empty one (see
    /// [`crate::trace`]). Steps recorded, each with its batch: on the feeder `feed`
    /// (handing a group of the batch's samples to the prefetcher, waits for ring space
    /// included); on the preparers `prepare`, `turn` (waiting for the batch's turn) and
    /// `dispatch` (handing it to the engine); on the CUDA engine's submit thread `acquire` (a batch buffer), `slot` (a
    /// wave slot), `reads` (waiting for a wave's reads), `wave` and `end` (enqueueing a
    /// wave's and a batch end's device work); on its harvest thread `wave done` and
    /// `ready` (waiting for the device) and `settle` (the batch's cache claims); on the caller's thread `pop`
    /// (waiting for a batch) and `release` (giving a batch buffer back).
    pub fn start_trace(&self) {
        self.shared.stats.trace.start();
    }

    /// Stops recording and returns the timeline recorded since
    /// [`Pipeline::start_trace`] (empty if it was not started).
    pub fn take_trace(&self) -> crate::trace::Trace {
        self.shared.stats.trace.take()
    }

    fn cache_totals(&self) -> (u64, u64) {
        let p = self.shared.prefetcher.stats();
        let caches = [p.metadata, p.shard_index, p.layout];
        (caches.iter().map(|c| c.hits).sum(), caches.iter().map(|c| c.misses).sum())
    }

    /// Zeroes the counters (for example after warm-up).
    pub fn reset_stats(&self) {
        *lock(&self.shared.cache_base) = self.cache_totals();
        if let Some(c) = &self.shared.chunk_cache {
            *lock(&self.shared.chunk_cache_base) = c.stats();
        }
        self.shared.stats.reset();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let sh = &self.shared;
        sh.shutdown.store(true, Ordering::Release);
        lock(&sh.input).closed = true;
        sh.input_cv.notify_all();
        {
            // Taken under the lock so a thread between its check and its wait cannot
            // miss the wake-up.
            let _f = lock(&sh.feed);
            sh.feed_cv.notify_all();
        }
        sh.turn.close();
        sh.engine.shutdown();
        // The coordinator may be waiting inside the prefetcher for a sample to resolve.
        sh.prefetcher.shutdown();
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
        // The coordinator ends the engine's input as it exits; the engine's threads end
        // once their work drained (the workers still run it), and the workers once every
        // job sender is gone.
        if let Some(c) = self.coordinator.take() {
            let _ = c.join();
        }
        // Again, for a pipeline whose coordinator never started (ending twice is fine).
        sh.engine.end_of_input();
        sh.engine.join();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        // Queued batches release their buffers as they drop.
        sh.output.clear();
    }
}

/// What [`next_sample`] found.
enum Pulled {
    Sample(Sample),
    /// Nothing queued now (only when not waiting).
    Empty,
    /// A pushed iterator panicked.
    Panicked,
    /// The input is closed and drained, or the pipeline is being torn down.
    Closed,
}

/// Takes the next sample in push order; with `wait`, blocks until one is pushed (without,
/// an empty queue is [`Pulled::Empty`]). A lazy source is advanced with the input lock
/// released, so a slow or blocking iterator never holds up `push`, `try_push`, `finish` or
/// teardown's locks.
fn next_sample(sh: &Shared, wait: bool) -> Pulled {
    let mut inp = lock(&sh.input);
    loop {
        if sh.shutdown.load(Ordering::Acquire) {
            return Pulled::Closed;
        }
        match inp.queue.pop_front() {
            Some(Pushed::One(s)) => {
                inp.queued_samples -= 1;
                return Pulled::Sample(s);
            }
            Some(Pushed::Many(mut it)) => {
                drop(inp);
                // The caller's iterator is foreign code: a panic in it must not kill the
                // feeder silently (pop would wait forever).
                let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| it.next()));
                inp = lock(&sh.input);
                match next {
                    // Back to the front: only this thread takes from the queue, so push
                    // order is kept.
                    Ok(Some(s)) => {
                        inp.queue.push_front(Pushed::Many(it));
                        return Pulled::Sample(s);
                    }
                    Ok(None) => {}
                    Err(_) => return Pulled::Panicked,
                }
            }
            None if inp.closed => return Pulled::Closed,
            None if !wait => return Pulled::Empty,
            None => inp = sh.input_cv.wait(inp).unwrap_or_else(|e| e.into_inner()),
        }
    }
}

/// Samples the feeder hands the prefetcher at once (fewer at a batch's end, or when no
/// more are at hand).
const FEED_GROUP: usize = 64;

/// The feeder: moves samples from the input queue into the prefetcher's ring, in push
/// order, as the ring has room. It waits on the feed condvar (not inside the
/// prefetcher) when the ring is full, so teardown can always wake it.
///
/// Samples go over in groups ([`FEED_GROUP`]) with one wake-up of the prefetcher's driver
/// each: a wake-up per sample bound both engines at ~7 µs a sample on the H200
/// (`many-arrays-8`, 512-sample batches). A group never spans two batches, so no batch
/// waits for a later one's samples; it waits for the source only for its first sample
/// (after that, only for an iterator's `next`, or not at all for samples already queued).
fn feeder(sh: &Shared) {
    let lookahead = sh.cfg.effective_lookahead() as u64;
    let per_batch = sh.cfg.samples_per_batch.max(1) as u64;
    let mut group: Vec<SampleRequest> = Vec::with_capacity(FEED_GROUP);
    // Samples taken from the input so far (pushed, or in `group`).
    let mut pulled = 0u64;
    // How the input ended, once it has: `Some(true)` for a panicking iterator.
    let mut ended: Option<bool> = None;
    loop {
        if sh.shutdown.load(Ordering::Acquire) {
            return;
        }
        while ended.is_none() && group.len() < FEED_GROUP {
            match next_sample(sh, group.is_empty()) {
                Pulled::Sample(s) => {
                    group.push(SampleRequest {
                        // `Sample::new` guarantees a UTF-8 path.
                        uri: s.uri.to_string_lossy().as_ref().into(),
                        lo: s.aabb.lo.into_vec(),
                        hi: s.aabb.hi.into_vec(),
                        level: s.level,
                    });
                    pulled += 1;
                    if pulled.is_multiple_of(per_batch) {
                        break;
                    }
                }
                Pulled::Empty => break,
                Pulled::Panicked => ended = Some(true),
                Pulled::Closed => ended = Some(false),
            }
        }
        // The timeline's "feed" span: handing a group of batch `batch` to the prefetcher,
        // waits for ring space included (a batch's samples are `batch * per_batch ..`).
        let batch = pulled.saturating_sub(1) / per_batch;
        let began = (!group.is_empty()).then(|| sh.stats.trace.begin()).flatten();
        while !group.is_empty() {
            if sh.shutdown.load(Ordering::Acquire) {
                return;
            }
            sh.faults.panic_point(Fault::FeederPanic);
            let pushed = sh.prefetcher.try_push_many(&mut group) as u64;
            if pushed > 0 {
                lock(&sh.feed).fed += pushed;
                sh.feed_cv.notify_all();
                continue;
            }
            // The ring is full. `fed - taken` never undercounts the ring (the coordinator
            // counts a take after the ring shrank), so waiting for it to drop below the
            // lookahead, under the feed lock, cannot miss the take that makes room.
            let mut f = lock(&sh.feed);
            while f.fed - f.taken >= lookahead && !sh.shutdown.load(Ordering::Acquire) {
                f = sh.feed_cv.wait(f).unwrap_or_else(|e| e.into_inner());
            }
        }
        sh.stats.trace.end("feed", Some(batch), began);
        if let Some(panicked) = ended {
            // Every sample before the end is in the ring.
            let mut f = lock(&sh.feed);
            if panicked {
                f.source_panicked = Some(f.fed);
            }
            f.done = true;
            sh.feed_cv.notify_all();
            return;
        }
    }
}

/// Takes the next `n` resolved samples in push order, blocking until they are ready or
/// the input is exhausted (a partial batch). `None` when nothing more will come, or when
/// preparation stopped. Called under the `gather` lock, so one preparer takes at a time.
fn gather(sh: &Shared, n: usize) -> Option<Vec<ReadySample>> {
    let mut got = Vec::with_capacity(n);
    let stop = || sh.shutdown.load(Ordering::Acquire) || sh.turn.stopped();
    loop {
        {
            let mut f = lock(&sh.feed);
            while f.fed == f.taken && !f.done && !stop() {
                f = sh.feed_cv.wait(f).unwrap_or_else(|e| e.into_inner());
            }
            if stop() {
                return None;
            }
            if f.fed == f.taken {
                // Input closed and every fed sample taken.
                return (!got.is_empty()).then_some(got);
            }
        }
        // The ring is not empty (only the preparer holding `gather` takes), so this blocks
        // until its front sample is resolved, then takes the ready prefix.
        let ready = sh.prefetcher.wait_ready(n - got.len());
        lock(&sh.feed).taken += ready.len() as u64;
        sh.feed_cv.notify_all();
        got.extend(ready);
        if got.len() == n {
            return Some(got);
        }
    }
}

/// Prepares batches and hands them to the engine in push order, on `prepare_threads`
/// threads (this one and scoped fellows); returns once every preparer stopped (the
/// caller then ends the engine's input).
fn coordinator(sh: &Shared) {
    let cache = sh.chunk_cache.as_ref().map(|c| {
        // The CUDA engine keeps its cache in device memory, with rules of its own for hits.
        let device =
            matches!(sh.engine.running(), crate::Running::Cuda { .. } | crate::Running::Simulated);
        (c, CacheUse { device, ready_only: device || sh.preparers > 1 })
    });
    std::thread::scope(|s| {
        for i in 1..sh.preparers {
            let name = format!("{PREPARER}-{i}");
            // Fewer preparers are slower, never wrong: a thread that cannot start is
            // left out.
            if std::thread::Builder::new()
                .name(name)
                .spawn_scoped(s, || preparer(sh, cache))
                .is_err()
            {
                break;
            }
        }
        preparer(sh, cache);
    });
}

/// One preparer's loop, its panic contained: the batches before the one it held still go
/// to the engine, none after (and `pop` reports the panic once they are out).
fn preparer(sh: &Shared, cache: Option<(&DecodedCache, CacheUse)>) {
    let held = Cell::new(None);
    if contain(COORDINATOR, &sh.fatal, || prepare_batches(sh, cache, &held)).is_err() {
        let from = held.get().unwrap_or_else(|| lock(&sh.gather).plan);
        stop_preparing(sh, from);
    }
}

/// The most batches a plan takes: what the engine's buffer holds of the narrowest
/// element ([`Config::plan_batches_of`]).
fn plan_most(sh: &Shared) -> usize {
    sh.cfg.plan_batches_of(sh.engine.batches_per_plan(), None)
}

/// Whether a plan may take one more batch of `n` samples without waiting on the caller:
/// that many are in the prefetcher's ring already, or the input is finished (what is
/// left comes without the caller).
fn more_at_hand(sh: &Shared, n: usize) -> bool {
    let in_ring = {
        let f = lock(&sh.feed);
        f.fed - f.taken
    };
    in_ring >= n as u64 || lock(&sh.input).closed
}

/// Takes plans (the samples of one batch or more, their first id and the plan's number,
/// in push order), prepares each, and dispatches it in its turn, until the input ends or
/// preparation stops. A plan covers up to the engine's `batches_per_plan` batches: the
/// first plan one (the first batch comes out soonest), later ones as many whole batches
/// as are at hand ([`more_at_hand`]). `held` is the number of the plan in hand.
fn prepare_batches(
    sh: &Shared,
    cache: Option<(&DecodedCache, CacheUse)>,
    held: &Cell<Option<u64>>,
) {
    let n = sh.cfg.samples_per_batch.max(1);
    let stopped = || sh.shutdown.load(Ordering::Acquire) || sh.turn.stopped();
    loop {
        let (next, samples) = {
            let mut next = lock(&sh.gather);
            let Some(mut samples) = gather(sh, n) else { return };
            // Element types are not known yet: as many as the buffer holds of any
            // (`prepare` splits them where their element holds fewer).
            let most = if next.plan == 0 { 1 } else { plan_most(sh) };
            while samples.len() < most * n && samples.len() % n == 0 && more_at_hand(sh, n) {
                match gather(sh, n) {
                    Some(more) => samples.extend(more),
                    None => break,
                }
            }
            if stopped() {
                return;
            }
            let this = *next;
            next.batch += samples.len().div_ceil(n) as u64;
            next.plan += 1;
            (this, samples)
        };
        let (id, plan) = (next.batch, next.plan);
        held.set(Some(plan));
        let prepared = sh.stats.trace.span("prepare", Some(id), || {
            let engine = sh.engine.batches_per_plan();
            crate::prepare::prepare(&sh.cfg, &sh.limits, &sh.stats, cache, id, samples, n, engine)
        });
        sh.faults.panic_point(Fault::CoordinatorPanic);
        if sh.faults.fire(Fault::PrepareOutOfOrder) {
            finish_out_of_order(sh, plan);
        }
        let turn = sh.stats.trace.span("turn", Some(id), || sh.turn.wait(plan));
        if !turn {
            // Preparation stopped before this plan (or teardown): it is dropped, its
            // cache pins and claims with it.
            return;
        }
        let dispatched = sh.stats.trace.span("dispatch", Some(id), || {
            prepared.into_iter().all(|o| sh.engine.dispatch(o).is_ok())
        });
        held.set(None);
        sh.turn.pass(plan);
        if !dispatched {
            // The engine takes nothing more.
            stop_preparing(sh, plan + 1);
            return;
        }
    }
}

/// Stops preparation from plan `from` on: no batch of it or later is dispatched, no preparer
/// takes samples any more, and every waiting preparer wakes to see it.
fn stop_preparing(sh: &Shared, from: u64) {
    sh.turn.stop(from);
    // Under the lock, so a preparer between its check and its wait cannot miss it.
    let _f = lock(&sh.feed);
    sh.feed_cv.notify_all();
}

/// The `PrepareOutOfOrder` fault: the preparer of an even plan waits until the next
/// plan is prepared too, so that the later plan is ready first. With one preparer the
/// next plan never comes: the wait gives up after a minute with a panic (reported as
/// `EnginePanicked`), which is how a test learns that plans were not prepared at once.
fn finish_out_of_order(sh: &Shared, id: u64) {
    let (done, cv) = &sh.out_of_order;
    let mut done = lock(done);
    done.insert(id);
    cv.notify_all();
    if id % 2 == 1 {
        return;
    }
    let (done, timeout) = cv
        .wait_timeout_while(done, OUT_OF_ORDER_LIMIT, |d| !d.contains(&(id + 1)))
        .unwrap_or_else(|e| e.into_inner());
    drop(done);
    assert!(!timeout.timed_out(), "plan {} was not prepared while plan {id} waited", id + 1);
}

/// How long [`finish_out_of_order`] waits for the next batch.
const OUT_OF_ORDER_LIMIT: Duration = Duration::from_secs(60);

/// A failure to set up the prefetcher: a machine failure (threads) or a configuration
/// the prefetcher refuses; never a sample's error (there is no sample yet).
fn prefetcher_error(e: prefetch_cache::Error) -> Error {
    match e {
        prefetch_cache::Error::SpawnThread { kind } => {
            Error::Spawn { name: "damacy-prefetch", kind }
        }
        other => Error::Prefetch(Box::new(other)),
    }
}

/// The prefetcher's configuration for `cfg`.
fn prefetch_config(cfg: &Config) -> Result<PrefetchConfig> {
    let mut pcfg = PrefetchConfig::for_batch(cfg.samples_per_batch);
    pcfg.lookahead = cfg.effective_lookahead();
    pcfg.max_shards_per_sample = cfg.max_shards_per_sample;
    pcfg.fetch_threads = cfg.metadata_threads;
    pcfg.size_caches();
    pcfg.metadata_capacity = pcfg.metadata_capacity.max(cfg.metadata_cache_capacity);
    pcfg.shard_index_capacity =
        pcfg.shard_index_capacity.max(cfg.effective_shard_index_cache_capacity()?);
    Ok(pcfg)
}

/// The feeder thread's name.
const FEEDER: &str = "damacy-feeder";
/// The coordinator thread's name (also the thread a preparer's panic is reported as).
const COORDINATOR: &str = "damacy-coordinator";
/// The names of the coordinator's fellow preparers, numbered from 1.
const PREPARER: &str = "damacy-prepare";

fn spawn(name: &'static str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::Spawn { name, kind: e.kind() })
}

/// Starts `n` decode workers on the job queue.
fn spawn_workers(
    n: usize,
    store: &Arc<dyn store::Store>,
    stats: &Arc<StatCounters>,
    rx: &crossbeam_channel::Receiver<Box<dyn Job>>,
) -> Result<Vec<JoinHandle<()>>> {
    (0..n)
        .map(|_| {
            let (store, stats, rx) = (Arc::clone(store), Arc::clone(stats), rx.clone());
            spawn("damacy-decode", move || {
                let mut scratch = Scratch::default();
                while let Ok(job) = rx.recv() {
                    job.run(&mut Worker { store: &*store, stats: &stats, scratch: &mut scratch });
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetcher_setup_failures_are_not_sample_errors() {
        let spawn = prefetch_cache::Error::SpawnThread { kind: std::io::ErrorKind::WouldBlock };
        assert!(matches!(
            prefetcher_error(spawn),
            Error::Spawn { name: "damacy-prefetch", kind: std::io::ErrorKind::WouldBlock }
        ));
        let cfg = prefetch_cache::Error::Config {
            field: "metadata_capacity",
            value: 1,
            needed: 8,
            reason: "too small",
        };
        let Error::Prefetch(e) = prefetcher_error(cfg) else { panic!("not a Prefetch error") };
        assert!(matches!(*e, prefetch_cache::Error::Config { field: "metadata_capacity", .. }));
    }
}
