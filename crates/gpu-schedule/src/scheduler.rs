//! The scheduler: creates the streams, picks the pipeline depth, runs stage payloads in
//! order on the calling thread, and moves data on worker threads behind a queue.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::edge::{EdgeStats, EdgeTable, TeardownFinding};
use crate::error::{Error, Result};
use crate::sync::{Arc, Condvar, Mutex, Queue, lock, thread, wait_until};
use crate::trace;

/// A stream the scheduler created, with its name (the name edges refer to).
pub struct Stream<B: Backend> {
    name: &'static str,
    raw: B::Stream,
}

impl<B: Backend> fmt::Debug for Stream<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream").field("name", &self.name).finish()
    }
}

impl<B: Backend> Stream<B> {
    pub(crate) fn new(backend: &B, name: &'static str) -> Result<Self> {
        Ok(Self { name, raw: backend.create_stream(name)? })
    }

    /// The stream's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The backend's stream, for enqueueing payloads (kernels, copies, host tasks).
    pub fn raw(&self) -> &B::Stream {
        &self.raw
    }
}

/// What the scheduler is asked to set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Stream names, unique; all streams are created here and nowhere else.
    pub streams: Vec<&'static str>,
    /// Data-movement worker threads (at least one is started).
    pub movers: usize,
    /// Whether every cross-stream rule of this configuration can be kept on the device.
    /// When false (or the backend lacks device counters) the pipeline runs at depth 1.
    pub orderable_on_device: bool,
}

/// The pipeline depth for a configuration: 2 when its ordering can live on the device,
/// else 1 (the host keeps the rules, so only one batch is in flight).
pub fn pipeline_depth(device_counters: bool, orderable_on_device: bool) -> usize {
    if device_counters && orderable_on_device { 2 } else { 1 }
}

/// Cumulative time of one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageStats {
    /// The stage.
    pub name: &'static str,
    /// Times it ran.
    pub runs: u64,
    /// Time spent enqueueing or running its payload on the scheduler thread.
    pub time: Duration,
}

/// What teardown found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeardownReport {
    /// Dead edges and waits for values never published.
    pub findings: Vec<TeardownFinding>,
    /// Per-edge waits and stalls.
    pub edges: Vec<EdgeStats>,
    /// The first error a stream or move job reported during teardown, if any.
    pub first_error: Option<Error>,
}

/// Anything that must be released at teardown, after workers are joined.
pub trait Releasable {
    /// Releases every outstanding slot.
    ///
    /// # Errors
    /// A backend error.
    fn release_all(&self) -> Result<()>;
}

impl<B: Backend, T> Releasable for crate::Pool<B, T> {
    fn release_all(&self) -> Result<()> {
        crate::Pool::release_all(self)
    }
}

type MoveFn = Box<dyn FnOnce() -> Result<()> + Send + 'static>;

struct MoveJob {
    slot: usize,
    run: MoveFn,
}

#[derive(Default)]
struct MoveSlot {
    pending: bool,
    error: Option<Error>,
}

struct Movers {
    queue: Arc<Queue<MoveJob>>,
    slots: Arc<(Mutex<Vec<MoveSlot>>, Condvar)>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl Movers {
    fn start(threads: usize, slots: usize) -> Self {
        let queue = Arc::new(Queue::<MoveJob>::new());
        let state = Arc::new((
            Mutex::new((0..slots).map(|_| MoveSlot::default()).collect::<Vec<_>>()),
            Condvar::new(),
        ));
        let workers = (0..threads.max(1))
            .map(|_| {
                let (q, st) = (Arc::clone(&queue), Arc::clone(&state));
                thread::spawn(move || {
                    while let Some(job) = q.pop() {
                        let _range = trace::range("move", Some(job.slot));
                        let outcome = catch_unwind(AssertUnwindSafe(job.run))
                            .unwrap_or(Err(Error::MoveJobPanicked { slot: job.slot }));
                        let mut slots = lock(&st.0);
                        if let Some(s) = slots.get_mut(job.slot) {
                            s.pending = false;
                            if let Err(e) = outcome {
                                s.error.get_or_insert(e);
                            }
                        }
                        drop(slots);
                        st.1.notify_all();
                    }
                })
            })
            .collect();
        Self { queue, slots: state, workers }
    }

    fn join_slot(&self, slot: usize) -> Result<()> {
        let slots = lock(&self.slots.0);
        let n = slots.len();
        if slot >= n {
            return Err(Error::SlotOutOfRange { what: "edge", name: "move queue", slot, slots: n });
        }
        let mut slots = wait_until(&self.slots.1, slots, |s| !s[slot].pending);
        match slots[slot].error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn stop(&mut self) -> Option<Error> {
        self.queue.close();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        lock(&self.slots.0).iter_mut().find_map(|s| s.error.take())
    }
}

/// Owns the streams, the edge table, the pipeline depth and the data-movement workers.
pub struct Scheduler<B: Backend> {
    backend: Arc<B>,
    streams: Vec<Stream<B>>,
    depth: usize,
    edges: Arc<EdgeTable<B>>,
    movers: Movers,
    stages: Mutex<Vec<StageStats>>,
}

impl<B: Backend> fmt::Debug for Scheduler<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("backend", &self.backend.name())
            .field("streams", &self.streams)
            .field("depth", &self.depth)
            .finish()
    }
}

impl<B: Backend> Scheduler<B> {
    /// Creates the streams, picks the depth, builds an edge table with `depth` slots, and
    /// starts the movers (one move slot per pipeline slot).
    ///
    /// # Errors
    /// [`Error::DuplicateName`] for a repeated stream name; a backend error.
    pub fn new(backend: Arc<B>, config: &SchedulerConfig) -> Result<Self> {
        let mut streams: Vec<Stream<B>> = Vec::with_capacity(config.streams.len());
        for &name in &config.streams {
            if streams.iter().any(|s| s.name == name) {
                return Err(Error::DuplicateName { name });
            }
            streams.push(Stream::new(&*backend, name)?);
        }
        let depth = pipeline_depth(backend.device_counters(), config.orderable_on_device);
        let edges = Arc::new(EdgeTable::new(Arc::clone(&backend), depth)?);
        let movers = Movers::start(config.movers, depth);
        Ok(Self { backend, streams, depth, edges, movers, stages: Mutex::new(Vec::new()) })
    }

    /// The pipeline depth: how many slots are in flight (2, or 1).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// The edge table (per-slot edges have `depth` instances).
    pub fn edges(&self) -> &Arc<EdgeTable<B>> {
        &self.edges
    }

    /// The stream named `name`.
    ///
    /// # Errors
    /// [`Error::UnknownStream`].
    pub fn stream(&self, name: &'static str) -> Result<&Stream<B>> {
        self.streams.iter().find(|s| s.name == name).ok_or(Error::UnknownStream { name })
    }

    /// Runs one stage's payload on this thread (payloads enqueue device work or host
    /// tasks on streams), inside an NVTX range, and meters it. Stages run in the order
    /// this is called.
    ///
    /// # Errors
    /// Whatever the payload returns.
    pub fn run_stage<R>(
        &self,
        stage: &'static str,
        slot: usize,
        payload: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        let _range = trace::range(stage, Some(slot));
        let start = Instant::now();
        let out = payload();
        let took = start.elapsed();
        let mut stages = lock(&self.stages);
        match stages.iter_mut().find(|s| s.name == stage) {
            Some(s) => {
                s.runs += 1;
                s.time += took;
            }
            None => stages.push(StageStats { name: stage, runs: 1, time: took }),
        }
        out
    }

    /// Queues a data-movement job for `slot` on the workers (oldest first). The slot's
    /// previous job is joined first, so a slot is never refilled while its last move runs.
    ///
    /// # Errors
    /// The previous job's error (the new job is then not queued); [`Error::SlotOutOfRange`];
    /// [`Error::ShutDown`].
    pub fn submit_move(
        &self,
        slot: usize,
        job: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<()> {
        self.movers.join_slot(slot)?;
        lock(&self.movers.slots.0)[slot].pending = true;
        if self.movers.queue.push(MoveJob { slot, run: Box::new(job) }).is_err() {
            lock(&self.movers.slots.0)[slot].pending = false;
            return Err(Error::ShutDown);
        }
        Ok(())
    }

    /// Blocks until `slot`'s move job (if any) has finished.
    ///
    /// # Errors
    /// The job's error; [`Error::SlotOutOfRange`].
    pub fn join_move(&self, slot: usize) -> Result<()> {
        self.movers.join_slot(slot)
    }

    /// Blocks until every stream has drained.
    ///
    /// # Errors
    /// The first error any stream reported.
    pub fn synchronize_all(&self) -> Result<()> {
        let mut first = Ok(());
        for s in &self.streams {
            if let Err(e) = self.backend.synchronize(&s.raw)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Cumulative stage times, in first-run order.
    pub fn stage_stats(&self) -> Vec<StageStats> {
        lock(&self.stages).clone()
    }

    /// Teardown, in the order that keeps counters monotonic: join the movers (no late
    /// publish from a worker), drain every stream, then release every pool, then check the
    /// edge table.
    pub fn shutdown(mut self, pools: &[&dyn Releasable]) -> TeardownReport {
        let mut first_error = self.movers.stop();
        if let Err(e) = self.synchronize_all() {
            first_error.get_or_insert(e);
        }
        for p in pools {
            if let Err(e) = p.release_all() {
                first_error.get_or_insert(e);
            }
        }
        TeardownReport {
            findings: self.edges.teardown_findings(),
            edges: self.edges.stats(),
            first_error,
        }
    }
}

impl<B: Backend> Drop for Scheduler<B> {
    fn drop(&mut self) {
        // Idempotent: after shutdown the queue is closed and the workers are gone.
        let _ = self.movers.stop();
    }
}
