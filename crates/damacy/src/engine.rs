//! The seam between the facade and the engines that execute planned batches.
//!
//! The facade's threads (feeder, coordinator, decode workers) and `pop` are the same for
//! every engine. The coordinator prepares each batch ([`crate::prepare`]) and hands it,
//! in push order, to the pipeline's [`Engine`]; the engine puts one [`Pending`] per batch,
//! in the same order, into the [`Output`] queue; `pop` takes the oldest and has it
//! [`Deliver`]ed into a [`Batch`]. Engines run work on the shared decode workers through
//! [`Job`]s. `crate::backend` chooses the engine.
//!
//! Engines live in module folders of this crate rather than in crates of their own: both
//! build on the facade's `Config`, `Error`, `Batch` and stats types, and the interface is
//! internal (no third engine is meant to be plugged in from outside), so crates would only
//! move those types one layer down without decoupling anything.

pub(crate) mod host;

pub(crate) mod cuda;

pub(crate) mod read_ahead;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use planner::{ArrayEntry, BatchPlan, PlanLimits};
use zarr::{ChunkRepr, DataType};

use crate::batch::{Batch, SampleInfo, Tensor};
use crate::cast;
use crate::config::{Config, OnError, OutDtype};
use crate::error::{Error, Result, SampleError};
use crate::fault::Faults;
use crate::stats::{StatCounters, Stats};

/// Locks `m`, taking the data of a poisoned lock: a panicking thread must not turn every
/// later call into a panic (each engine thread contains its panics; see its loop).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first of a pipeline's threads that panicked, with its message. Once set, the
/// pipeline is dead: dispatches to the CUDA engine fail with it, and so does every `pop`
/// once the batches before it are out.
#[derive(Debug, Default)]
pub(crate) struct Fatal(Mutex<Option<(&'static str, String)>>);

impl Fatal {
    /// The recorded panic as an error, if a thread panicked.
    pub(crate) fn error(&self) -> Option<Error> {
        lock(&self.0)
            .as_ref()
            .map(|(thread, message)| Error::EnginePanicked { thread, message: message.clone() })
    }

    fn record(&self, thread: &'static str, message: &str) {
        lock(&self.0).get_or_insert_with(|| (thread, message.to_owned()));
    }
}

/// Runs the loop of the pipeline thread `thread`, containing a panic: instead of ending
/// the thread silently (a `pop` would then see the end of the stream, or wait forever),
/// the panic is recorded in `fatal` and returned as `EnginePanicked`, for the caller to
/// wake whatever waits on the thread.
///
/// # Errors
/// `EnginePanicked` naming `thread` and the panic's message when `f` panicked.
pub(crate) fn contain<T>(thread: &'static str, fatal: &Fatal, f: impl FnOnce() -> T) -> Result<T> {
    // Unwind safety: after a panic, what `f` touched is only dropped or reported, and every
    // lock of the pipeline tolerates poisoning (`lock`).
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "<not a string>".to_owned()
        };
        fatal.record(thread, &message);
        Error::EnginePanicked { thread, message }
    })
}

/// Per-array facts the jobs need, computed once per batch.
#[derive(Debug)]
pub(crate) struct ArrayFacts {
    pub repr: ChunkRepr,
    /// The fill value cast to the output dtype.
    pub fill_out: Vec<u8>,
}

impl ArrayFacts {
    pub(crate) fn new<L>(entry: &ArrayEntry<L>, out: OutDtype) -> Self {
        let meta = &entry.meta;
        Self {
            repr: ChunkRepr {
                shape: entry.geometry.chunk_shape.clone(),
                data_type: meta.data_type,
                fill_value: meta.fill_value,
            },
            fill_out: cast::cast_fill(&meta.fill_value, meta.data_type, out),
        }
    }
}

/// What a delivered batch needs whatever engine built it.
#[derive(Debug)]
pub(crate) struct BatchMeta {
    pub id: u64,
    pub infos: Vec<SampleInfo>,
    /// The output element type (`Float32` for `F32`, the source type for `Native`).
    pub element: DataType,
    /// Bytes of one sample in the output dtype.
    pub sample_bytes: usize,
    /// Per batch position, the array's fill value cast to the output dtype (zeros for a
    /// sample whose metadata could not be read).
    pub fills: Vec<Vec<u8>>,
    /// Samples that failed before planning: (batch position, error).
    pub early: Vec<(usize, SampleError)>,
    /// The plan's byte and voxel counts and its read count, added to the pipeline's
    /// counters when the batch is delivered (not when it is planned: batches planned
    /// ahead of the caller would otherwise count in a window they are not delivered in).
    pub plan_stats: planner::PlanStats,
    pub reads: u64,
}

/// Batches ready for an engine, planned as one (`Config::batches_per_plan`; one batch
/// unless the engine asks for more): their samples, their arrays and the plan.
#[derive(Debug)]
pub(crate) struct Planned {
    /// The plan's batches as one: `id` is the first batch's, `infos` (and every batch
    /// position below) run over all their samples, `per_batch` at a time.
    pub meta: BatchMeta,
    /// Samples of each batch the plan covers (the last may have fewer).
    pub per_batch: usize,
    /// Batches of the plan (`meta.infos` split `per_batch` at a time) that failed as a
    /// whole before any engine work (their shapes, or a planning error under
    /// `OnError::Fail`): index among the plan's batches, and the error `pop` returns for
    /// it. Their samples are not planned.
    pub failed: Vec<(usize, Error)>,
    pub arrays: Vec<ArrayEntry>,
    pub facts: Vec<ArrayFacts>,
    pub plan: BatchPlan,
    /// Batch position of each planned sample (samples that failed to resolve are not
    /// planned, so plan indices and batch positions differ).
    pub positions: Vec<usize>,
    /// The decoded-chunk cache entries of the plan's `Cached` chunks (indexed by their
    /// `hit`), pinned until the batch's jobs are done.
    pub hits: Vec<crate::decoded_cache::CachePin>,
    /// The decoded-chunk cache entries this batch decodes for (filled by its read jobs).
    pub claims: crate::decoded_cache::Claims,
}

impl BatchMeta {
    /// Splits the meta of batches planned as one (see [`Planned::meta`]) into one per
    /// batch, `per_batch` samples each: ids count up from the first, sample errors and
    /// fills go to their batch (positions made the batch's own), and the plan's counts
    /// are shared out by samples (their sum is the whole's).
    pub(crate) fn split(self, per_batch: usize) -> Vec<BatchMeta> {
        let per_batch = per_batch.max(1);
        let total = self.infos.len();
        if total <= per_batch {
            return vec![self];
        }
        let BatchMeta { id, infos, element, sample_bytes, fills, early, plan_stats, reads } = self;
        let parts = total.div_ceil(per_batch);
        let mut out: Vec<BatchMeta> = Vec::with_capacity(parts);
        let mut infos = infos.into_iter();
        let mut fills = fills.into_iter();
        let mut taken = (planner::PlanStats::default(), 0u64);
        for j in 0..parts {
            let len = per_batch.min(total - j * per_batch);
            let upto = (j * per_batch + len) as u64;
            // Each batch's share of a count: what is due up to its last sample, less what
            // earlier batches took (so the shares sum to the count exactly).
            let share = |c: u64, before: u64| {
                ((u128::from(c) * u128::from(upto) / total as u128) as u64).saturating_sub(before)
            };
            let due = plan_stats.zip_with(&taken.0, share);
            let r = share(reads, taken.1);
            taken = (taken.0.zip_with(&due, u64::saturating_add), taken.1 + r);
            out.push(BatchMeta {
                id: id + j as u64,
                infos: infos.by_ref().take(len).collect(),
                element,
                sample_bytes,
                fills: fills.by_ref().take(len).collect(),
                early: Vec::new(),
                plan_stats: due,
                reads: r,
            });
        }
        for (pos, e) in early {
            if let Some(b) = out.get_mut(pos / per_batch) {
                b.early.push((pos % per_batch, e));
            }
        }
        out
    }
}

/// The output-queue entries of a plan's batches, in order: a batch that failed before
/// planning (`failed`: index among the plan's batches, error) as its error, every other
/// as `ready` makes it from the batch's first position in the plan and its own meta
/// ([`BatchMeta::split`]).
pub(crate) fn plan_entries(
    meta: BatchMeta,
    per_batch: usize,
    failed: Vec<(usize, Error)>,
    mut ready: impl FnMut(usize, BatchMeta) -> Pending,
) -> Vec<Pending> {
    let per_batch = per_batch.max(1);
    let mut failed = failed.into_iter().peekable();
    let metas = meta.split(per_batch).into_iter().enumerate();
    metas
        .map(|(j, meta)| match failed.next_if(|(b, _)| *b == j) {
            Some((_, e)) => Pending::Failed(e),
            None => ready(j * per_batch, meta),
        })
        .collect()
}

/// The coordinator's output, one per plan (of one batch or more), in push order.
#[derive(Debug)]
pub(crate) enum Ordered {
    Planned(Box<Planned>),
    /// One batch that failed before any engine work (shape, resolution, planning).
    Failed(Error),
}

/// A batch an engine has taken on: `pop` turns it into the caller's [`Batch`].
pub(crate) trait Deliver: Send {
    /// Waits for the batch to be complete, applies the error policy and builds the
    /// handle.
    ///
    /// # Errors
    /// The first failing sample under `OnError::Fail`; engine failures.
    fn deliver(self: Box<Self>, ctx: &DeliverCtx<'_>) -> Result<Batch>;
}

/// An entry of the output queue.
pub(crate) enum Pending {
    Ready(Box<dyn Deliver>),
    Failed(Error),
}

/// What [`Deliver::deliver`] may use of the pipeline.
#[derive(Debug)]
pub(crate) struct DeliverCtx<'a> {
    pub cfg: &'a Config,
    pub stats: &'a StatCounters,
}

impl DeliverCtx<'_> {
    /// Applies the error policy to a batch's sample errors (batch positions): sorted, one
    /// per sample. Under `OnError::Fail` the first becomes the batch's error; under
    /// `OnError::Fill` they are returned for the engine to fill and list.
    ///
    /// # Errors
    /// `Error::Sample` naming the first failing sample under `OnError::Fail`.
    pub(crate) fn policy(
        &self,
        infos: &[SampleInfo],
        mut errors: Vec<(usize, SampleError)>,
    ) -> Result<Vec<(usize, SampleError)>> {
        errors.sort_by_key(|(pos, _)| *pos);
        errors.dedup_by_key(|(pos, _)| *pos);
        if errors.is_empty() || self.cfg.on_error == OnError::Fill {
            return Ok(errors);
        }
        let (pos, source) = errors.swap_remove(0);
        let Some(info) = infos.get(pos) else {
            return Err(Error::Closed);
        };
        Err(Error::Sample { index: info.index, uri: info.uri.clone(), source: Box::new(source) })
    }

    /// Counts a finished batch and builds its handle over `storage`; `errors` are the
    /// filled samples (batch positions).
    pub(crate) fn batch(
        &self,
        meta: BatchMeta,
        storage: Box<dyn Tensor>,
        errors: Vec<(usize, SampleError)>,
    ) -> Batch {
        let n = meta.infos.len() as u64;
        let mut shape = vec![n];
        shape.extend_from_slice(&self.cfg.sample_shape);
        let bytes = meta.sample_bytes * meta.infos.len();
        self.stats.count_delivered(n, bytes as u64);
        self.stats.add_plan(&meta.plan_stats, meta.reads);
        let errors = errors.into_iter().map(|(pos, e)| (meta.infos[pos].index, e)).collect();
        Batch::new(meta.id, shape, self.cfg.dtype, meta.element, meta.infos, errors, storage)
    }
}

/// The output queue: batches in push order, and whether more will come.
#[derive(Default)]
pub(crate) struct Output {
    state: Mutex<OutputState>,
    cv: Condvar,
}

#[derive(Default)]
struct OutputState {
    queue: VecDeque<Pending>,
    /// Nothing more will be queued.
    done: bool,
}

/// What [`Output::next`] found.
pub(crate) enum Next {
    Batch(Pending),
    /// The queue is closed and empty.
    Done,
    /// The deadline passed first.
    TimedOut,
}

impl Output {
    /// Appends a batch.
    pub(crate) fn push(&self, p: Pending) {
        lock(&self.state).queue.push_back(p);
        self.cv.notify_all();
    }

    /// Marks the end: once the queue drains, [`Output::next`] returns `Done`.
    pub(crate) fn close(&self) {
        lock(&self.state).done = true;
        self.cv.notify_all();
    }

    /// The oldest batch, waiting until one is queued, the queue is done, or `deadline`.
    pub(crate) fn next(&self, deadline: Option<std::time::Instant>) -> Next {
        let mut st = lock(&self.state);
        loop {
            if let Some(p) = st.queue.pop_front() {
                return Next::Batch(p);
            }
            if st.done {
                return Next::Done;
            }
            st = match deadline {
                None => self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = std::time::Instant::now();
                    if now >= d {
                        return Next::TimedOut;
                    }
                    self.cv
                        .wait_timeout(st, d - now)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0)
                }
            };
        }
    }

    /// Drops every queued batch (their buffers go back as they drop).
    pub(crate) fn clear(&self) {
        let drained: Vec<Pending> = lock(&self.state).queue.drain(..).collect();
        drop(drained);
    }
}

/// What a decode worker lends a job: the store, the counters and its reusable buffers.
pub(crate) struct Worker<'a> {
    pub store: &'a dyn store::Store,
    pub stats: &'a StatCounters,
    pub scratch: &'a mut Scratch,
}

/// Work for the decode workers (one read op, or a run of fill chunks).
pub(crate) trait Job: Send {
    /// Runs the job; it reports its own outcome (errors, completion) to its batch.
    fn run(self: Box<Self>, w: &mut Worker<'_>);
}

/// The decode workers' queue.
pub(crate) type JobTx = crossbeam_channel::Sender<Box<dyn Job>>;

/// What an engine is given at construction.
#[derive(Clone)]
pub(crate) struct EngineCtx {
    pub output: Arc<Output>,
    pub stats: Arc<StatCounters>,
    pub jobs: JobTx,
    /// Where a thread of the engine records its panic (shared with the pipeline).
    pub fatal: Arc<Fatal>,
    /// Faults armed by a test.
    pub faults: Arc<Faults>,
    /// Where the engine submits object-store reads ahead of its decode jobs.
    pub read_ahead: Arc<read_ahead::ReadAhead>,
    /// The decoded-chunk cache (`Config::chunk_cache_bytes`), when one is configured.
    pub chunk_cache: Option<crate::decoded_cache::DecodedCache>,
}

/// An engine: takes planned batches in push order and delivers them through the output
/// queue in the same order.
pub(crate) trait Engine: Send + Sync {
    /// The planner limits this engine's buffers impose.
    fn limits(&self, cfg: &Config) -> PlanLimits;

    /// Batches this engine wants planned as one (`Config::batches_per_plan`): a
    /// [`Planned`] it is given covers at most this many.
    fn batches_per_plan(&self) -> usize {
        1
    }

    /// Takes the next plan in push order; blocks while the engine has no room (a free
    /// batch buffer). Puts exactly one [`Pending`] per batch of it into the output queue,
    /// in order.
    ///
    /// # Errors
    /// `Closed` on teardown, `EnginePanicked` once a thread of the pipeline panicked (the
    /// batch was not taken; the coordinator stops).
    fn dispatch(&self, batch: Ordered) -> Result<()>;

    /// No more batches come: the engine closes the output queue once the last one is in.
    fn end_of_input(&self);

    /// Teardown: wakes every wait inside the engine; later dispatches fail with `Closed`.
    fn shutdown(&self);

    /// Joins the engine's own threads (after `end_of_input`).
    fn join(&self);

    /// Adds the engine's own figures to a stats snapshot.
    fn add_stats(&self, _stats: &mut Stats) {}

    /// Which engine this is.
    fn running(&self) -> Running;
}

/// Which engine a pipeline runs, and why ([`crate::Pipeline::backend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Running {
    /// The host engine, as configured (`Backend::Host`).
    Host,
    /// The host engine, because `Backend::Auto` found no CUDA here.
    HostFallback { reason: crate::error::Unavailable },
    /// The CUDA engine on `device`; `nvcomp` says whether nvCOMP decodes zstd chunks on the
    /// device (otherwise CPU threads decode every chunk and upload it), `gds` whether
    /// zstd chunks of local files are read with GPUDirect Storage (`Config::gds`).
    Cuda { device: usize, nvcomp: bool, gds: bool },
    /// The CUDA engine on the simulated device (`Backend::Simulated`, for tests): host
    /// threads as streams, host memory as device memory, the kernels' host twins.
    #[doc(hidden)]
    Simulated,
}

impl std::fmt::Display for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Running::Host => f.write_str("host engine"),
            Running::HostFallback { reason } => write!(f, "host engine (Auto: {reason})"),
            Running::Cuda { device, nvcomp, gds } => {
                write!(f, "CUDA engine on device {device}, ")?;
                f.write_str(if *nvcomp {
                    "nvCOMP decode"
                } else {
                    "CPU decode (nvCOMP not loaded)"
                })?;
                f.write_str(if *gds { ", GPUDirect Storage reads" } else { "" })
            }
            Running::Simulated => f.write_str("CUDA engine on the simulated device"),
        }
    }
}

/// A worker's reusable buffers.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    staging: Vec<u8>,
    decoded: Vec<u8>,
}

impl Scratch {
    /// The buffer a CUDA wave job reads into (its staging is pinned memory of its own).
    pub(crate) fn read_buf(&mut self) -> &mut Vec<u8> {
        &mut self.staging
    }

    /// Gives back capacity beyond twice `cap`, so one unusually large read does not pin
    /// its memory for the life of the worker.
    pub(crate) fn trim(&mut self, cap: usize) {
        for v in [&mut self.staging, &mut self.decoded] {
            if v.capacity() > cap.saturating_mul(2) {
                v.truncate(cap);
                v.shrink_to(cap);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Fatal, contain};
    use crate::error::Error;

    fn panicked(r: crate::error::Result<()>) -> (&'static str, String) {
        match r {
            Err(Error::EnginePanicked { thread, message }) => (thread, message),
            other => panic!("expected EnginePanicked, got {other:?}"),
        }
    }

    #[test]
    fn contain_turns_a_panic_into_an_error_naming_the_thread_and_message() {
        let fatal = Fatal::default();
        assert_eq!(contain("t0", &fatal, || 7).expect("no panic"), 7);
        assert!(fatal.error().is_none(), "nothing recorded without a panic");
        let (thread, message) = panicked(contain("t1", &fatal, || panic!("a str payload")));
        assert_eq!((thread, message.as_str()), ("t1", "a str payload"));
        let n = 3;
        let (thread, message) = panicked(contain("t2", &fatal, || panic!("a String payload {n}")));
        assert_eq!((thread, message.as_str()), ("t2", "a String payload 3"));
        let r = contain("t3", &fatal, || std::panic::panic_any(42u32));
        assert_eq!(panicked(r), ("t3", "<not a string>".to_owned()));
        // The first panic is the pipeline's: later ones do not replace it.
        let (thread, message) = panicked(fatal.error().map_or(Ok(()), Err));
        assert_eq!((thread, message.as_str()), ("t1", "a str payload"));
    }
}
