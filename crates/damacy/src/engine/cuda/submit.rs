//! The submit thread: takes planned batches in order, keeps the decode workers reading
//! the next waves, and enqueues the oldest wave's device work.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use kernels::FillSpec;
use planner::{BatchPlan, ChunkSource, Wave};

use super::core::{BatchLease, DescsAt, Engine, WaveBufs, WaveLease};
use super::device::Device;
use super::enqueue::cached_placements;
use super::harvest::{Failure, ToHarvest, ToHarvestMsg};
use super::stage::{BatchCtx, ChunkState, Region, StageMem, WaveJob, WaveState, WaveWork};
use super::{REGION_ALIGN, STAGING_PAD, align_up, gs};
use crate::engine::JobTx;
use crate::error::{Error, PlanFault, Result, SampleError};
use crate::fault::Fault;
use crate::stats::StatCounters;

/// A batch handed to the submit thread: the plan's context and the caller's payload.
pub(super) enum Submit<M, P> {
    Run {
        id: u64,
        ctx: BatchCtx,
        meta: M,
    },
    /// Something to hand back in order, untouched (a batch that failed before planning).
    Pass(P),
}

/// A wave whose reads are with the workers.
struct Dispatched<D: Device> {
    work: Arc<WaveWork<D::PinMem>>,
    slot: WaveLease<D>,
    k: usize,
    /// The batch buffer's device address and length (its lease is held until `End`).
    out: (u64, u64),
}

/// The submit thread's queue, in submission order.
enum Ahead<D: Device, M, P> {
    Wave {
        id: u64,
        wave: Dispatched<D>,
    },
    End {
        id: u64,
        ctx: BatchCtx,
        meta: M,
        lease: BatchLease<D>,
    },
    /// A batch that failed, after its dispatched waves; its buffer, if it holds one, goes
    /// to the harvest thread to be given back once the device is done with it.
    Failed {
        meta: M,
        failure: Failure,
        lease: Option<BatchLease<D>>,
    },
    Pass(P),
}

/// The batch whose waves are being dispatched.
struct Current<D: Device, M> {
    id: u64,
    ctx: BatchCtx,
    meta: M,
    lease: Option<BatchLease<D>>,
    /// The next wave to dispatch.
    next: usize,
}

/// How topping up goes on after one of its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopUp {
    /// Go on with this round's next step.
    Proceed,
    /// Start the next round.
    Again,
    /// Stop topping up: submit the oldest queued entry.
    Stop,
}

/// The submit thread's state: its channels, the waves and batch ends it queued in
/// submission order, and the batch whose waves it is dispatching.
struct Submitter<'a, D: Device, M, P> {
    engine: &'a Engine<D>,
    rx: &'a crossbeam_channel::Receiver<Submit<M, P>>,
    jobs: &'a JobTx,
    out: &'a crossbeam_channel::Sender<ToHarvestMsg<D, M, P>>,
    stats: &'a StatCounters,
    queue: VecDeque<Ahead<D, M, P>>,
    cur: Option<Current<D, M>>,
    /// The coordinator may still send batches.
    input_open: bool,
    /// Batches whose device work or dispatch failed, with the first failure of each: their
    /// later waves are only drained, and their end reports the failure. Keyed by batch, as
    /// a dispatch (ahead) can fail for a later batch than a submission (behind).
    poisoned: Vec<(u64, Failure)>,
}

impl<D: Device> Engine<D> {
    /// The submit thread: takes planned batches in order, keeps up to `ahead()` waves'
    /// reads with the decode workers while it submits the oldest wave's device work, and
    /// tells the harvest thread about every wave and batch, in order.
    pub(super) fn submit_loop<M, P>(
        &self,
        rx: &crossbeam_channel::Receiver<Submit<M, P>>,
        jobs: &JobTx,
        out: &crossbeam_channel::Sender<ToHarvestMsg<D, M, P>>,
        stats: &StatCounters,
    ) {
        let _ = self.bind();
        let mut s = Submitter {
            engine: self,
            rx,
            jobs,
            out,
            stats,
            queue: VecDeque::new(),
            cur: None,
            input_open: true,
            poisoned: Vec::new(),
        };
        loop {
            s.top_up();
            // Submit the oldest.
            let Some(front) = s.queue.pop_front() else {
                if !s.input_open && s.cur.is_none() {
                    break;
                }
                continue;
            };
            s.submit_oldest(front);
        }
    }

    /// Lays out wave `k` of a batch in a wave slot and hands its read ops to the workers.
    fn dispatch(
        &self,
        ctx: &BatchCtx,
        k: usize,
        out: (u64, u64),
        slot: WaveLease<D>,
        jobs: &JobTx,
    ) -> std::result::Result<Dispatched<D>, (WaveLease<D>, Failure)> {
        let plan = &ctx.plan;
        let Some(wave) = plan.waves.get(k) else {
            let fault = PlanFault::Wave { wave: k };
            let error = SampleError::PlanInconsistent { stage: "CUDA submit", fault };
            return Err((slot, Failure::Batch(error)));
        };
        let w = slot.buffer();
        let (regions, staging_used) = lay_out_regions(plan, wave, w);
        let work = Arc::new(WaveWork {
            ctx: ctx.clone(),
            chunks: wave.chunks.clone(),
            regions,
            staging_used,
            cpu_share: self.cpu_share,
            staging: w.staging.clone(),
            decoded: w.decoded.clone(),
            gds: w.gds.clone(),
            gpu: self.has_decoder(),
            in_align: self.in_align,
            out_align: self.out_align,
            state: Mutex::new(WaveState {
                chunk_state: vec![ChunkState::Failed; wave.chunks.len()],
                ..WaveState::default()
            }),
            remaining: AtomicUsize::new(wave.reads.len()),
            done: (Mutex::new(wave.reads.is_empty()), Condvar::new()),
        });
        for r in wave.reads.clone() {
            // An object-store read is submitted now, its job queued before the next one.
            let ahead = self.read_ahead.issue(plan, r);
            if jobs.send(Box::new(WaveJob { work: Arc::clone(&work), read: r, ahead })).is_err() {
                // No worker is left to run this or any job: nothing writes the slot.
                return Err((slot, Failure::Engine(Error::Closed)));
            }
        }
        Ok(Dispatched { work, slot, k, out })
    }

    /// A batch's last device work: its fill chunks (grouped by array, one value per
    /// launch), then the ready event. Returns the errors (plan samples) of fill chunks the
    /// plan contradicts itself about, which are not filled.
    fn end_batch(
        &self,
        ctx: &BatchCtx,
        lease: &BatchLease<D>,
        stats: &StatCounters,
    ) -> Result<Vec<(usize, SampleError)>> {
        let (specs_by_array, errors) = fill_specs(ctx);
        let compute = self.cu("compute")?;
        let mut descs = DescsAt::Staged { descs: &self.end_descs[lease.slot()], used: 0 };
        for (specs, facts) in specs_by_array.iter().zip(ctx.facts.iter()) {
            if specs.is_empty() {
                continue;
            }
            let fs: Vec<FillSpec<'_>> = specs
                .iter()
                .map(|(s, lo, ext)| FillSpec {
                    sample: *s,
                    sample_shape: &ctx.sample_shape,
                    in_sample_lo: lo,
                    extent: ext,
                })
                .collect();
            let t = Instant::now();
            self.fill_boxes(lease.buffer(), &fs, &facts.fill_out, ctx.out_elems, &mut descs)?;
            stats.assemble_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        let t = Instant::now();
        let mut errors = errors;
        errors.extend(self.assemble_cached(ctx, lease.buffer(), &mut descs)?);
        stats.assemble_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        gs("cuEventRecord", self.dev.record(&self.ready[lease.slot()], compute))?;
        Ok(errors)
    }

    /// Assembles the batch's decoded-chunk cache hits into its buffer on `compute`,
    /// straight from their blocks (pinned by the batch's cache until its ready event
    /// completed). Returns the errors (plan samples) of hits the plan or the cache
    /// contradicts, which are not assembled.
    fn assemble_cached(
        &self,
        ctx: &BatchCtx,
        out: &D::DevMem,
        descs: &mut DescsAt<'_, D>,
    ) -> Result<Vec<(usize, SampleError)>> {
        let (keep, errors) = cached_placements(ctx);
        if keep.is_empty() {
            return Ok(errors);
        }
        let compute = self.cu("compute")?;
        let d = D::dev_range(out);
        // SAFETY: the batch's leased buffer; sources are filled cache blocks (written by
        // an earlier batch's device work, completed before the fill) pinned by this batch
        // until its ready event completed.
        unsafe { self.assemble_placements(ctx, &keep, (d.ptr(), d.len()), descs, compute) }?;
        Ok(errors)
    }

    /// Records a wave slot's `done` after everything enqueued so far on `h2d`, the slot's
    /// decode stream and `compute`, so that it covers whatever part of a failed wave's
    /// device work was enqueued before the harvest thread frees the slot.
    fn fence_wave(&self, w: &WaveBufs<D>) -> Result<()> {
        let (h2d, decode, compute) =
            (self.cu("h2d")?, self.cu(w.decode_stream)?, self.cu("compute")?);
        gs("cuEventRecord", self.dev.record(&w.h2d_done, h2d))?;
        gs("cuStreamWaitEvent", self.dev.wait_in(&w.h2d_done, decode))?;
        gs("cuEventRecord", self.dev.record(&w.decoded_ev, decode))?;
        gs("cuStreamWaitEvent", self.dev.wait_in(&w.decoded_ev, compute))?;
        gs("cuEventRecord", self.dev.record(&w.done, compute))
    }
}

/// A fill box: batch position of the sample, its corner in the sample, its extent.
type FillBox = (u64, Vec<u64>, Vec<u64>);

/// The fill boxes of a batch per array, and errors (plan samples) for the fill chunks
/// the plan contradicts itself about: one of an array the batch does not have (no fill
/// value), one whose placement names a sample without a batch position, or fills outside
/// the plan's chunks. Such a chunk is not filled, so its samples must not be delivered.
fn fill_specs(ctx: &BatchCtx) -> (Vec<Vec<FillBox>>, Vec<(usize, SampleError)>) {
    let plan = &ctx.plan;
    let mut specs = vec![Vec::new(); ctx.facts.len()];
    let mut errors = Vec::new();
    let fail = |errors: &mut Vec<_>, samples: &mut dyn Iterator<Item = usize>, fault| {
        let err = SampleError::PlanInconsistent { stage: "CUDA fill", fault };
        errors.extend(samples.map(|s| (s, err.clone())));
    };
    let Some(fills) = plan.chunks.get(plan.fills.clone()) else {
        let fault = PlanFault::Chunks { start: plan.fills.start, end: plan.fills.end };
        fail(&mut errors, &mut (0..ctx.positions.len()), fault);
        return (specs, errors);
    };
    for (i, chunk) in fills.iter().enumerate() {
        let gi = plan.fills.start + i;
        let a = chunk.array.index();
        let Some(boxes) = specs.get_mut(a) else {
            let fault = PlanFault::Array { chunk: gi, array: a };
            fail(&mut errors, &mut chunk.placements.iter().map(|p| p.sample), fault);
            continue;
        };
        for p in &chunk.placements {
            let Some(&pos) = ctx.positions.get(p.sample) else {
                let fault = PlanFault::Sample { chunk: gi, sample: p.sample };
                fail(&mut errors, &mut std::iter::once(p.sample), fault);
                continue;
            };
            boxes.push((pos as u64, p.in_sample.lo.to_vec(), p.in_sample.shape().into_vec()));
        }
    }
    (specs, errors)
}

/// The region of every chunk of `wave` in a wave slot's staging and arena (`None` for a
/// fill chunk or one that does not fit), and the staging bytes they span.
fn lay_out_regions<D: Device>(
    plan: &BatchPlan,
    wave: &Wave,
    w: &WaveBufs<D>,
) -> (Vec<Option<Region>>, u64) {
    let mut regions = Vec::with_capacity(wave.chunks.len());
    let (mut st, mut ar) = (0u64, 0u64);
    let (st_cap, ar_cap) = (w.staging.len() as u64, D::dev_range(&w.arena).len());
    for chunk in plan.chunks.get(wave.chunks.clone()).unwrap_or(&[]) {
        let ChunkSource::Copy { compressed_len, decompressed_len, .. } = chunk.source else {
            regions.push(None);
            continue;
        };
        let st_len = compressed_len.saturating_add(STAGING_PAD);
        let fits = st + st_len <= st_cap && ar + decompressed_len <= ar_cap;
        regions.push(fits.then_some(Region { staging: st, staging_len: st_len, arena: ar }));
        if fits {
            st = align_up(st + st_len, REGION_ALIGN);
            ar = align_up(ar + decompressed_len, REGION_ALIGN);
        }
    }
    (regions, st.min(st_cap))
}

impl<D: Device, M, P> Submitter<'_, D, M, P> {
    fn send(&self, m: ToHarvest<D, M, P>) {
        let _ = self.out.send(ToHarvestMsg(m));
    }

    /// Top up: dispatches reads of upcoming waves (up to [`Engine::ahead`]) while the oldest is
    /// outstanding. Blocks on input, a batch buffer or a wave slot only when nothing is
    /// queued to submit.
    fn top_up(&mut self) {
        loop {
            let waves_ahead = self.queue.iter().filter(|a| matches!(a, Ahead::Wave { .. })).count();
            if waves_ahead >= self.engine.ahead() {
                break;
            }
            let block = self.queue.is_empty();
            let step =
                if self.cur.is_none() { self.take_batch(block) } else { self.advance(block) };
            if step == TopUp::Stop {
                break;
            }
        }
    }

    /// Takes the next batch from the coordinator; a batch that failed before planning
    /// goes straight into the queue.
    fn take_batch(&mut self, block: bool) -> TopUp {
        if !self.input_open {
            return TopUp::Stop;
        }
        let item = if block {
            self.rx.recv().map_err(|_| crossbeam_channel::TryRecvError::Disconnected)
        } else {
            self.rx.try_recv()
        };
        match item {
            Ok(Submit::Pass(p)) => self.queue.push_back(Ahead::Pass(p)),
            Ok(Submit::Run { id, ctx, meta }) => {
                self.engine.faults.panic_point(Fault::SubmitPanic);
                self.cur = Some(Current { id, ctx, meta, lease: None, next: 0 });
            }
            Err(crossbeam_channel::TryRecvError::Empty) => return TopUp::Stop,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                self.input_open = false;
                return TopUp::Stop;
            }
        }
        TopUp::Again
    }

    /// Takes the current batch one step on: its batch buffer, its next wave, its end.
    fn advance(&mut self, block: bool) -> TopUp {
        let step = self.lease_buffer(block);
        if step != TopUp::Proceed {
            return step;
        }
        let step = self.dispatch_next_wave(block);
        if step != TopUp::Proceed {
            return step;
        }
        self.end_if_dispatched();
        TopUp::Again
    }

    /// Leases the current batch's buffer, unless it holds one.
    fn lease_buffer(&mut self, block: bool) -> TopUp {
        let Some(c) = self.cur.as_mut() else { return TopUp::Stop };
        if c.lease.is_some() {
            return TopUp::Proceed;
        }
        let got = self.stats.trace.span("acquire", Some(c.id), || self.engine.acquire(c.id, block));
        match got {
            Ok(Some(l)) => {
                c.lease = Some(l);
                TopUp::Proceed
            }
            Ok(None) => TopUp::Stop,
            Err(error) => {
                if let Some(c) = self.cur.take() {
                    let failure = error.into();
                    self.queue.push_back(Ahead::Failed { meta: c.meta, failure, lease: None });
                }
                TopUp::Again
            }
        }
    }

    /// Leases a wave slot for the current batch's next wave, if it has one left, and
    /// hands the wave's reads to the workers.
    fn dispatch_next_wave(&mut self, block: bool) -> TopUp {
        let Some(c) = self.cur.as_mut() else { return TopUp::Stop };
        if c.next >= c.ctx.plan.waves.len() {
            return TopUp::Proceed;
        }
        let t = Instant::now();
        let got = self.stats.trace.span("slot", Some(c.id), || self.engine.acquire_wave(block));
        self.stats.wave_slot_wait_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let slot = match got {
            Ok(Some(s)) => s,
            Ok(None) => return TopUp::Stop,
            Err(error) => {
                // Teardown or an unusable device. The batch's buffer goes back with it,
                // after its waves already queued (their device work writes it); an earlier
                // failure of the batch is the one reported.
                if let Some(c) = self.cur.take() {
                    let failure = self.take_poison(c.id).unwrap_or_else(|| error.into());
                    self.queue.push_back(Ahead::Failed { meta: c.meta, failure, lease: c.lease });
                }
                return TopUp::Again;
            }
        };
        let k = c.next;
        c.next += 1;
        let out = c.lease.as_ref().map_or((0, 0), |l| {
            let r = D::dev_range(l.buffer());
            (r.ptr(), r.len())
        });
        let id = c.id;
        match self.engine.dispatch(&c.ctx, k, out, slot, self.jobs) {
            Ok(wave) => self.queue.push_back(Ahead::Wave { id, wave }),
            Err((slot, failure)) => {
                self.engine.release_wave(slot);
                self.poison(id, failure);
            }
        }
        TopUp::Proceed
    }

    /// Records `failure` as batch `id`'s, unless it failed already.
    fn poison(&mut self, id: u64, failure: Failure) {
        if !self.is_poisoned(id) {
            self.poisoned.push((id, failure));
        }
    }

    fn is_poisoned(&self, id: u64) -> bool {
        self.poisoned.iter().any(|(p, _)| *p == id)
    }

    /// Takes batch `id`'s failure, if it failed.
    fn take_poison(&mut self, id: u64) -> Option<Failure> {
        let at = self.poisoned.iter().position(|(p, _)| *p == id)?;
        Some(self.poisoned.swap_remove(at).1)
    }

    /// Once every wave of the current batch is dispatched, queues the batch's end.
    fn end_if_dispatched(&mut self) {
        if self.cur.as_ref().is_some_and(|c| c.next >= c.ctx.plan.waves.len())
            && let Some(c) = self.cur.take()
        {
            // The lease was taken above, before any wave was dispatched: a batch here
            // without one is a bug, reported as such.
            let end = match c.lease {
                Some(lease) => Ahead::End { id: c.id, ctx: c.ctx, meta: c.meta, lease },
                None => {
                    let _ = self.take_poison(c.id);
                    let failure = Failure::Batch(SampleError::Internal { stage: "CUDA submit" });
                    Ahead::Failed { meta: c.meta, failure, lease: None }
                }
            };
            self.queue.push_back(end);
        }
    }

    /// Hands the oldest queued entry on to the harvest thread, enqueuing its device work
    /// first.
    fn submit_oldest(&mut self, front: Ahead<D, M, P>) {
        match front {
            Ahead::Pass(p) => self.send(ToHarvest::Pass(p)),
            Ahead::Failed { meta, failure, lease } => {
                self.send(ToHarvest::Failed { meta, failure, lease })
            }
            Ahead::Wave { id, wave } => self.submit_dispatched(id, wave),
            Ahead::End { id, ctx, meta, lease } => self.finish_batch(id, ctx, meta, lease),
        }
    }

    /// Waits for a dispatched wave's reads, then enqueues its device work unless its
    /// batch already failed.
    fn submit_dispatched(&mut self, id: u64, wave: Dispatched<D>) {
        let Dispatched { work, slot, k, out } = wave;
        let t = Instant::now();
        self.stats.trace.span("reads", Some(id), || work.wait());
        self.stats.wave_jobs_wait_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let mut state = work.take_state();
        let harvest = if self.is_poisoned(id) {
            None
        } else {
            let r = self.stats.trace.span("wave", Some(id), || {
                self.engine.submit_wave(&work, k, out, &mut state, slot.buffer(), self.stats)
            });
            match r {
                Ok(h) => Some(h),
                Err(e) => {
                    // `done` must cover what of the wave was enqueued before the harvest
                    // thread frees the slot; if it cannot, the device is unusable.
                    if let Err(fence) = self.engine.fence_wave(slot.buffer()) {
                        self.engine.mark_broken(&fence);
                    }
                    self.poison(id, e);
                    None
                }
            }
        };
        // Taken after the device work was enqueued: the device frame check of GDS frames
        // can fail chunks there (`Engine::check_gds_frames`).
        let host_errors = std::mem::take(&mut state.errors);
        let cache = work.ctx.cache.clone();
        self.send(ToHarvest::Wave { id, slot, harvest, errors: host_errors, cache });
    }

    /// A batch's end, after its last wave: enqueues its fills and ready event, unless its
    /// device work failed. A failed batch's buffer goes to the harvest thread, which
    /// gives it back once the device is done with it (never kept: see
    /// [`Engine::recover`]).
    fn finish_batch(&mut self, id: u64, ctx: BatchCtx, meta: M, lease: BatchLease<D>) {
        let outcome = match self.take_poison(id) {
            Some(failure) => Err(failure),
            None => self.stats.trace.span("end", Some(id), || {
                self.engine.end_batch(&ctx, &lease, self.stats).map_err(Failure::from)
            }),
        };
        let cache = ctx.cache;
        match outcome {
            Ok(errors) => self.send(ToHarvest::End { id, meta, lease, errors, cache }),
            Err(failure) => {
                self.send(ToHarvest::Failed { meta, failure, lease: Some(lease) });
                // Its assembly of cache hits may have been enqueued: the pins stay until
                // the harvest thread recovered the buffer (waiting for the device).
                if let Some(c) = cache {
                    self.send(ToHarvest::Keep(c));
                }
            }
        }
    }
}
