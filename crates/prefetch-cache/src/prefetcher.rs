//! The prefetcher: a bounded lookahead ring of samples, each walked meta → shards → layout
//! → ready/error by one driver thread, with fetches on a small pool of fetch threads.
//!
//! Nothing polls. The driver sleeps on a doorbell rung when a gate settles, a sample is
//! pushed, samples are taken (slots unpin) or the prefetcher shuts down; fetch threads
//! sleep on their job queue. The driver never does I/O; fetch threads hold no lock while
//! they read.

use std::collections::VecDeque;
use std::fmt;
use std::hash::Hash;

use store::Store;
use zarr::Aabb;
use zarr::blosc::{BloscLayout, Compressor};
use zarr::geometry::Intersection;

use crate::error::Error;
use crate::fetch::{self, ArrayInfo, ShardState, join_key};
use crate::gate::{Gate, GatePool};
use crate::image;
use crate::slot_cache::{Handle, SlotCache, State};
use crate::sync::{Arc, Condvar, Mutex, StdArc, lock, thread, wait};

/// Sizes and limits of a [`Prefetcher`].
///
/// ```
/// use prefetch_cache::PrefetchConfig;
/// // Cache capacities derived from the ring and batch sizes always pass validation.
/// let c = PrefetchConfig::for_batch(512);
/// assert!(c.validate().is_ok());
/// assert_eq!(c.shard_index_capacity, (c.lookahead + 2 * 512) * c.max_shards_per_sample);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefetchConfig {
    /// Samples in flight (pushed, not yet taken).
    pub lookahead: usize,
    /// Samples the consumer takes per batch (sizes the capacity floors).
    pub samples_per_batch: usize,
    /// Most shards one sample may touch.
    pub max_shards_per_sample: usize,
    /// Fetch threads: the bound on concurrent fetches.
    pub fetch_threads: usize,
    /// Slots of the array metadata cache (one per `(uri, level)`).
    pub metadata_capacity: usize,
    /// Slots of the shard index cache.
    pub shard_index_capacity: usize,
    /// Slots of the blosc layout cache.
    pub layout_capacity: usize,
    /// blosc compressors the engine can decode; a layout with another one is an error.
    pub decodable_blosc: Vec<Compressor>,
}

/// The smallest cache capacities that cannot saturate in steady state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityFloors {
    pub metadata: usize,
    pub shard_index: usize,
    pub layout: usize,
}

impl PrefetchConfig {
    /// Lookahead 256, 8 shards per sample, 4 fetch threads, capacities at their floors for
    /// `samples_per_batch`.
    pub fn for_batch(samples_per_batch: usize) -> Self {
        let mut c = Self {
            lookahead: 256,
            samples_per_batch,
            max_shards_per_sample: 8,
            fetch_threads: 4,
            metadata_capacity: 0,
            shard_index_capacity: 0,
            layout_capacity: 0,
            decodable_blosc: vec![
                Compressor::BloscLz,
                Compressor::Lz4,
                Compressor::Zlib,
                Compressor::Zstd,
            ],
        };
        c.size_caches();
        c
    }

    /// Sets every cache capacity to its floor (saturating at `usize::MAX`).
    pub fn size_caches(&mut self) {
        let f = self.floors();
        self.metadata_capacity = f.metadata;
        self.shard_index_capacity = f.shard_index;
        self.layout_capacity = f.layout;
    }

    /// Every sample in the ring and in the two batches the consumer may hold can pin a
    /// different array and `max_shards_per_sample` shards; caches this large never answer
    /// `Again` in steady state.
    pub fn floors(&self) -> CapacityFloors {
        let samples = self.samples_per_batch.saturating_mul(2).saturating_add(self.lookahead);
        CapacityFloors {
            metadata: samples,
            shard_index: samples.saturating_mul(self.max_shards_per_sample),
            layout: samples,
        }
    }

    /// Checks the sizes against each other.
    ///
    /// # Errors
    /// `Config` naming the field, its value and the floor it must reach.
    pub fn validate(&self) -> Result<(), Error> {
        let at_least = |field, value: usize, needed: usize, reason| {
            if value < needed {
                Err(Error::Config { field, value, needed, reason })
            } else {
                Ok(())
            }
        };
        at_least("lookahead", self.lookahead, 1, "the ring must hold a sample")?;
        at_least("samples_per_batch", self.samples_per_batch, 1, "a batch holds samples")?;
        at_least(
            "max_shards_per_sample",
            self.max_shards_per_sample,
            1,
            "a sample touches a shard",
        )?;
        at_least("fetch_threads", self.fetch_threads, 1, "someone must fetch")?;
        at_least("lookahead", u32::MAX as usize - 1, self.lookahead, "gate pool limit")?;
        let f = self.floors();
        let why = "(lookahead + 2*samples_per_batch) [* max_shards_per_sample] so the cache never saturates";
        at_least("metadata_capacity", self.metadata_capacity, f.metadata, why)?;
        at_least("shard_index_capacity", self.shard_index_capacity, f.shard_index, why)?;
        at_least("layout_capacity", self.layout_capacity, f.layout, why)
    }
}

impl Default for PrefetchConfig {
    /// [`PrefetchConfig::for_batch`] of 128 samples (the `default` scenario's batch).
    fn default() -> Self {
        Self::for_batch(128)
    }
}

/// A sample to resolve: a box `lo..hi` of the array at `uri`, or, when `uri` is an
/// OME-NGFF image group, of its level `level` (default 0). A box with a zero extent
/// touches no shard and resolves to a sample with no shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRequest {
    pub uri: StdArc<str>,
    pub lo: Vec<u64>,
    pub hi: Vec<u64>,
    /// The image level; `None` for an array (or an image's level 0).
    pub level: Option<usize>,
}

/// One touched shard of a resolved sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedShard {
    /// The object's store key.
    pub key: String,
    pub state: StdArc<ShardState>,
}

/// A sample whose metadata is all in hand, shaped for the planner.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSample {
    pub array: ArrayInfo,
    /// The box; `None` when it has a zero extent (and so no shards).
    pub aabb: Option<Aabb>,
    /// One per touched shard, in `ArrayGeometry::intersect` order.
    pub shards: Vec<ResolvedShard>,
    /// The array's blosc layout; `None` for non-blosc arrays or when no touched chunk
    /// is stored.
    pub layout: Option<StdArc<BloscLayout>>,
}

/// A terminal sample handed out by [`Prefetcher::take_ready`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReadySample {
    /// Push sequence number (0, 1, 2, ... in push order).
    pub seq: u64,
    pub request: SampleRequest,
    pub outcome: Result<ResolvedSample, Error>,
}

/// Counters of the three caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefetchStats {
    pub metadata: crate::CacheStats,
    pub shard_index: crate::CacheStats,
    pub layout: crate::CacheStats,
    /// Fetches run by the fetch threads.
    pub fetches: u64,
}

enum Job {
    Meta { handle: Handle, uri: StdArc<str>, level: Option<usize> },
    Shard { handle: Handle, info: ArrayInfo, key: String },
    Layout { handle: Handle, uri: StdArc<str>, key: String, offset: u64, nbytes: u64 },
}

struct Jobs {
    queue: VecDeque<Job>,
    closed: bool,
    fetches: u64,
    /// Fetch threads started so far (at most `fetch_threads`), and those waiting for a
    /// job: the driver starts another thread while jobs outnumber the idle ones.
    started: usize,
    idle: usize,
}

/// A counter rung on every event the driver reacts to. Its lock is a leaf.
struct Doorbell {
    epoch: Mutex<(u64, bool)>,
    cv: Condvar,
}

impl Doorbell {
    fn ring(&self) {
        lock(&self.epoch).0 += 1;
        self.cv.notify_all();
    }

    /// Waits until the epoch differs from `seen`; returns false once shut down.
    fn wait_past(&self, seen: u64) -> bool {
        let mut g = lock(&self.epoch);
        while g.0 == seen && !g.1 {
            g = wait(&self.cv, g);
        }
        !g.1
    }

    fn current(&self) -> u64 {
        lock(&self.epoch).0
    }

    fn shut(&self) {
        lock(&self.epoch).1 = true;
        self.cv.notify_all();
    }
}

enum Stage {
    Meta { handle: Option<Handle> },
    Shards(ShardFetch),
    Layout { resolved: Box<ResolvedSample>, handle: Option<Handle> },
    Done(Result<ResolvedSample, Error>),
}

/// The shards stage: the touched shards' keys and, once requested, their cache handles.
struct ShardFetch {
    info: ArrayInfo,
    aabb: Aabb,
    /// The touched shards' keys, in `ArrayGeometry::intersect` order.
    keys: Vec<String>,
    /// A prefix of `keys`: the ones requested so far.
    handles: Vec<Handle>,
}

struct Sample {
    seq: u64,
    request: SampleRequest,
    gate: Option<Gate>,
    stage: Stage,
}

struct Ring {
    samples: VecDeque<Sample>,
    /// Sequence numbers of the samples not yet terminal, in push order: what the driver
    /// steps, where it used to pass over the whole lookahead (2,048 samples on
    /// `many-arrays-8`) on every wake-up, resolved samples included.
    live: Vec<u64>,
    next_seq: u64,
    shutdown: bool,
}

impl Ring {
    /// Appends a sample (live, at its first stage) and returns its sequence number.
    fn add(&mut self, request: SampleRequest, gate: Gate) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.samples.push_back(Sample {
            seq,
            request,
            gate: Some(gate),
            stage: Stage::Meta { handle: None },
        });
        self.live.push(seq);
        seq
    }
}

struct Shared {
    ring: Mutex<Ring>,
    /// Consumers waiting for a ready sample or for ring space.
    changed: Condvar,
    doorbell: Arc<Doorbell>,
    jobs: Mutex<Jobs>,
    jobs_cv: Condvar,
    /// Keyed by `(uri, level)`: an image group's levels are distinct arrays.
    meta: SlotCache<(StdArc<str>, Option<usize>), ArrayInfo, Error>,
    shards: SlotCache<String, ShardState, Error>,
    layouts: SlotCache<StdArc<str>, BloscLayout, Error>,
    gates: GatePool,
    store: StdArc<dyn Store>,
    config: PrefetchConfig,
    /// Fetch threads started after construction, joined by the prefetcher's drop.
    grown: Mutex<Vec<thread::JoinHandle<()>>>,
}

/// Fetch threads started with the prefetcher; more start as fetches queue up, up to
/// `fetch_threads` (threads cost their start and stop, and most pipelines never need
/// many: a pipeline over local files keeps a handful).
const INITIAL_FETCH_THREADS: usize = 4;

/// Resolves samples' metadata ahead of the consumer. Dropping it stops its threads; fetches
/// in flight finish their read and are discarded.
pub struct Prefetcher {
    shared: Arc<Shared>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl fmt::Debug for Prefetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prefetcher").field("config", &self.shared.config).finish()
    }
}

impl Prefetcher {
    /// Starts the driver and `fetch_threads` fetch threads over `store`.
    ///
    /// # Errors
    /// `Config` when the configuration fails [`PrefetchConfig::validate`].
    pub fn new(store: StdArc<dyn Store>, config: PrefetchConfig) -> Result<Self, Error> {
        config.validate()?;
        let doorbell = Arc::new(Doorbell { epoch: Mutex::new((0, false)), cv: Condvar::new() });
        let bell = Arc::clone(&doorbell);
        let gates =
            GatePool::with_settle_hook(config.lookahead as u32, Box::new(move || bell.ring()));
        let shared = Arc::new(Shared {
            ring: Mutex::new(Ring {
                samples: VecDeque::new(),
                live: Vec::new(),
                next_seq: 0,
                shutdown: false,
            }),
            changed: Condvar::new(),
            doorbell,
            jobs: Mutex::new(Jobs {
                queue: VecDeque::new(),
                closed: false,
                fetches: 0,
                started: 0,
                idle: 0,
            }),
            jobs_cv: Condvar::new(),
            meta: SlotCache::new(config.metadata_capacity),
            shards: SlotCache::new(config.shard_index_capacity),
            layouts: SlotCache::new(config.layout_capacity),
            gates,
            store,
            config,
            grown: Mutex::new(Vec::new()),
        });
        let initial = shared.config.fetch_threads.min(INITIAL_FETCH_THREADS);
        lock(&shared.jobs).started = initial;
        let mut threads = Vec::with_capacity(initial + 1);
        let s = Arc::clone(&shared);
        threads.push(thread::spawn(move || Shared::drive(&s)));
        for _ in 0..initial {
            let s = Arc::clone(&shared);
            threads.push(thread::spawn(move || s.fetch_loop()));
        }
        Ok(Self { shared, threads })
    }

    /// Adds a sample at the end of the ring and returns its sequence number.
    ///
    /// # Errors
    /// Gives the request back when the ring is full (back-pressure, not failure).
    pub fn try_push(&self, request: SampleRequest) -> Result<u64, SampleRequest> {
        let mut ring = lock(&self.shared.ring);
        if ring.samples.len() >= self.shared.config.lookahead || ring.shutdown {
            return Err(request);
        }
        // A gate frees as soon as its sample is done, so one is free for every free ring
        // slot; `None` cannot happen but is answered as back-pressure all the same.
        let Some(gate) = self.shared.gates.acquire() else { return Err(request) };
        let seq = ring.add(request, gate);
        drop(ring);
        self.shared.doorbell.ring();
        Ok(seq)
    }

    /// Adds as many of `requests` as the ring has room for, from the front, under one hold
    /// of the ring's lock and with one ring of the driver's doorbell; removes them from
    /// `requests` and returns how many. A caller with many samples at hand wakes the
    /// driver once for them all, where [`try_push`](Self::try_push) wakes it per sample
    /// (a futex wake and a driver pass each: the per-sample bound of large batches).
    pub fn try_push_many(&self, requests: &mut Vec<SampleRequest>) -> usize {
        let mut ring = lock(&self.shared.ring);
        if ring.shutdown {
            return 0;
        }
        let room = self.shared.config.lookahead.saturating_sub(ring.samples.len());
        // A gate frees as soon as its sample is done, so one is free for every free ring
        // slot; a missing one is answered as back-pressure all the same.
        let gates: Vec<Gate> =
            (0..room.min(requests.len())).map_while(|_| self.shared.gates.acquire()).collect();
        let pushed = gates.len();
        for (request, gate) in requests.drain(..pushed).zip(gates) {
            ring.add(request, gate);
        }
        drop(ring);
        if pushed > 0 {
            self.shared.doorbell.ring();
        }
        pushed
    }

    /// Like [`try_push`](Self::try_push) but waits for ring space.
    ///
    /// # Errors
    /// Gives the request back only if the prefetcher is shutting down.
    pub fn push(&self, mut request: SampleRequest) -> Result<u64, SampleRequest> {
        loop {
            match self.try_push(request) {
                Ok(seq) => return Ok(seq),
                Err(r) => request = r,
            }
            let mut ring = lock(&self.shared.ring);
            if ring.shutdown {
                return Err(request);
            }
            while ring.samples.len() >= self.shared.config.lookahead && !ring.shutdown {
                ring = wait(&self.shared.changed, ring);
            }
        }
    }

    /// Takes up to `max` samples from the front of the ring, stopping at the first one not
    /// yet terminal: samples come out in push order, however their fetches complete.
    pub fn take_ready(&self, max: usize) -> Vec<ReadySample> {
        let mut ring = lock(&self.shared.ring);
        let out = Self::take_locked(&mut ring, max);
        if !out.is_empty() {
            // Taken samples carry their values in `Arc`s, so their pins can go.
            let wm = ring.samples.front().map_or(ring.next_seq, |s| s.seq);
            drop(ring);
            self.shared.meta.advance_watermark(wm);
            self.shared.shards.advance_watermark(wm);
            self.shared.layouts.advance_watermark(wm);
            self.shared.changed.notify_all();
            self.shared.doorbell.ring();
        }
        out
    }

    /// Waits until at least one sample is ready (or the ring is empty), then takes up to
    /// `max` as [`take_ready`](Self::take_ready) does.
    pub fn wait_ready(&self, max: usize) -> Vec<ReadySample> {
        {
            let mut ring = lock(&self.shared.ring);
            while !ring.shutdown
                && ring.samples.front().is_some_and(|s| !matches!(s.stage, Stage::Done(_)))
            {
                ring = wait(&self.shared.changed, ring);
            }
        }
        self.take_ready(max)
    }

    fn take_locked(ring: &mut Ring, max: usize) -> Vec<ReadySample> {
        let mut out = Vec::new();
        while out.len() < max
            && ring.samples.front().is_some_and(|s| matches!(s.stage, Stage::Done(_)))
        {
            let Some(s) = ring.samples.pop_front() else { break };
            if let Stage::Done(outcome) = s.stage {
                out.push(ReadySample { seq: s.seq, request: s.request, outcome });
            }
        }
        out
    }

    /// Blocks until at least `n` samples in the ring (or all of them, if fewer) are
    /// terminal, in any order, and returns how many are. For diagnostics and tests: the
    /// consumer itself takes samples only in push order.
    pub fn wait_resolved(&self, n: usize) -> usize {
        let mut ring = lock(&self.shared.ring);
        loop {
            let done = ring.samples.iter().filter(|s| matches!(s.stage, Stage::Done(_))).count();
            if done >= n.min(ring.samples.len()) || ring.shutdown {
                return done;
            }
            ring = wait(&self.shared.changed, ring);
        }
    }

    /// Stops the prefetcher early: waiters in [`wait_ready`](Self::wait_ready) and
    /// [`push`](Self::push) return, and no new work starts. Dropping it afterwards joins
    /// the threads. Used by an owner that shares the prefetcher and must wake its threads
    /// before it can drop it.
    pub fn shutdown(&self) {
        lock(&self.shared.ring).shutdown = true;
        self.shared.changed.notify_all();
        self.shared.doorbell.shut();
    }

    /// Samples pushed and not yet taken.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.ring).samples.len()
    }

    /// Cache and fetch counters.
    pub fn stats(&self) -> PrefetchStats {
        PrefetchStats {
            metadata: self.shared.meta.stats(),
            shard_index: self.shared.shards.stats(),
            layout: self.shared.layouts.stats(),
            fetches: lock(&self.shared.jobs).fetches,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &PrefetchConfig {
        &self.shared.config
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        lock(&self.shared.ring).shutdown = true;
        self.shared.changed.notify_all();
        {
            let mut jobs = lock(&self.shared.jobs);
            jobs.closed = true;
            // Queued fetches never start; their entries stay pending and drop with the
            // caches, failing any gate still waiting on them.
            jobs.queue.clear();
        }
        self.shared.jobs_cv.notify_all();
        self.shared.doorbell.shut();
        // The driver first: once it has returned, no thread is started any more.
        let grown = std::mem::take(&mut *lock(&self.shared.grown));
        for t in self.threads.drain(..).chain(grown) {
            // A panicked thread has nothing left to clean up; ignore its payload.
            let _ = t.join();
        }
        // Threads the driver started while the ones above were joined.
        for t in std::mem::take(&mut *lock(&self.shared.grown)) {
            let _ = t.join();
        }
    }
}

/// The value behind `handle` once its fetch has landed: `None` while it is pending (the
/// doorbell rings when it lands), `Some(Err)` for the error that ends the sample, with
/// `stale_key` naming the entry in `Evicted` when it left the cache before it was read.
fn poll<K: Hash + Eq + Clone, V>(
    cache: &SlotCache<K, V, Error>,
    handle: Handle,
    seq: u64,
    stale_key: impl FnOnce() -> String,
) -> Option<Result<StdArc<V>, Error>> {
    match cache.state(handle) {
        State::Pending => None,
        State::Stale => Some(Err(Error::Evicted { seq, key: stale_key() })),
        State::Error(e) => Some(Err(e)),
        State::Ready => cache.get_arc(handle).map(Ok),
    }
}

/// Runs a fetch, turning a panic inside it (a bug, or a store implementation's) into an
/// error: a dead fetch would leave its samples pending forever.
fn caught<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or(Err(Error::Panicked { stage: "fetch" }))
}

impl Shared {
    fn fetch_loop(&self) {
        loop {
            let job = {
                let mut jobs = lock(&self.jobs);
                loop {
                    if jobs.closed {
                        return;
                    }
                    if let Some(j) = jobs.queue.pop_front() {
                        jobs.fetches += 1;
                        break j;
                    }
                    jobs.idle += 1;
                    jobs = wait(&self.jobs_cv, jobs);
                    jobs.idle -= 1;
                }
            };
            let store = &*self.store;
            match job {
                Job::Meta { handle, uri, level } => {
                    self.meta.complete(handle, caught(|| image::fetch_level(store, &uri, level)));
                }
                Job::Shard { handle, info, key } => {
                    self.shards.complete(handle, caught(|| fetch::fetch_shard(store, &info, &key)));
                }
                Job::Layout { handle, uri, key, offset, nbytes } => {
                    let r = caught(|| {
                        fetch::fetch_layout(
                            store,
                            &uri,
                            &key,
                            offset,
                            nbytes,
                            &self.config.decodable_blosc,
                        )
                    });
                    self.layouts.complete(handle, r);
                }
            }
        }
    }

    fn enqueue(&self, job: Job) {
        lock(&self.jobs).queue.push_back(job);
        self.jobs_cv.notify_one();
    }

    /// Starts fetch threads while queued jobs outnumber the idle threads, up to
    /// `fetch_threads` in all.
    fn grow(this: &Arc<Shared>) {
        let mut jobs = lock(&this.jobs);
        let want = jobs.queue.len().saturating_sub(jobs.idle);
        let room = this.config.fetch_threads.saturating_sub(jobs.started);
        let n = want.min(room);
        if n == 0 || jobs.closed {
            return;
        }
        jobs.started += n;
        drop(jobs);
        let mut grown = lock(&this.grown);
        for _ in 0..n {
            let s = Arc::clone(this);
            grown.push(thread::spawn(move || s.fetch_loop()));
        }
    }

    fn drive(this: &Arc<Shared>) {
        loop {
            let seen = this.doorbell.current();
            let mut ring = lock(&this.ring);
            if ring.shutdown {
                return;
            }
            let mut progressed = false;
            let Ring { samples, live, .. } = &mut *ring;
            // Sequence numbers are contiguous from the front (samples leave only from
            // there, and only when terminal, so never while live).
            let front = samples.front().map_or(0, |s| s.seq);
            live.retain(|&seq| {
                let Some(s) = seq.checked_sub(front).and_then(|i| samples.get_mut(i as usize))
                else {
                    return false;
                };
                // A panic while planning a sample (a bug) ends that sample with an error
                // instead of killing the driver and every sample behind it.
                let stepped =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.step(s)));
                progressed |= stepped.unwrap_or_else(|_| {
                    s.stage = Stage::Done(Err(Error::Panicked { stage: "resolve" }));
                    true
                });
                !matches!(s.stage, Stage::Done(_))
            });
            drop(ring);
            // The steps above queued fetches: threads for them if all are busy.
            Self::grow(this);
            if progressed {
                this.changed.notify_all();
            }
            if !this.doorbell.wait_past(seen) {
                return;
            }
        }
    }

    /// Advances one sample as far as it can go now; true when it became terminal.
    fn step(&self, s: &mut Sample) -> bool {
        if matches!(s.stage, Stage::Done(_)) {
            return false;
        }
        let Some(gate) = s.gate.as_ref() else { return false };
        loop {
            let next = match &mut s.stage {
                Stage::Done(_) => break,
                Stage::Meta { handle } => self.advance_meta(s.seq, &s.request, handle, gate),
                Stage::Shards(fetch) => self.advance_shards(s.seq, fetch, gate),
                Stage::Layout { resolved, handle } => {
                    self.advance_layout(s.seq, resolved, handle, gate)
                }
            };
            // `None`: the sample waits for a fetch or for cache space; the doorbell brings
            // the driver back.
            let Some(next) = next else { return false };
            s.stage = next;
        }
        // Terminal: the gate has nothing pending, so dropping it recycles it at once.
        s.gate = None;
        true
    }

    /// Requests `key` for sample `seq`, queues the fetch when this request installed the
    /// entry, and makes `gate` wait on it. `None` when every slot is pinned: the sample
    /// asks again on a later pass, after the watermark has moved.
    fn register<K: Hash + Eq + Clone, V>(
        &self,
        cache: &SlotCache<K, V, Error>,
        key: K,
        seq: u64,
        gate: &Gate,
        job: impl FnOnce(Handle) -> Job,
    ) -> Option<Handle> {
        let r = cache.request(key, seq).ok()?;
        if r.must_fetch {
            self.enqueue(job(r.handle));
        }
        cache.wait_on(r.handle, gate);
        Some(r.handle)
    }

    /// Meta → shards: waits for the array's `zarr.json`, then plans the shards to fetch.
    fn advance_meta(
        &self,
        seq: u64,
        request: &SampleRequest,
        handle: &mut Option<Handle>,
        gate: &Gate,
    ) -> Option<Stage> {
        let h = match *handle {
            Some(h) => h,
            None => {
                let (uri, level) = (&request.uri, request.level);
                let job = |handle| Job::Meta { handle, uri: uri.clone(), level };
                let key = (uri.clone(), level);
                *handle.insert(self.register(&self.meta, key, seq, gate, job)?)
            }
        };
        if gate.status().pending > 0 {
            return None;
        }
        match poll(&self.meta, h, seq, || join_key(&request.uri, "zarr.json"))? {
            Ok(info) => Some(self.plan_shards(seq, request, (*info).clone())),
            Err(e) => Some(Stage::Done(Err(e))),
        }
    }

    /// Shards → layout (or done): waits for every touched shard's index.
    fn advance_shards(&self, seq: u64, fetch: &mut ShardFetch, gate: &Gate) -> Option<Stage> {
        let ShardFetch { info, aabb, keys, handles } = fetch;
        // Resume where back-pressure stopped the last pass: tickets registered before are
        // not registered again, so the gate counts each fetch once.
        while handles.len() < keys.len() {
            let key = &keys[handles.len()];
            let job = |handle| Job::Shard { handle, info: info.clone(), key: key.clone() };
            handles.push(self.register(&self.shards, key.clone(), seq, gate, job)?);
        }
        if gate.status().pending > 0 {
            return None;
        }
        let mut shards = Vec::with_capacity(handles.len());
        for (&h, key) in handles.iter().zip(keys.iter()) {
            let state = match poll(&self.shards, h, seq, || key.clone())? {
                Ok(state) => state,
                Err(e) => return Some(Stage::Done(Err(e))),
            };
            shards.push(ResolvedShard { key: key.clone(), state });
        }
        let resolved =
            ResolvedSample { array: info.clone(), aabb: Some(aabb.clone()), shards, layout: None };
        if fetch::needs_layout(&info.meta) {
            Some(Stage::Layout { resolved: Box::new(resolved), handle: None })
        } else {
            Some(Stage::Done(Ok(resolved)))
        }
    }

    /// Layout → done: fetches the array's blosc layout through a stored chunk the sample
    /// touches.
    fn advance_layout(
        &self,
        seq: u64,
        resolved: &ResolvedSample,
        handle: &mut Option<Handle>,
        gate: &Gate,
    ) -> Option<Stage> {
        let h = match *handle {
            Some(h) => h,
            None => {
                let probe = fetch::layout_probe(
                    resolved.shards.iter().map(|r| (r.key.as_str(), &*r.state)),
                );
                let Some((key, offset, nbytes)) = probe else {
                    // Nothing touched is stored: every chunk is fill, so no layout is needed
                    // for this sample.
                    return Some(Stage::Done(Ok(resolved.clone())));
                };
                let uri = resolved.array.uri.clone();
                let job = move |handle| Job::Layout { handle, uri, key, offset, nbytes };
                let cache_key = resolved.array.uri.clone();
                *handle.insert(self.register(&self.layouts, cache_key, seq, gate, job)?)
            }
        };
        if gate.status().pending > 0 {
            return None;
        }
        let outcome = poll(&self.layouts, h, seq, || resolved.array.uri.to_string())?
            .map(|layout| ResolvedSample { layout: Some(layout), ..resolved.clone() });
        Some(Stage::Done(outcome))
    }

    /// From the array's metadata to the list of shards to fetch (or a terminal outcome).
    fn plan_shards(&self, seq: u64, req: &SampleRequest, info: ArrayInfo) -> Stage {
        let geo_err =
            |source| Stage::Done(Err(Error::Geometry { seq, uri: req.uri.clone(), source }));
        if req.lo.len() == req.hi.len() && req.lo.iter().zip(&req.hi).any(|(l, h)| l == h) {
            // A zero-extent box touches no shard: a defined, empty outcome (lesson 4),
            // provided it still lies inside the array.
            let inside = req.lo.len() == info.geometry.rank()
                && req.hi.iter().zip(&info.geometry.shape).all(|(h, e)| h <= e);
            if inside {
                return Stage::Done(Ok(ResolvedSample {
                    array: info,
                    aabb: None,
                    shards: Vec::new(),
                    layout: None,
                }));
            }
        }
        let aabb = match Aabb::new(req.lo.clone(), req.hi.clone()) {
            Ok(a) => a,
            Err(e) => return geo_err(e),
        };
        // Only the shards' keys are needed here (the planner walks the chunks): the
        // intersection goes into this thread's reused buffers, not a vector per chunk hit,
        // which made allocation most of this thread's work per sample.
        thread_local! {
            static HITS: std::cell::RefCell<Intersection> =
                std::cell::RefCell::new(Intersection::new());
        }
        let max = self.config.max_shards_per_sample;
        // `Err(n)`: the box touches `n` shards, more than `max` (no keys made for them).
        let keys = HITS.with(|hits| {
            let mut hits = hits.borrow_mut();
            info.geometry.intersect_into(&aabb, &mut hits)?;
            if hits.num_shards() > max {
                return Ok(Err(hits.num_shards()));
            }
            let encoding = &info.meta.chunk_key_encoding;
            Ok(Ok(hits
                .shards()
                .map(|h| join_key(&info.uri, &encoding.chunk_key(h.coords)))
                .collect()))
        });
        let keys: Vec<String> = match keys {
            Ok(Ok(keys)) => keys,
            Ok(Err(shards)) => {
                return Stage::Done(Err(Error::TooManyShards {
                    seq,
                    uri: req.uri.clone(),
                    shards,
                    max,
                }));
            }
            Err(e) => return geo_err(e),
        };
        Stage::Shards(ShardFetch { info, aabb, keys, handles: Vec::new() })
    }
}
