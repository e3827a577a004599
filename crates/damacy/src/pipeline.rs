//! The pipeline: samples in, batches out, in push order.
//!
//! Threads: one coordinator (takes `samples_per_batch` samples, resolves their metadata,
//! plans the batch, waits for a free batch buffer, hands the batch's jobs to the workers)
//! and `decode_threads` workers (read, decode, scatter; see [`crate::host`]). `pop` takes
//! the oldest planned batch, waits for its jobs, and applies the error policy.
//!
//! Lock order: `input` and `output` are never held together, and no lock is held across
//! I/O, planning or a wait on a batch's jobs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::path::PathBuf;

use planner::{ArrayEntry, ArrayId, PlanLimits, SampleInput};
use prefetch_cache::{PrefetchConfig, Prefetcher, ReadySample, SampleRequest};
use zarr::DataType;

use crate::batch::{Batch, Sample, SampleInfo};
use crate::config::{Config, OnError};
use crate::error::{Error, Result, SampleError};
use crate::host::{ArrayFacts, BatchWork, JobKind, Progress, Scratch};
use crate::resolve::resolved;
use crate::slots::{SlotLease, Slots};
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

/// A job for the decode workers.
pub(crate) enum Job {
    /// A host-engine job.
    Host(Arc<BatchWork<()>>, JobKind),
    /// Read op `n` of a CUDA wave.
    #[cfg(feature = "cuda")]
    Cuda(Arc<crate::cuda::WaveWork>, usize),
}

/// A batch handed from the coordinator to `pop`.
enum Pending {
    Work(Box<PendingWork>),
    /// A batch executed by the CUDA engine (already complete on the device).
    #[cfg(feature = "cuda")]
    Device(Box<PendingDevice>),
    /// A batch planned for the CUDA engine, on its way to the submit thread (never in the
    /// output queue).
    #[cfg(feature = "cuda")]
    Planned(Box<(crate::cuda::BatchCtx, DeviceMeta)>),
    /// The batch failed before any job ran (shape, resolution, planning).
    Failed {
        error: Error,
        lease: Option<SlotLease>,
    },
}

struct PendingWork {
    id: u64,
    work: Arc<BatchWork<()>>,
    lease: SlotLease,
    infos: Vec<SampleInfo>,
    element: DataType,
    /// Samples that failed before planning: (batch position, error, fill value).
    early: Vec<(usize, SampleError)>,
    /// Per batch position, the cast fill value (for `OnError::Fill`).
    fills: Vec<Vec<u8>>,
}

/// What a batch planned for the CUDA engine carries through the submit and harvest
/// threads to `pop`.
#[cfg(feature = "cuda")]
pub(crate) struct DeviceMeta {
    id: u64,
    infos: Vec<SampleInfo>,
    element: DataType,
    /// Samples that failed before planning.
    early: Vec<(usize, SampleError)>,
    fills: Vec<Vec<u8>>,
    sample_bytes: usize,
    out_elems: u64,
    /// Plan sample → batch position.
    positions: Arc<Vec<usize>>,
}

#[cfg(feature = "cuda")]
type Harvested = crate::cuda::Harvested<DeviceMeta, Pending>;

/// Turns what the harvest thread hands out into an output-queue entry.
#[cfg(feature = "cuda")]
fn harvested(h: Harvested) -> Pending {
    match h {
        crate::cuda::Harvested::Ran { meta, lease, errors } => {
            let mut all = meta.early;
            all.extend(
                errors.into_iter().filter_map(|(s, e)| meta.positions.get(s).map(|&pos| (pos, e))),
            );
            Pending::Device(Box::new(PendingDevice {
                id: meta.id,
                lease,
                infos: meta.infos,
                element: meta.element,
                errors: all,
                fills: meta.fills,
                sample_bytes: meta.sample_bytes,
                out_elems: meta.out_elems,
            }))
        }
        crate::cuda::Harvested::Failed { error } => Pending::Failed { error, lease: None },
        crate::cuda::Harvested::Pass(p) => p,
    }
}

#[cfg(feature = "cuda")]
struct PendingDevice {
    id: u64,
    lease: gpu_schedule::Lease<gpu_schedule::CudaBackend, gpu_schedule::CudaDeviceMem>,
    infos: Vec<SampleInfo>,
    element: DataType,
    errors: Vec<(usize, SampleError)>,
    fills: Vec<Vec<u8>>,
    sample_bytes: usize,
    out_elems: u64,
}

#[derive(Default)]
struct Output {
    queue: VecDeque<Pending>,
    /// The coordinator has exited: nothing more will be queued.
    done: bool,
}

struct Shared {
    cfg: Config,
    /// Where chunk data comes from.
    store: Arc<dyn store::Store>,
    slots: Arc<Slots>,
    input: Mutex<Input>,
    input_cv: Condvar,
    output: Mutex<Output>,
    output_cv: Condvar,
    shutdown: AtomicBool,
    stats: StatCounters,
    prefetcher: Prefetcher,
    feed: Mutex<Feed>,
    feed_cv: Condvar,
    /// Prefetcher cache hits and misses at the last `reset_stats`.
    cache_base: Mutex<(u64, u64)>,
    /// The CUDA engine, when the backend is CUDA.
    #[cfg(feature = "cuda")]
    engine: Option<Arc<crate::cuda::Engine>>,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking worker must not turn every later call into a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Streams batches of crops; see the crate docs for the flow.
pub struct Pipeline {
    shared: Arc<Shared>,
    feeder: Option<JoinHandle<()>>,
    coordinator: Option<JoinHandle<()>>,
    /// The CUDA engine's submit and harvest threads.
    gpu_threads: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("config", &self.shared.cfg).finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Creates a pipeline reading from the local file system (sample uris are absolute
    /// paths). All batch buffers are allocated here.
    ///
    /// # Errors
    /// Any [`Config::validate`] error; `BackendUnavailable` for `Backend::Cuda` in a build
    /// or on a machine without CUDA; `Spawn` when threads cannot start.
    pub fn new(cfg: Config) -> Result<Self> {
        let store = store::FsStore::new(
            "/",
            store::FsStoreConfig { io_threads: cfg.io_threads, ..Default::default() },
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

    /// Creates a pipeline that reads metadata (`zarr.json`, shard indexes) from
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
        #[cfg(feature = "cuda")]
        let engine = match cfg.backend {
            crate::config::Backend::Cuda { device } => {
                Some(Arc::new(crate::cuda::Engine::new(&cfg, device)?))
            }
            crate::config::Backend::Auto => crate::cuda::Engine::new(&cfg, 0).ok().map(Arc::new),
            crate::config::Backend::Host => None,
        };
        #[cfg(not(feature = "cuda"))]
        if let crate::config::Backend::Cuda { .. } = cfg.backend {
            return Err(Error::BackendUnavailable {
                reason: "this build of damacy has no CUDA engine (build with the `cuda` feature)",
            });
        }
        // Output element size: known for the float outputs; `Native` takes the widest
        // source type (8 bytes), as the arrays' type is not known until they are read.
        let batch_bytes = usize::try_from(cfg.batch_elements()? * cfg.dtype.max_size() as u64)
            .map_err(|_| Error::ConfigOverflow { knob: "sample_shape" })?;
        let slots = Arc::new(Slots::new(cfg.batches_in_flight, batch_bytes)?);
        let mut pcfg = PrefetchConfig::for_batch(cfg.samples_per_batch);
        pcfg.lookahead = cfg.effective_lookahead();
        pcfg.max_shards_per_sample = cfg.max_shards_per_sample;
        pcfg.fetch_threads = cfg.io_threads;
        pcfg.size_caches();
        pcfg.metadata_capacity = pcfg.metadata_capacity.max(cfg.metadata_cache_capacity);
        pcfg.shard_index_capacity =
            pcfg.shard_index_capacity.max(cfg.effective_shard_index_cache_capacity()?);
        let prefetcher =
            Prefetcher::new(Arc::clone(&meta_store), pcfg).map_err(|e| Error::Sample {
                index: u64::MAX,
                uri: PathBuf::new(),
                source: Box::new(SampleError::Prefetch(Box::new(e))),
            })?;
        let shared = Arc::new(Shared {
            cfg,
            store,
            slots,
            input: Mutex::new(Input::default()),
            input_cv: Condvar::new(),
            output: Mutex::new(Output::default()),
            output_cv: Condvar::new(),
            shutdown: AtomicBool::new(false),
            stats: StatCounters::default(),
            prefetcher,
            feed: Mutex::new(Feed::default()),
            feed_cv: Condvar::new(),
            cache_base: Mutex::new((0, 0)),
            #[cfg(feature = "cuda")]
            engine,
        });
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut workers = Vec::new();
        for _ in 0..shared.cfg.effective_decode_threads() {
            let rx = rx.clone();
            let sh = Arc::clone(&shared);
            let h = std::thread::Builder::new()
                .name("damacy-decode".into())
                .spawn(move || worker(&sh, &rx))
                .map_err(|e| Error::Spawn { name: "damacy-decode", kind: e.kind() })?;
            workers.push(h);
        }
        let sh = Arc::clone(&shared);
        let feeder = std::thread::Builder::new()
            .name("damacy-feeder".into())
            .spawn(move || feeder(&sh))
            .map_err(|e| Error::Spawn { name: "damacy-feeder", kind: e.kind() })?;
        #[allow(unused_mut)]
        let mut gpu_threads = Vec::new();
        #[cfg(feature = "cuda")]
        let gpu = match &shared.engine {
            Some(engine) => {
                // One planned batch waits for the submit thread: planning runs one batch
                // ahead, bounded.
                let (stx, srx) = crossbeam_channel::bounded(1);
                let (htx, hrx) = crossbeam_channel::unbounded();
                let (e, sh, jobs) = (Arc::clone(engine), Arc::clone(&shared), tx.clone());
                gpu_threads.push(
                    std::thread::Builder::new()
                        .name("damacy-gpu-submit".into())
                        .spawn(move || e.submit_loop(&srx, &jobs, &htx, &sh.stats))
                        .map_err(|e| Error::Spawn { name: "damacy-gpu-submit", kind: e.kind() })?,
                );
                let (e, sh) = (Arc::clone(engine), Arc::clone(&shared));
                gpu_threads.push(
                    std::thread::Builder::new()
                        .name("damacy-gpu-harvest".into())
                        .spawn(move || {
                            let emit = |h: Harvested| {
                                lock(&sh.output).queue.push_back(harvested(h));
                                sh.output_cv.notify_all();
                            };
                            e.harvest_loop(&hrx, &sh.stats, &emit);
                            lock(&sh.output).done = true;
                            sh.output_cv.notify_all();
                        })
                        .map_err(|e| Error::Spawn { name: "damacy-gpu-harvest", kind: e.kind() })?,
                );
                Some(stx)
            }
            None => None,
        };
        let sh = Arc::clone(&shared);
        let coordinator = std::thread::Builder::new()
            .name("damacy-coordinator".into())
            .spawn(move || {
                coordinator(
                    &sh,
                    &tx,
                    #[cfg(feature = "cuda")]
                    gpu,
                )
            })
            .map_err(|e| Error::Spawn { name: "damacy-coordinator", kind: e.kind() })?;
        Ok(Self {
            shared,
            feeder: Some(feeder),
            coordinator: Some(coordinator),
            gpu_threads,
            workers,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.cfg
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
        let pending = {
            let mut out = lock(&sh.output);
            loop {
                if let Some(p) = out.queue.pop_front() {
                    break p;
                }
                if out.done {
                    drop(out);
                    if sh.shutdown.load(Ordering::Acquire) {
                        return Err(Error::Closed);
                    }
                    // Reported once, after every batch before it. Taken with `output`
                    // released: those two locks are never held together.
                    if let Some(index) = lock(&sh.feed).source_panicked.take() {
                        return Err(Error::SourcePanicked { index });
                    }
                    return Ok(None);
                }
                match deadline {
                    None => out = sh.output_cv.wait(out).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            return Err(Error::Timeout { waited: now - t0 });
                        }
                        out = sh
                            .output_cv
                            .wait_timeout(out, d - now)
                            .map(|(g, _)| g)
                            .unwrap_or_else(|e| e.into_inner().0);
                    }
                }
            }
        };
        let result = match pending {
            Pending::Failed { error, lease, .. } => {
                if let Some(l) = lease {
                    sh.slots.release(l);
                }
                Err(error)
            }
            Pending::Work(p) => finish_batch(sh, *p),
            #[cfg(feature = "cuda")]
            Pending::Device(p) => finish_device(sh, *p),
            // Planned batches go to the submit thread, never to the output queue.
            #[cfg(feature = "cuda")]
            Pending::Planned(_) => Err(Error::Closed),
        };
        sh.stats.pop_wait_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result.map(Some)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.shared.stats.snapshot(&self.shared.store.stats());
        #[cfg(feature = "cuda")]
        if let Some(e) = &self.shared.engine {
            s.gpu_bytes_committed = e.committed;
            s.gpu_wave_chunks = e.sizing.chunks;
            s.cpu_decode_share_permille = e.cpu_share();
        }
        let (h, m) = self.cache_totals();
        let base = *lock(&self.shared.cache_base);
        s.cache_hits = h.saturating_sub(base.0);
        s.cache_misses = m.saturating_sub(base.1);
        s
    }

    fn cache_totals(&self) -> (u64, u64) {
        let p = self.shared.prefetcher.stats();
        let caches = [p.metadata, p.shard_index, p.layout];
        (caches.iter().map(|c| c.hits).sum(), caches.iter().map(|c| c.misses).sum())
    }

    /// Zeroes the counters (for example after warm-up).
    pub fn reset_stats(&self) {
        *lock(&self.shared.cache_base) = self.cache_totals();
        self.shared.stats.reset();
    }
}

/// Waits for a planned batch's jobs and applies the error policy.
fn finish_batch(sh: &Shared, p: PendingWork) -> Result<Batch> {
    let job_errors = p.work.progress.wait();
    let mut errors: Vec<(usize, SampleError)> = p.early;
    errors.extend(job_errors.into_iter().map(|(s, e)| (p.work.positions[s], e)));
    errors.sort_by_key(|(pos, _)| *pos);
    errors.dedup_by_key(|(pos, _)| *pos);
    let lease = p.lease;
    if !errors.is_empty() {
        match sh.cfg.on_error {
            OnError::Fail => {
                let (pos, source) = errors.swap_remove(0);
                let info = &p.infos[pos];
                sh.slots.release(lease);
                return Err(Error::Sample {
                    index: info.index,
                    uri: info.uri.clone(),
                    source: Box::new(source),
                });
            }
            OnError::Fill => {
                // `sample_shape` was validated at construction, so this box always exists;
                // should it not, the buffer still goes back before the error does.
                let Ok(whole) = zarr::Aabb::from_shape(&sh.cfg.sample_shape) else {
                    sh.slots.release(lease);
                    return Err(Error::ConfigValue {
                        knob: "sample_shape",
                        value: 0,
                        expected: "a non-empty shape",
                    });
                };
                for (pos, _) in &errors {
                    p.work.fill(*pos, &whole, &p.fills[*pos]);
                }
            }
        }
    }
    let sample_bytes = p.work.sample_bytes;
    Ok(deliver(
        sh,
        Delivered { id: p.id, infos: p.infos, element: p.element, sample_bytes, errors },
        Some(lease),
        #[cfg(feature = "cuda")]
        None,
    ))
}

/// What both engines hand out for a finished batch.
struct Delivered {
    id: u64,
    infos: Vec<SampleInfo>,
    element: DataType,
    sample_bytes: usize,
    /// (batch position, error) of samples filled under `OnError::Fill`.
    errors: Vec<(usize, SampleError)>,
}

/// Counts a finished batch and builds its handle: over a host buffer (`lease`) or, with
/// the CUDA engine, a device buffer (`device`).
fn deliver(
    sh: &Shared,
    d: Delivered,
    lease: Option<SlotLease>,
    #[cfg(feature = "cuda")] device: Option<crate::cuda::DeviceBatch>,
) -> Batch {
    let n = d.infos.len() as u64;
    let mut shape = vec![n];
    shape.extend_from_slice(&sh.cfg.sample_shape);
    let bytes = d.sample_bytes * d.infos.len();
    sh.stats.batches.fetch_add(1, Ordering::Relaxed);
    sh.stats.samples.fetch_add(n, Ordering::Relaxed);
    sh.stats.bytes_delivered.fetch_add(bytes as u64, Ordering::Relaxed);
    let errors = d.errors.into_iter().map(|(pos, e)| (d.infos[pos].index, e)).collect::<Vec<_>>();
    Batch {
        id: d.id,
        shape,
        dtype: sh.cfg.dtype,
        element: d.element,
        samples: d.infos,
        errors,
        bytes,
        lease,
        slots: Arc::clone(&sh.slots),
        #[cfg(feature = "cuda")]
        host_copy: std::sync::OnceLock::new(),
        #[cfg(feature = "cuda")]
        device,
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
        sh.slots.close();
        #[cfg(feature = "cuda")]
        if let Some(e) = &sh.engine {
            e.close();
        }
        // The coordinator may be waiting inside the prefetcher for a sample to resolve.
        sh.prefetcher.shutdown();
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
        if let Some(c) = self.coordinator.take() {
            let _ = c.join();
        }
        // The submit thread ends once the coordinator's channel closed and its waves
        // drained (the workers still run them); the harvest thread after it.
        for g in self.gpu_threads.drain(..) {
            let _ = g.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        // Queued batches release their buffers as they drop.
        lock(&sh.output).queue.clear();
    }
}

/// Takes the next sample in push order, blocking until one is pushed. `None` once the
/// input is closed and drained, or on teardown; `Some(Err(()))` when a pushed iterator
/// panicked. A lazy source is advanced with the input lock released, so a slow or
/// blocking iterator never holds up `push`, `try_push`, `finish` or teardown's locks.
fn next_sample(sh: &Shared) -> Option<Result<Sample, ()>> {
    let mut inp = lock(&sh.input);
    loop {
        if sh.shutdown.load(Ordering::Acquire) {
            return None;
        }
        match inp.queue.pop_front() {
            Some(Pushed::One(s)) => {
                inp.queued_samples -= 1;
                return Some(Ok(s));
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
                        return Some(Ok(s));
                    }
                    Ok(None) => {}
                    Err(_) => return Some(Err(())),
                }
            }
            None if inp.closed => return None,
            None => inp = sh.input_cv.wait(inp).unwrap_or_else(|e| e.into_inner()),
        }
    }
}

/// The feeder: moves samples from the input queue into the prefetcher's ring, in push
/// order, as the ring has room. It waits on the feed condvar (not inside the
/// prefetcher) when the ring is full, so teardown can always wake it.
fn feeder(sh: &Shared) {
    let lookahead = sh.cfg.effective_lookahead() as u64;
    let mut held: Option<SampleRequest> = None;
    loop {
        if sh.shutdown.load(Ordering::Acquire) {
            return;
        }
        let req = match held.take() {
            Some(r) => r,
            None => match next_sample(sh) {
                Some(Ok(s)) => SampleRequest {
                    // `Sample::new` guarantees a UTF-8 path.
                    uri: s.uri.to_string_lossy().as_ref().into(),
                    lo: s.aabb.lo,
                    hi: s.aabb.hi,
                },
                Some(Err(())) => {
                    let mut f = lock(&sh.feed);
                    f.source_panicked = Some(f.fed);
                    f.done = true;
                    sh.feed_cv.notify_all();
                    return;
                }
                None => {
                    lock(&sh.feed).done = true;
                    sh.feed_cv.notify_all();
                    return;
                }
            },
        };
        match sh.prefetcher.try_push(req) {
            Ok(_) => {
                lock(&sh.feed).fed += 1;
                sh.feed_cv.notify_all();
            }
            Err(req) => {
                // The ring is full. `fed - taken` never undercounts the ring (the
                // coordinator counts a take after the ring shrank), so waiting for it to
                // drop below the lookahead, under the feed lock, cannot miss the take that
                // makes room.
                let mut f = lock(&sh.feed);
                while f.fed - f.taken >= lookahead && !sh.shutdown.load(Ordering::Acquire) {
                    f = sh.feed_cv.wait(f).unwrap_or_else(|e| e.into_inner());
                }
                held = Some(req);
            }
        }
    }
}

/// Takes the next `n` resolved samples in push order, blocking until they are ready or
/// the input is exhausted (a partial batch). `None` when nothing more will come.
fn gather(sh: &Shared, n: usize) -> Option<Vec<ReadySample>> {
    let mut got = Vec::with_capacity(n);
    loop {
        {
            let mut f = lock(&sh.feed);
            while f.fed == f.taken && !f.done && !sh.shutdown.load(Ordering::Acquire) {
                f = sh.feed_cv.wait(f).unwrap_or_else(|e| e.into_inner());
            }
            if sh.shutdown.load(Ordering::Acquire) {
                return None;
            }
            if f.fed == f.taken {
                // Input closed and every fed sample taken.
                return (!got.is_empty()).then_some(got);
            }
        }
        // The ring is not empty (only this thread takes), so this blocks until its front
        // sample is resolved, then takes the ready prefix.
        let ready = sh.prefetcher.wait_ready(n - got.len());
        lock(&sh.feed).taken += ready.len() as u64;
        sh.feed_cv.notify_all();
        got.extend(ready);
        if got.len() == n {
            return Some(got);
        }
    }
}

/// The CUDA engine's submit channel.
#[cfg(feature = "cuda")]
type SubmitTx = crossbeam_channel::Sender<crate::cuda::Submit<DeviceMeta, Pending>>;

fn coordinator(
    sh: &Shared,
    tx: &crossbeam_channel::Sender<Job>,
    #[cfg(feature = "cuda")] gpu: Option<SubmitTx>,
) {
    let mut id = 0u64;
    while let Some(samples) = gather(sh, sh.cfg.samples_per_batch) {
        let pending = build(sh, id, samples, tx);
        id += 1;
        let stop = matches!(pending, Pending::Failed { error: Error::Closed, .. });
        // With the CUDA engine, every batch goes through the submit and harvest threads
        // (in order); the harvest thread fills the output queue and closes it.
        #[cfg(feature = "cuda")]
        if let Some(g) = &gpu {
            let item = match pending {
                Pending::Planned(p) => {
                    let (ctx, meta) = *p;
                    crate::cuda::Submit::Run { id: meta.id, ctx, meta }
                }
                other => crate::cuda::Submit::Pass(other),
            };
            if g.send(item).is_err() || stop {
                break;
            }
            continue;
        }
        lock(&sh.output).queue.push_back(pending);
        sh.output_cv.notify_all();
        if stop {
            break;
        }
    }
    #[cfg(feature = "cuda")]
    if gpu.is_some() {
        return;
    }
    lock(&sh.output).done = true;
    sh.output_cv.notify_all();
}

/// Resolves, plans and dispatches one batch.
fn build(
    sh: &Shared,
    id: u64,
    samples: Vec<ReadySample>,
    tx: &crossbeam_channel::Sender<Job>,
) -> Pending {
    let cfg = &sh.cfg;
    let t0 = Instant::now();
    let mut infos = Vec::with_capacity(samples.len());
    for r in &samples {
        let req = &r.request;
        // Boxes were validated by `Sample::new` before they were pushed.
        let aabb = match zarr::Aabb::new(req.lo.clone(), req.hi.clone()) {
            Ok(a) => a,
            Err(e) => {
                // Unreachable through `Sample::new`, which validates the box.
                let error = Error::Sample {
                    index: r.seq,
                    uri: PathBuf::from(&*req.uri),
                    source: Box::new(SampleError::Format(e)),
                };
                return Pending::Failed { error, lease: None };
            }
        };
        infos.push(SampleInfo { index: r.seq, uri: PathBuf::from(&*req.uri), aabb });
    }
    // Shape errors are the caller's mistake, not the data's: the batch fails whatever the
    // error policy.
    for info in &infos {
        if info.aabb.shape() != cfg.sample_shape {
            return Pending::Failed {
                error: Error::SampleShape {
                    index: info.index,
                    uri: info.uri.clone(),
                    expected: cfg.sample_shape.clone().into(),
                    got: info.aabb.shape().into(),
                },
                lease: None,
            };
        }
    }
    let mut arrays: Vec<ArrayEntry> = Vec::new();
    let mut facts: Vec<ArrayFacts> = Vec::new();
    let mut inputs = Vec::new();
    let mut positions = Vec::new();
    let mut early = Vec::new();
    let mut element: Option<DataType> = None;
    let mut fills = vec![Vec::new(); infos.len()];
    for (pos, ready) in samples.into_iter().enumerate() {
        let r = match resolved(ready.outcome) {
            Ok(r) => r,
            Err(e) => {
                early.push((pos, e));
                continue;
            }
        };
        let dt = r.entry.meta.data_type;
        let out_el = cfg.dtype.element(dt);
        match element {
            None => element = Some(out_el),
            Some(e) if e != out_el => {
                return Pending::Failed {
                    error: Error::NativeDtypeMismatch {
                        index: infos[pos].index,
                        uri: infos[pos].uri.clone(),
                        expected: e,
                        got: out_el,
                    },
                    lease: None,
                };
            }
            Some(_) => {}
        }
        let a = match arrays.iter().position(|e| Arc::ptr_eq(&e.meta, &r.entry.meta)) {
            Some(a) => a,
            None => {
                arrays.push(r.entry.clone());
                facts.push(ArrayFacts::new(&r.entry, cfg.dtype));
                arrays.len() - 1
            }
        };
        fills[pos] = facts[a].fill_out.clone();
        inputs.push(SampleInput {
            array: ArrayId(a as u32),
            aabb: infos[pos].aabb.clone(),
            shards: r.shards,
        });
        positions.push(pos);
    }
    let element = element.unwrap_or(DataType::Float32);
    let out_size = cfg.dtype.size(element);
    for f in &mut fills {
        if f.is_empty() {
            // A sample whose metadata could not be read has no known fill value: zeros.
            *f = vec![0; out_size];
        }
    }
    #[allow(unused_mut)]
    let mut limits = PlanLimits {
        max_read_op_bytes: cfg.max_read_op_bytes,
        max_chunk_decompressed_bytes: cfg.max_chunk_decompressed_bytes,
        merge_gap_bytes: cfg.merge_gap_bytes,
        ..PlanLimits::default()
    };
    #[cfg(feature = "cuda")]
    if let Some(e) = &sh.engine {
        limits = e.sizing.limits(cfg);
    }
    let plan = match planner::plan(&arrays, &inputs, &limits, cfg.dtype) {
        Ok(p) => p,
        Err(e) => {
            let err = SampleError::Plan(Box::new(e));
            let info = &infos[0];
            return Pending::Failed {
                error: Error::Sample {
                    index: info.index,
                    uri: info.uri.clone(),
                    source: Box::new(err),
                },
                lease: None,
            };
        }
    };
    sh.stats.plan_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    sh.stats.add_plan(&plan.stats, plan.reads.len() as u64);
    #[cfg(feature = "cuda")]
    if sh.engine.is_some() {
        let sample_elems = cfg.sample_elements().unwrap_or(0);
        let positions = Arc::new(positions);
        let ctx = crate::cuda::BatchCtx {
            routes: Arc::new(arrays.iter().map(|a| crate::cuda::route(a.chunk_codecs())).collect()),
            arrays: Arc::new(arrays),
            facts: Arc::new(facts.into_iter().map(|f| (f.repr, f.fill_out)).collect()),
            plan: Arc::new(plan),
            positions: Arc::clone(&positions),
            sample_shape: cfg.sample_shape.clone(),
            out_dtype: cfg.dtype,
            out_elems: sample_elems * infos.len() as u64,
        };
        let meta = DeviceMeta {
            id,
            out_elems: ctx.out_elems,
            infos,
            element,
            early,
            fills,
            sample_bytes: sample_elems as usize * out_size,
            positions,
        };
        return Pending::Planned(Box::new((ctx, meta)));
    }
    let lease = match sh.slots.acquire(id) {
        Ok(l) => l,
        Err(e) => return Pending::Failed { error: e, lease: None },
    };
    let sample_bytes = (cfg.sample_elements().unwrap_or(0) as usize) * out_size;
    let jobs = BatchWork::<()>::jobs(&plan);
    let scratch_cap = BatchWork::<()>::scratch_cap(&plan);
    let work = Arc::new(BatchWork {
        arrays,
        facts,
        plan,
        sample_shape: cfg.sample_shape.clone(),
        out_dtype: cfg.dtype,
        sample_bytes,
        out: sh.slots.out_buf(&lease),
        positions,
        scratch_cap,
        progress: Progress::new(jobs.len()),
    });
    for j in jobs {
        if tx.send(Job::Host(Arc::clone(&work), j)).is_err() {
            return Pending::Failed { error: Error::Closed, lease: Some(lease) };
        }
    }
    Pending::Work(Box::new(PendingWork { id, work, lease, infos, element, early, fills }))
}

fn worker(sh: &Shared, rx: &crossbeam_channel::Receiver<Job>) {
    let mut scratch = Scratch::default();
    #[cfg(feature = "cuda")]
    let mut buf = Vec::new();
    while let Ok(job) = rx.recv() {
        match job {
            Job::Host(work, job) => work.run(job, &*sh.store, &mut scratch, &sh.stats),
            #[cfg(feature = "cuda")]
            Job::Cuda(work, r) => work.run(r, &*sh.store, &mut buf, &sh.stats),
        }
    }
}

/// Applies the error policy to a batch the CUDA engine executed and records its ready
/// event.
#[cfg(feature = "cuda")]
fn finish_device(sh: &Shared, p: PendingDevice) -> Result<Batch> {
    let Some(engine) = &sh.engine else { return Err(Error::Closed) };
    let mut errors = p.errors;
    errors.sort_by_key(|(pos, _)| *pos);
    errors.dedup_by_key(|(pos, _)| *pos);
    let lease = p.lease;
    let mut fills = Vec::new();
    if !errors.is_empty() {
        match sh.cfg.on_error {
            OnError::Fail => {
                let (pos, source) = errors.swap_remove(0);
                let info = &p.infos[pos];
                // Record the ready event so the release orders after the batch's writes.
                let _ = engine.finish(&lease, &[], &sh.cfg.sample_shape, p.out_elems);
                drop(crate::cuda::DeviceBatch {
                    engine: Arc::clone(engine),
                    lease: Some(lease),
                    bytes: 0,
                });
                return Err(Error::Sample {
                    index: info.index,
                    uri: info.uri.clone(),
                    source: Box::new(source),
                });
            }
            OnError::Fill => {
                fills = errors.iter().map(|(pos, _)| (*pos, p.fills[*pos].clone())).collect();
            }
        }
    }
    let finished = engine.finish(&lease, &fills, &sh.cfg.sample_shape, p.out_elems);
    let device = crate::cuda::DeviceBatch {
        engine: Arc::clone(engine),
        lease: Some(lease),
        bytes: p.sample_bytes * p.infos.len(),
    };
    finished?;
    let d = Delivered {
        id: p.id,
        infos: p.infos,
        element: p.element,
        sample_bytes: p.sample_bytes,
        errors,
    };
    Ok(deliver(sh, d, None, Some(device)))
}
