//! The host engine: executes a [`planner::BatchPlan`] on CPU threads.
//!
//! Work is split into jobs of one read op each: a worker reads the op's bytes through the
//! store (for an object store the read was submitted when the job was queued, and the
//! worker waits for it: [`super::read_ahead`]), decodes every chunk of the op's group
//! with `zarr::decode_chunk` (once, however many samples use the chunk), side by side up
//! to `GATHER_BYTES` at a time, and gathers their placements into the batch buffer with
//! the cast, row by row: the pieces of an output row, sorted to be neighbours, are put
//! side by side in a row buffer and written at once (plan buffers larger than the caches
//! with streaming stores over whole lines); the cast is chosen once per band of pieces,
//! `Native` pieces are copied inline, and a conversion casts the row's staged source
//! elements a run at a time. Fill chunks form their own jobs, and so do hits in
//! the decoded-chunk cache ([`crate::decoded_cache`]): those are gathered the same way
//! from the pinned cached bytes, whole samples a job, and a chunk decoded by a read job
//! is offered to the cache for later batches. Each worker owns a staging buffer and a
//! decode buffer, reused across jobs, so memory is fixed by `decode_threads ×
//! (max_read_op_bytes + GATHER_BYTES + max_chunk_decompressed_bytes)` plus the batch
//! buffers.
//!
//! Concurrent jobs write disjoint voxels of one batch buffer: the planner guarantees that
//! every output voxel is produced by exactly one placement (a property it proptests), which
//! is what makes the shared writes below sound.

mod slots;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use planner::{ArrayEntry, BatchPlan, ChunkSource, PlanLimits};

use crate::batch::{Batch, Tensor};
use crate::cast;
use crate::config::{Config, OutDtype};
use crate::decoded_cache::{self, CachePin, Claims, Decoded, DecodedCache};
use crate::engine::read_ahead::{Ahead, ReadAhead, read_op};
use crate::engine::{
    ArrayFacts, BatchMeta, Deliver, DeliverCtx, Engine, EngineCtx, Job, JobTx, Ordered, Output,
    Pending, Planned, Running, Scratch, Worker, lock, plan_entries,
};
use crate::error::{Error, Result, SampleError};
use crate::stats::StatCounters;

use slots::{OutBuf, SlotLease, Slots};

/// The host engine of one pipeline: its batch buffers and the way to the workers.
pub(crate) struct HostEngine {
    slots: Arc<Slots>,
    /// Batches a plan covers at most (`Config::batches_per_plan`): each buffer holds
    /// that many side by side.
    plan_batches: usize,
    /// Decode threads (how many jobs a plan needs to keep them busy).
    threads: usize,
    output: Arc<Output>,
    /// Dropped at the end of input, so the workers see their queue close.
    jobs: Mutex<Option<JobTx>>,
    sample_shape: Vec<u64>,
    out_dtype: OutDtype,
    read_ahead: Arc<ReadAhead>,
    chunk_cache: Option<DecodedCache>,
}

impl HostEngine {
    /// Allocates `batches_in_flight` (resolved) batch buffers sized for the output dtype (`Native`
    /// takes the widest source type, as the arrays' types are not known yet).
    ///
    /// # Errors
    /// `ConfigOverflow` when a batch does not fit the address space.
    pub(crate) fn new(cfg: &Config, ctx: EngineCtx) -> Result<Self> {
        let plan_batches = cfg.effective_batches_per_plan();
        let batch_bytes = cfg
            .batch_elements()?
            .checked_mul(cfg.dtype.max_size() as u64 * plan_batches as u64)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or(Error::ConfigOverflow { knob: "sample_shape" })?;
        Ok(Self {
            slots: Arc::new(Slots::new(cfg.effective_batches_in_flight(false), batch_bytes)?),
            plan_batches,
            threads: cfg.effective_decode_threads(),
            output: ctx.output,
            jobs: Mutex::new(Some(ctx.jobs)),
            sample_shape: cfg.sample_shape.clone(),
            out_dtype: cfg.dtype,
            read_ahead: ctx.read_ahead,
            chunk_cache: ctx.chunk_cache,
        })
    }

    /// Leases a batch buffer and queues the plan's jobs; returns one entry per batch of
    /// the plan, in order.
    fn start(&self, p: Planned) -> Result<Vec<Pending>> {
        let lease = self.slots.acquire(p.meta.id)?;
        let out = self.slots.out_buf(&lease);
        // Held by each of the plan's tensors and by its work (so by every queued job): the
        // buffer goes back only once nothing can write or read it.
        let hold = Arc::new(SlotHold { lease: Some(lease), slots: Arc::clone(&self.slots) });
        // Ops read ahead stay whole: one request each.
        let split = |r: usize| !self.read_ahead.wants(&p.plan, r);
        let (hit_pieces, hit_jobs) = hit_pieces(&p.plan);
        let jobs = BatchWork::<()>::jobs(&p.plan, self.threads, &split, hit_jobs.len());
        // Buffers larger than any cache are written with streaming stores where whole
        // lines are written at once (`cast::copy_out`).
        let stream = out.len() >= STREAM_MIN_BYTES;
        let work = Arc::new(BatchWork {
            scratch_cap: BatchWork::<()>::scratch_cap(&p.plan),
            arrays: p.arrays,
            facts: p.facts,
            plan: p.plan,
            sample_shape: self.sample_shape.clone(),
            out_dtype: self.out_dtype,
            sample_bytes: p.meta.sample_bytes,
            out,
            positions: p.positions,
            progress: Progress::new(jobs.len()),
            hits: p.hits,
            hit_pieces,
            hit_jobs,
            stream,
            claims: Mutex::new(p.claims),
            cache: self.chunk_cache.clone(),
            _hold: Arc::clone(&hold),
        });
        let Some(tx) = lock(&self.jobs).clone() else {
            return Err(Error::Closed);
        };
        for kind in jobs {
            // An object-store read is submitted now and its job only waits for the bytes
            // (`read_ahead`); the job is queued before the next read is issued.
            // (Only ops not read ahead are cut into parts, so an op read ahead is whole.)
            let ahead = match kind {
                JobKind::Read { read, .. } => self.read_ahead.issue(&work.plan, read),
                JobKind::Cached(_) | JobKind::Fill(_) => None,
            };
            let job = HostJob { work: Arc::clone(&work), kind, ahead };
            if tx.send(Box::new(job)).is_err() {
                return Err(Error::Closed);
            }
        }
        let sample_bytes = p.meta.sample_bytes;
        let out = plan_entries(p.meta, p.per_batch, p.failed, |first, meta| {
            let tensor = HostTensor {
                hold: Arc::clone(&hold),
                offset: first * sample_bytes,
                bytes: sample_bytes * meta.infos.len(),
            };
            Pending::Ready(Box::new(HostPending { meta, work: Arc::clone(&work), tensor, first }))
        });
        Ok(out)
    }
}

impl Engine for HostEngine {
    fn limits(&self, cfg: &Config) -> PlanLimits {
        PlanLimits {
            max_read_op_bytes: cfg.max_read_op_bytes,
            max_chunk_decompressed_bytes: cfg.max_chunk_decompressed_bytes,
            merge_gap_bytes: cfg.merge_gap_bytes,
            ..PlanLimits::default()
        }
    }

    fn add_stats(&self, s: &mut crate::stats::Stats) {
        s.batches_in_flight = self.slots.count() as u64;
    }

    fn batches_per_plan(&self) -> usize {
        self.plan_batches
    }

    fn dispatch(&self, batch: Ordered) -> Result<()> {
        let pending = match batch {
            Ordered::Failed(e) => vec![Pending::Failed(e)],
            Ordered::Planned(p) => self.start(*p)?,
        };
        for p in pending {
            self.output.push(p);
        }
        Ok(())
    }

    fn end_of_input(&self) {
        lock(&self.jobs).take();
        self.output.close();
    }

    fn shutdown(&self) {
        self.slots.close();
        self.read_ahead.close();
    }

    fn join(&self) {}

    fn running(&self) -> Running {
        Running::Host
    }
}

/// A batch buffer shared by the batches of one plan: back to the pool when the last of
/// them (or the plan's work) lets go.
#[derive(Debug)]
struct SlotHold {
    lease: Option<SlotLease>,
    slots: Arc<Slots>,
}

impl Drop for SlotHold {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.slots.release(lease);
        }
    }
}

/// A host batch handed to the caller: its part of its plan's buffer.
#[derive(Debug)]
pub(crate) struct HostTensor {
    hold: Arc<SlotHold>,
    /// Where the batch starts in the buffer, and its bytes (the buffer may be larger: it
    /// is sized for the widest dtype).
    offset: usize,
    bytes: usize,
}

impl Tensor for HostTensor {
    fn host(&self) -> Option<&[u8]> {
        let lease = self.hold.lease.as_ref()?;
        self.hold.slots.bytes(lease).get(self.offset..self.offset + self.bytes)
    }
}

/// A host batch whose plan's jobs are queued.
struct HostPending {
    /// The batch's own meta (positions its own).
    meta: BatchMeta,
    work: Arc<BatchWork<()>>,
    tensor: HostTensor,
    /// The batch's first position in its plan.
    first: usize,
}

impl Deliver for HostPending {
    fn deliver(self: Box<Self>, ctx: &DeliverCtx<'_>) -> Result<Batch> {
        let HostPending { mut meta, work, tensor, first } = *self;
        let mut errors = std::mem::take(&mut meta.early);
        let mine = first..first + meta.infos.len();
        errors.extend(work.progress.wait().into_iter().filter_map(|(s, e)| {
            let pos = work.positions[s];
            mine.contains(&pos).then(|| (pos - first, e))
        }));
        // Under `Fail` the tensor drops with the error (the buffer goes back once the
        // plan's other batches let go too).
        let errors = ctx.policy(&meta.infos, errors)?;
        if !errors.is_empty() {
            // `sample_shape` was validated at construction, so this box always exists.
            let whole = zarr::Aabb::from_shape(&ctx.cfg.sample_shape).map_err(|_| {
                Error::ConfigValue { knob: "sample_shape", value: 0, expected: "a non-empty shape" }
            })?;
            for (pos, _) in &errors {
                work.fill(first + *pos, &whole, &meta.fills[*pos]);
            }
        }
        Ok(ctx.batch(meta, Box::new(tensor), errors))
    }
}

/// One job of a host batch.
struct HostJob {
    work: Arc<BatchWork<()>>,
    kind: JobKind,
    /// The read op's bytes in flight, for an object store.
    ahead: Option<Ahead>,
}

impl Job for HostJob {
    fn run(self: Box<Self>, w: &mut Worker<'_>) {
        self.work.run(self.kind, self.ahead, w.store, w.scratch, w.stats);
    }
}

/// Everything the jobs of one batch share.
#[derive(Debug)]
pub(crate) struct BatchWork<L> {
    pub arrays: Vec<ArrayEntry<L>>,
    pub facts: Vec<ArrayFacts>,
    pub plan: BatchPlan,
    pub sample_shape: Vec<u64>,
    pub out_dtype: OutDtype,
    /// Bytes of one sample in the output dtype.
    pub sample_bytes: usize,
    pub out: OutBuf,
    /// Batch position of each planned sample (samples that failed to resolve are not
    /// planned, so plan indices and batch positions differ).
    pub positions: Vec<usize>,
    /// See [`BatchWork::scratch_cap`].
    pub scratch_cap: usize,
    pub(crate) progress: Progress,
    /// The cached chunks the plan's `Cached { hit }` sources name, pinned until the
    /// batch's jobs are done (the work is dropped after delivery).
    pub hits: Vec<CachePin>,
    /// The placements of the cache hits, by sample and then by box (`hit_pieces`), and
    /// the ranges of them each `Cached` job gathers (whole samples).
    pub(crate) hit_pieces: Vec<HitPiece>,
    pub(crate) hit_jobs: Vec<std::ops::Range<usize>>,
    /// Whole output lines are written with streaming stores (`cast::copy_out`).
    pub stream: bool,
    /// Cache entries this batch claimed: each read job fills those of its chunks, and
    /// drops (abandons) the ones it could not decode, waking any later batch waiting.
    pub claims: Mutex<Claims>,
    /// Where decoded chunks are offered for later batches.
    pub cache: Option<DecodedCache>,
    /// The buffer `out` views, held until the work is dropped (its jobs ran).
    _hold: Arc<SlotHold>,
}

/// Completion tracking of one batch: jobs left, errors seen.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    remaining: AtomicUsize,
    state: Mutex<ProgressState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct ProgressState {
    done: bool,
    /// (sample index in the batch, error), in discovery order.
    errors: Vec<(usize, SampleError)>,
}

impl Progress {
    pub(crate) fn new(jobs: usize) -> Self {
        let p = Progress::default();
        p.remaining.store(jobs, Ordering::Relaxed);
        if jobs == 0 {
            p.state.lock().unwrap_or_else(|e| e.into_inner()).done = true;
        }
        p
    }

    fn fail(&self, samples: impl IntoIterator<Item = usize>, err: &SampleError) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for s in samples {
            st.errors.push((s, err.clone()));
        }
    }

    fn finish_job(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.done = true;
            self.cv.notify_all();
        }
    }

    /// Blocks until every job finished; returns the errors by sample (each batch of a
    /// plan asks: every caller gets them all).
    pub(crate) fn wait(&self) -> Vec<(usize, SampleError)> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !st.done {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.errors.clone()
    }
}

/// One unit of work.
#[derive(Debug, Clone, Copy)]
pub(crate) enum JobKind {
    /// Read op `read`'s chunks `chunks` (indexes into its group; the whole group, or a
    /// part of it: [`BatchWork::jobs`]), read as one span of the op.
    Read { read: usize, chunks: (u32, u32) },
    /// The cache-hit placements of `hit_jobs[n]`: whole samples, gathered row by row.
    Cached(usize),
    /// Fill chunks `fills.start + n*FILL_JOB .. ` (a slice of the fill range).
    Fill(usize),
}

/// Fill chunks per fill job.
const FILL_JOB: usize = 64;

/// Output voxels a `Cached` job gathers at least (whole samples; the last job of a plan
/// may have fewer): about a millisecond of copying, so that small samples do not each
/// cost a job.
const CACHED_JOB_VOXELS: u64 = 1 << 20;

/// Plan buffers from this size are written with streaming stores: larger than the
/// caches, so what a scatter writes is evicted before the consumer reads it anyway.
const STREAM_MIN_BYTES: usize = 64 << 20;

/// One cache-hit placement: plan sample, chunk index in the plan, placement index in the
/// chunk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HitPiece {
    sample: usize,
    chunk: usize,
    placement: usize,
}

/// The order in which placements are gathered: by sample, then by the outer corner and
/// extent of their box in the sample, then by where they start on the last axis, so that
/// the pieces of one output row are neighbours.
fn piece_order(a: &planner::Placement, b: &planner::Placement) -> std::cmp::Ordering {
    let r = a.in_sample.lo.len().min(b.in_sample.lo.len()).saturating_sub(1);
    let (la, ha, lb, hb) = (&a.in_sample.lo, &a.in_sample.hi, &b.in_sample.lo, &b.in_sample.hi);
    (a.sample, la.len(), &la[..r], &ha[..r], la.get(r)).cmp(&(
        b.sample,
        lb.len(),
        &lb[..r],
        &hb[..r],
        lb.get(r),
    ))
}

/// A placement to gather, the decoded chunk it takes its voxels from, and its array.
type Piece<'a> = (&'a planner::Placement, &'a [u8], &'a ArrayFacts);

/// One band's row walk (`BatchWork::gather_band`): the first piece's rows (and the
/// source and output dtypes), each piece's bytes, first source element, first byte in
/// the row buffer and bytes in the source and in the row buffer, the runs of touching
/// pieces (byte ranges of the row buffer), and the sample's first byte in the batch
/// buffer.
struct BandRows<'a> {
    sc: cast::Scatter<'a>,
    first_corner: u64,
    pieces: &'a [(&'a [u8], u64, usize, usize, usize)],
    runs: &'a [std::ops::Range<usize>],
    base: usize,
}

/// Decoded bytes a read job holds before it gathers them into the batch: its chunks are
/// decoded side by side, so that the pieces of an output row from chunks of one read
/// are written together.
const GATHER_BYTES: usize = 8 << 20;

/// The plan's cache-hit placements in [`piece_order`], and the ranges of them each
/// `Cached` job gathers: whole samples, at least `CACHED_JOB_VOXELS` a job. A cached
/// range past the plan's chunks (a bug) gets one job whose range is past the pieces, so
/// that the job fails the batch rather than leave its voxels unwritten.
fn hit_pieces(plan: &BatchPlan) -> (Vec<HitPiece>, Vec<std::ops::Range<usize>>) {
    let Some(cached) = plan.chunks.get(plan.cached.clone()) else {
        return (Vec::new(), std::iter::once(1..1).collect());
    };
    let mut pieces = Vec::new();
    for (chunk, c) in (plan.cached.start..).zip(cached) {
        for (placement, p) in c.placements.iter().enumerate() {
            pieces.push(HitPiece { sample: p.sample, chunk, placement });
        }
    }
    let placement = |h: &HitPiece| &plan.chunks[h.chunk].placements[h.placement];
    pieces.sort_by(|a, b| piece_order(placement(a), placement(b)));
    let mut jobs = Vec::new();
    let (mut start, mut voxels) = (0, 0u64);
    for (i, h) in pieces.iter().enumerate() {
        voxels = voxels.saturating_add(placement(h).in_sample.shape().iter().product());
        let sample_ends = pieces.get(i + 1).is_none_or(|n| n.sample != h.sample);
        if sample_ends && (voxels >= CACHED_JOB_VOXELS || i + 1 == pieces.len()) {
            jobs.push(start..i + 1);
            (start, voxels) = (i + 1, 0);
        }
    }
    (pieces, jobs)
}

impl<L> BatchWork<L> {
    /// The jobs of this plan: a job per read op, except that where the plan has fewer
    /// read ops than `2 * threads` the groups of the ops that `split` allows (read on the
    /// worker, not ahead) are cut into parts of consecutive chunks, each read as its own
    /// span, so that every thread has work: `many-arrays-8` plans read 8 shard files,
    /// and 8 jobs left half of 16 threads idle. Then `cached` jobs of cache hits and a
    /// job per `FILL_JOB` fills.
    pub(crate) fn jobs(
        plan: &BatchPlan,
        threads: usize,
        split: &dyn Fn(usize) -> bool,
        cached: usize,
    ) -> Vec<JobKind> {
        let fills = plan.fills.len().div_ceil(FILL_JOB);
        let want = 2 * threads.max(1);
        let parts =
            if plan.reads.len() < want { want.div_ceil(plan.reads.len().max(1)) } else { 1 };
        let mut jobs = Vec::with_capacity(plan.reads.len() * parts + cached + fills);
        for (read, op) in plan.reads.iter().enumerate() {
            let n = op.chunks.len();
            let per = if parts > 1 && split(read) { n.div_ceil(parts).max(1) } else { n.max(1) };
            let mut lo = 0;
            loop {
                let hi = (lo + per).min(n);
                jobs.push(JobKind::Read { read, chunks: (lo as u32, hi as u32) });
                lo = hi;
                if lo >= n {
                    break;
                }
            }
        }
        jobs.extend((0..cached).map(JobKind::Cached));
        jobs.extend((0..fills).map(JobKind::Fill));
        jobs
    }

    /// Runs one job with the worker's scratch buffers, then counts it done.
    pub(crate) fn run(
        &self,
        job: JobKind,
        ahead: Option<Ahead>,
        store: &dyn store::Store,
        scratch: &mut Scratch,
        stats: &StatCounters,
    ) {
        // A job counts as finished however it ends: a panic here must fail the batch,
        // not leave `pop` waiting forever for a job that will never finish.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job {
            JobKind::Read { read, chunks } => {
                let part = chunks.0 as usize..chunks.1 as usize;
                self.run_read(read, part.clone(), ahead, store, scratch, stats);
                self.abandon_claims(read, part);
            }
            JobKind::Cached(k) => {
                let t = Instant::now();
                self.run_cached(k);
                stats.assemble_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
            JobKind::Fill(k) => {
                let t = Instant::now();
                self.run_fill(k);
                stats.assemble_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
        }));
        if ran.is_err() {
            // The scratch buffers may be in any state; start them afresh.
            *scratch = Scratch::default();
            self.fail_all("decode worker");
            if let JobKind::Read { read, chunks } = job {
                self.abandon_claims(read, chunks.0 as usize..chunks.1 as usize);
            }
        }
        // Streaming stores are weakly ordered: fenced before the job counts as done (the
        // release that publishes the batch), however the job ended.
        if self.stream {
            cast::store_fence();
        }
        scratch.trim(self.scratch_cap);
        self.progress.finish_job();
    }

    /// Fails every sample of the batch with an internal error.
    fn fail_all(&self, stage: &'static str) {
        self.progress.fail(0..self.positions.len(), &SampleError::Internal { stage });
    }

    /// The largest read of `plan`, or its largest chunk plus `GATHER_BYTES` (what a read
    /// job decodes before it gathers): worker scratch beyond twice this is given back
    /// after each job.
    pub(crate) fn scratch_cap(plan: &BatchPlan) -> usize {
        let read = plan.reads.iter().map(|r| r.len).max().unwrap_or(0);
        let chunk = plan.chunks.iter().map(|c| c.decompressed_len()).max().unwrap_or(0);
        // A read job's decoded chunks: up to `GATHER_BYTES` and one more chunk.
        let decoded = chunk.saturating_add(GATHER_BYTES as u64);
        usize::try_from(read.max(decoded)).unwrap_or(usize::MAX)
    }

    /// Reads and decodes chunks `part` of read op `r`'s group (the whole op when `part`
    /// is the whole group, else the span from the part's first chunk to its last) and
    /// scatters them.
    fn run_read(
        &self,
        r: usize,
        part: std::ops::Range<usize>,
        ahead: Option<Ahead>,
        store: &dyn store::Store,
        scratch: &mut Scratch,
        stats: &StatCounters,
    ) {
        let plan = &self.plan;
        // A plan that refers past its own tables is a bug; the batch fails rather than
        // delivering whatever the buffer held before.
        let (Some(op), Some(whole)) = (plan.reads.get(r), plan.group(r)) else {
            return self.fail_all("plan");
        };
        let Some(group) = whole.get(part.clone()) else { return self.fail_all("plan") };
        let Some(file) = plan.files.get(op.file) else { return self.fail_all("plan") };
        let samples_of_group =
            || group.iter().flat_map(|c| c.placements.iter().map(|p| p.sample)).collect::<Vec<_>>();
        // The bytes read: the op, or the span of the part's chunks in it.
        let span = if group.len() == whole.len() {
            Some((0, op.len))
        } else {
            match (group.first().map(|c| c.source), group.last().map(|c| c.source)) {
                (
                    Some(ChunkSource::Copy { offset_in_read: lo, .. }),
                    Some(ChunkSource::Copy { offset_in_read, compressed_len, .. }),
                ) => {
                    offset_in_read.checked_add(compressed_len).map(|hi| (lo, hi.saturating_sub(lo)))
                }
                _ => return self.fail_all("plan"),
            }
        };
        let Some((skip, len)) =
            span.and_then(|(skip, len)| Some((skip, usize::try_from(len).ok()?)))
        else {
            self.progress.fail(
                samples_of_group(),
                &SampleError::Format(zarr::Error::Overflow { what: "read length" }),
            );
            return;
        };
        let t_io = Instant::now();
        let read = read_op(ahead, store, &file.key, op.offset + skip, len, &mut scratch.staging);
        stats.io_ns.fetch_add(t_io.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if let Err(e) = read {
            self.progress.fail(samples_of_group(), &SampleError::Store(e));
            return;
        }
        // The group's chunks are decoded side by side into `arena` (up to `GATHER_BYTES`
        // at a time), then gathered together: the pieces of an output row from chunks of
        // this read are written at once.
        let mut arena = std::mem::take(&mut scratch.decoded);
        let mut used: usize = 0;
        let mut held: Vec<(&planner::ChunkPlan, std::ops::Range<usize>, &ArrayFacts)> = Vec::new();
        let mut row = Vec::new();
        for chunk in group {
            let ChunkSource::Copy { offset_in_read, compressed_len, decompressed_len, .. } =
                chunk.source
            else {
                continue;
            };
            let a = chunk.array.index();
            let (Some(entry), Some(facts)) = (self.arrays.get(a), self.facts.get(a)) else {
                self.fail_all("plan");
                continue;
            };
            let lo = offset_in_read.wrapping_sub(skip) as usize;
            // The planner keeps every chunk inside its read (and a part's chunks inside its
            // span); `get` keeps a violation from becoming a panic.
            let Some(src) = scratch.staging.get(lo..lo.saturating_add(compressed_len as usize))
            else {
                self.fail_all("plan");
                continue;
            };
            let at = used;
            let end = at.saturating_add(decompressed_len as usize);
            if arena.len() < end {
                arena.resize(end, 0);
            }
            let t_dec = Instant::now();
            let decoded =
                zarr::decode_chunk(entry.chunk_codecs(), &facts.repr, src, &mut arena[at..end]);
            stats.decode_ns.fetch_add(t_dec.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if let Err(source) = decoded {
                let err = SampleError::Decode {
                    path: PathBuf::from(&*file.key),
                    chunk: chunk.chunk.clone(),
                    source,
                };
                self.progress.fail(chunk.placements.iter().map(|p| p.sample), &err);
                continue;
            }
            used = end;
            if let Some(cache) = &self.cache {
                let key = decoded_cache::key(&file.key, op.offset + offset_in_read, compressed_len);
                let value = || Decoded::Host(arena[at..end].to_vec().into_boxed_slice());
                let claim = lock(&self.claims).remove(&key);
                if let Some(claim) = claim {
                    claim.fill(value());
                } else if !cache.contains(&key) {
                    // Not claimed at planning (the cache was full of pinned entries then).
                    cache.insert(key, value(), (end - at) as u64);
                }
            }
            held.push((chunk, at..end, facts));
            if used >= GATHER_BYTES {
                self.gather_held(&held, &arena, &mut row, stats);
                held.clear();
                used = 0;
            }
        }
        self.gather_held(&held, &arena, &mut row, stats);
        scratch.decoded = arena;
    }

    /// Gathers the placements of chunks decoded side by side in `arena` (each with its
    /// byte range there) into the batch.
    fn gather_held(
        &self,
        held: &[(&planner::ChunkPlan, std::ops::Range<usize>, &ArrayFacts)],
        arena: &[u8],
        row: &mut Vec<u8>,
        stats: &StatCounters,
    ) {
        let t = Instant::now();
        let mut pieces: Vec<Piece<'_>> = Vec::new();
        for (chunk, range, facts) in held {
            let Some(bytes) = arena.get(range.clone()) else { return self.fail_all("plan") };
            pieces.extend(chunk.placements.iter().map(|p| (p, bytes, *facts)));
        }
        pieces.sort_by(|a, b| piece_order(a.0, b.0));
        self.gather(&pieces, row);
        stats.assemble_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Drops the claims of chunks `part` of read op `r`'s group that were not filled
    /// (their read or decode failed): the entries leave the cache and batches waiting on
    /// them wake.
    fn abandon_claims(&self, r: usize, part: std::ops::Range<usize>) {
        let Some(group) = self.plan.group(r).and_then(|g| g.get(part)) else { return };
        let mut claims = lock(&self.claims);
        if claims.is_empty() {
            return;
        }
        for key in group.iter().filter_map(|c| decoded_cache::copy_key(&self.plan, c)) {
            drop(claims.remove(&key));
        }
    }

    /// Gathers the cache hits of `hit_jobs[k]` from their pinned bytes, sample by sample
    /// (`gather_sample`).
    fn run_cached(&self, k: usize) {
        let Some(pieces) = self.hit_jobs.get(k).and_then(|r| self.hit_pieces.get(r.clone())) else {
            return self.fail_all("plan");
        };
        let mut row = Vec::new();
        for sample in pieces.chunk_by(|a, b| a.sample == b.sample) {
            self.gather_sample(sample, &mut row);
        }
    }

    /// Writes one sample's cache-hit pieces row by row: the pieces that share their box's
    /// outer corner and extent (a band, e.g. the chunks side by side along x) are cast
    /// into `row` and each output row is written at once, whole lines streamed. A piece
    /// whose shared decode failed fails the sample and is left out.
    fn gather_sample(&self, pieces: &[HitPiece], row: &mut Vec<u8>) {
        let plan = &self.plan;
        let mut pinned = Vec::with_capacity(pieces.len());
        for h in pieces {
            let Some(chunk) = plan.chunks.get(h.chunk) else {
                return self.fail_all("plan");
            };
            let (ChunkSource::Cached { hit, .. }, Some(p)) =
                (chunk.source, chunk.placements.get(h.placement))
            else {
                return self.fail_all("plan");
            };
            let (Some(pin), Some(facts)) =
                (self.hits.get(hit as usize), self.facts.get(chunk.array.index()))
            else {
                return self.fail_all("plan");
            };
            // At once for a cached chunk; for one an earlier batch is decoding, when that
            // batch's read job has filled (or abandoned) it.
            let Some(bytes) = pin.wait() else {
                let err = SampleError::SharedDecodeFailed {
                    path: PathBuf::from(&*pin.key().0),
                    chunk: chunk.chunk.clone(),
                };
                self.progress.fail([p.sample], &err);
                continue;
            };
            pinned.push((p, bytes, facts, chunk.decompressed_len()));
        }
        let mut got: Vec<Piece<'_>> = Vec::with_capacity(pinned.len());
        for (p, bytes, facts, len) in &pinned {
            let Some(bytes) = bytes.host().filter(|b| b.len() as u64 == *len) else {
                return self.fail_all("chunk cache");
            };
            got.push((p, bytes, facts));
        }
        self.gather(&got, row);
    }

    /// Writes `pieces` (sorted by [`piece_order`]) band by band: the pieces of one sample
    /// and array that share their box's outer corner and extent (e.g. chunks side by side
    /// along x) are one band, and each of its output rows is written at once.
    fn gather(&self, pieces: &[Piece<'_>], row: &mut Vec<u8>) {
        let same_band = |a: &Piece<'_>, b: &Piece<'_>| {
            let (x, y) = (&a.0.in_sample, &b.0.in_sample);
            let r = x.lo.len().saturating_sub(1);
            a.0.sample == b.0.sample
                && std::ptr::eq(a.2, b.2)
                && x.lo.len() == y.lo.len()
                && x.lo[..r] == y.lo[..r]
                && x.hi[..r] == y.hi[..r]
        };
        for band in pieces.chunk_by(same_band) {
            self.gather_band(band, row);
        }
    }

    /// One band (pieces of one sample and array, same box but on the last axis, sorted
    /// along it): for each outer index, every piece's row cast into `row`, then each run
    /// of touching pieces written to the batch at once.
    fn gather_band(&self, band: &[Piece<'_>], row: &mut Vec<u8>) {
        let Some(&(first, _, facts)) = band.first() else { return };
        let src_t = facts.repr.data_type;
        let (s, o) = (src_t.size(), self.out_dtype.size(src_t));
        let r = first.in_sample.lo.len();
        if r == 0 || facts.repr.shape.len() != r || self.sample_shape.len() != r {
            return self.fail_all("plan");
        }
        let last = r - 1;
        let cs = zarr::odometer::c_strides(&facts.repr.shape);
        // Each piece's first source element (`in_chunk`'s corner), as an offset.
        let corner = |p: &planner::Placement| (0..r).map(|a| p.in_chunk.lo[a] * cs[a]).sum::<u64>();
        let x_lo = first.in_sample.lo[last];
        // Per piece, once (not through the boxes on every row): its bytes, its first
        // source element, its first byte in `row`, its bytes in the source and in `row`.
        let mut pieces = Vec::with_capacity(band.len());
        // Runs of touching pieces, as byte ranges of `row`: the gap between two (a chunk
        // not hit, or failed, or read by another job) is another job's to write.
        let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
        for (p, data, _) in band {
            let (lo, hi) = (p.in_sample.lo[last] - x_lo, p.in_sample.hi[last] - x_lo);
            let (at, end) = ((lo as usize) * o, (hi as usize) * o);
            pieces.push((*data, corner(p), at, (hi - lo) as usize * s, end - at));
            match runs.last_mut() {
                Some(run) if run.end == at => run.end = end,
                _ => runs.push(at..end),
            }
        }
        // `row` holds the band's output row, then (for a conversion) its source row.
        let row_len = runs.last().map_or(0, |r| r.end);
        let staged_len = if self.out_dtype == OutDtype::Native { 0 } else { row_len / o * s };
        row.resize(row_len + staged_len, 0);
        let (row, staged) = row.split_at_mut(row_len);
        let base = self.positions[first.sample] * self.sample_bytes;
        let first_corner = corner(first);
        let sc = cast::Scatter {
            src_dtype: src_t,
            out: self.out_dtype,
            chunk_shape: &facts.repr.shape,
            in_chunk: &first.in_chunk,
            sample_shape: &self.sample_shape,
            in_sample: &first.in_sample,
        };
        let rows = BandRows { sc, first_corner, pieces: &pieces, runs: &runs, base };
        // The cast is chosen once a band, not on every piece of every row. `Native`
        // pieces are copied into the output row in 16-byte blocks inline
        // (`cast::copy_short`); for a conversion the pieces' source elements are copied
        // side by side first and each run converted at once, so its loop runs over whole
        // rows in blocks rather than over each piece with a scalar tail (`cast_run`'s loops
        // stay in their own function, where they vectorize: inlined into the row walk
        // they did not, and f32 output ran 15% slower).
        match self.out_dtype {
            OutDtype::Native => self.band_rows_native(&rows, row),
            _ => self.band_rows_staged(&rows, row, staged),
        }
    }

    /// The rows of a `Native` band ([`BandRows`]): for each row of the first piece's box,
    /// every piece's row copied into `row`, then each run of touching pieces written.
    #[inline(always)]
    fn band_rows_native(&self, b: &BandRows<'_>, row: &mut [u8]) {
        let s = b.sc.src_dtype.size();
        let o = b.sc.out.size(b.sc.src_dtype);
        // The first piece's rows: every piece of the band shares them, shifted by its own
        // corner in its chunk (same chunk shape).
        cast::for_each_row(&b.sc, |src_row, dst_row, _| {
            let shift = src_row - b.first_corner;
            for &(data, corner, at, len, _) in b.pieces {
                let from = (corner + shift) as usize * s;
                cast::copy_short(&mut row[at..at + len], &data[from..from + len]);
            }
            self.write_runs(b, row, dst_row, o);
        });
    }

    /// The rows of a band that converts: each row's pieces copied into `staged` (source
    /// elements, at the places their output takes in `row`), then each run cast from
    /// `staged` into `row` and written.
    #[inline(always)]
    fn band_rows_staged(&self, b: &BandRows<'_>, row: &mut [u8], staged: &mut [u8]) {
        let (src_t, out) = (b.sc.src_dtype, b.sc.out);
        let (s, o) = (src_t.size(), out.size(src_t));
        cast::for_each_row(&b.sc, |src_row, dst_row, _| {
            let shift = src_row - b.first_corner;
            for &(data, corner, at, src_len, _) in b.pieces {
                let from = (corner + shift) as usize * s;
                let at = at / o * s;
                cast::copy_short(&mut staged[at..at + src_len], &data[from..from + src_len]);
            }
            for run in b.runs {
                let src = &staged[run.start / o * s..run.end / o * s];
                cast::cast_run(src_t, out, src, &mut row[run.clone()]);
            }
            self.write_runs(b, row, dst_row, o);
        });
    }

    /// Writes the band's runs of `row` into output row `dst_row` of the sample (`o` bytes
    /// an output element).
    #[inline(always)]
    fn write_runs(&self, b: &BandRows<'_>, row: &[u8], dst_row: u64, o: usize) {
        for run in b.runs {
            // SAFETY: the planner produces each output voxel exactly once, so no other
            // job writes these bytes; the buffer outlives the batch's jobs.
            let dst =
                unsafe { self.out.range(b.base + dst_row as usize * o + run.start, run.len()) };
            cast::copy_out(dst, &row[run.clone()], self.stream);
        }
    }

    fn run_fill(&self, k: usize) {
        let plan = &self.plan;
        let lo = plan.fills.start + k * FILL_JOB;
        let hi = (lo + FILL_JOB).min(plan.fills.end);
        for chunk in plan.chunks.get(lo..hi).unwrap_or(&[]) {
            let Some(facts) = self.facts.get(chunk.array.index()) else { continue };
            for p in &chunk.placements {
                self.fill(self.positions[p.sample], &p.in_sample, &facts.fill_out);
            }
        }
    }

    /// Writes `value` (one output element) over the box `in_sample` of the sample at
    /// batch position `sample`.
    pub(crate) fn fill(&self, sample: usize, in_sample: &zarr::Aabb, value: &[u8]) {
        let base = sample * self.sample_bytes;
        cast::fill_rows(&self.sample_shape, in_sample, value.len(), |d| {
            // SAFETY: as in `gather_band`: fill placements are disjoint from every other
            // placement of the batch.
            cast::fill_run(unsafe { self.out.range(base + d.start, d.len()) }, value);
        });
    }
}

#[cfg(test)]
mod tests {
    use planner::{ArrayId, BatchPlan, ChunkPlan, ChunkSource, ReadOp};

    use super::{BatchWork, JobKind, hit_pieces};

    /// A plan of `reads` read ops of `per` chunks each, 100 bytes apart.
    fn plan(reads: usize, per: usize) -> BatchPlan {
        let chunk = |i: usize| ChunkPlan {
            array: ArrayId(0),
            chunk: vec![i as u64],
            source: ChunkSource::Copy {
                read: i / per,
                offset_in_read: (i % per) as u64 * 100,
                compressed_len: 100,
                decompressed_len: 400,
            },
            placements: Vec::new(),
        };
        BatchPlan {
            element: None,
            files: Vec::new(),
            reads: (0..reads)
                .map(|r| ReadOp {
                    file: 0,
                    offset: 0,
                    len: per as u64 * 100,
                    chunks: r * per..(r + 1) * per,
                })
                .collect(),
            chunks: (0..reads * per).map(chunk).collect(),
            cached: reads * per..reads * per,
            fills: reads * per..reads * per,
            waves: Vec::new(),
            stats: planner::PlanStats::default(),
        }
    }

    /// Each read op's chunks, as the jobs cover them.
    fn cover(jobs: &[JobKind], reads: usize) -> Vec<Vec<(u32, u32)>> {
        let mut out = vec![Vec::new(); reads];
        for j in jobs {
            if let JobKind::Read { read, chunks } = j {
                out[*read].push(*chunks);
            }
        }
        out
    }

    /// Cache hits are gathered in an order where the pieces of one output row are
    /// neighbours (by sample, then outer box, then start on the last axis), each job takes
    /// whole samples, and a cached range past the plan's chunks yields a job that fails.
    #[test]
    fn hit_pieces_put_a_rows_pieces_side_by_side_and_jobs_take_whole_samples() {
        let boxed = |lo: [u64; 2], hi: [u64; 2]| zarr::Aabb::new(lo.to_vec(), hi.to_vec()).unwrap();
        // Chunk c places into sample `s` at rows `y0..y1`, columns `x0..x1`.
        let place = |s: usize, y: (u64, u64), x: (u64, u64)| planner::Placement {
            sample: s,
            in_chunk: boxed([0, 0], [y.1 - y.0, x.1 - x.0]),
            in_sample: boxed([y.0, x.0], [y.1, x.1]),
        };
        let chunk = |placements| ChunkPlan {
            array: ArrayId(0),
            chunk: vec![0, 0],
            source: ChunkSource::Cached { hit: 0, decompressed_len: 4 },
            placements,
        };
        let mut p = plan(1, 1);
        // Chunks listed right column first and sample 1 before sample 0.
        p.chunks.extend([
            chunk(vec![place(1, (0, 4), (4, 8)), place(0, (4, 8), (4, 8))]),
            chunk(vec![place(0, (0, 4), (4, 8))]),
            chunk(vec![place(0, (4, 8), (0, 4)), place(1, (0, 4), (0, 4))]),
            chunk(vec![place(0, (0, 4), (0, 4))]),
        ]);
        p.cached = 1..5;
        let (pieces, jobs) = hit_pieces(&p);
        let at = |i: usize| {
            let h = pieces[i];
            let q = &p.chunks[h.chunk].placements[h.placement];
            (q.sample, q.in_sample.lo[0], q.in_sample.lo[1])
        };
        let order: Vec<_> = (0..pieces.len()).map(at).collect();
        assert_eq!(
            order,
            [(0, 0, 0), (0, 0, 4), (0, 4, 0), (0, 4, 4), (1, 0, 0), (1, 0, 4)],
            "rows 0..4 of sample 0 (both pieces), then rows 4..8, then sample 1"
        );
        // 64 voxels in all, below a job's minimum: one job, ending at a sample's end.
        assert_eq!(jobs, vec![0..6]);
        // Samples of 2^20 voxels each: a job apiece; a sample's two halves stay together.
        p.chunks.truncate(1);
        p.chunks.extend([
            chunk(vec![place(0, (0, 1024), (0, 1024)), place(1, (0, 512), (0, 1024))]),
            chunk(vec![place(1, (512, 1024), (0, 1024)), place(2, (0, 1024), (0, 1024))]),
        ]);
        p.cached = 1..3;
        assert_eq!(hit_pieces(&p).1, vec![0..1, 1..3, 3..4]);
        // A cached range past the chunks: a job whose range no piece list has.
        p.cached = 1..9;
        let (pieces, jobs) = hit_pieces(&p);
        assert!(pieces.is_empty());
        assert!(jobs.iter().any(|r| pieces.get(r.clone()).is_none()), "{jobs:?}");
    }

    /// Issue 18: a plan with fewer read ops than twice the threads has its groups cut into
    /// parts, consecutive and covering each group once, so every thread has work; ops read
    /// ahead stay whole, and so does every op of a plan with reads enough.
    #[test]
    fn few_read_ops_are_cut_into_parts_that_cover_each_group_once() {
        let p = plan(8, 8);
        let jobs = BatchWork::<()>::jobs(&p, 16, &|_| true, 0);
        assert_eq!(jobs.len(), 32, "8 ops of 8 chunks, 16 threads: 4 parts each");
        for parts in cover(&jobs, 8) {
            assert_eq!(parts, vec![(0, 2), (2, 4), (4, 6), (6, 8)]);
        }
        // Op 3 is read ahead: whole.
        let jobs = BatchWork::<()>::jobs(&p, 16, &|r| r != 3, 0);
        assert_eq!(cover(&jobs, 8)[3], vec![(0, 8)]);
        assert_eq!(jobs.len(), 29);
        // Reads enough for the threads: one job per op.
        let jobs = BatchWork::<()>::jobs(&p, 4, &|_| true, 0);
        assert_eq!(cover(&jobs, 8), vec![vec![(0, 8)]; 8]);
        // Fewer chunks than parts: one chunk a job, none empty.
        let p = plan(1, 3);
        let jobs = BatchWork::<()>::jobs(&p, 16, &|_| true, 0);
        assert_eq!(cover(&jobs, 1), vec![vec![(0, 1), (1, 2), (2, 3)]]);
    }
}
