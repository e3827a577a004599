//! The submit thread: takes planned batches in order, keeps the decode workers reading
//! the next waves, and enqueues the oldest wave's device work.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use kernels::FillSpec;
use planner::{BatchPlan, ChunkSource, Wave};

use super::core::{BatchLease, Engine, WaveBufs, WaveLease};
use super::harvest::{ToHarvest, ToHarvestMsg};
use super::stage::{BatchCtx, ChunkState, Region, WaveJob, WaveState, WaveWork};
use super::{AHEAD, REGION_ALIGN, STAGING_PAD, align_up, gs};
use crate::engine::JobTx;
use crate::error::{Error, Result};
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
struct Dispatched {
    work: Arc<WaveWork>,
    slot: WaveLease,
    k: usize,
    /// The batch buffer's device address and length (its lease is held until `End`).
    out: (u64, u64),
}

/// The submit thread's queue, in submission order.
enum Ahead<M, P> {
    Wave { id: u64, wave: Dispatched },
    End { id: u64, ctx: BatchCtx, meta: M, lease: BatchLease },
    Failed { meta: M, error: Error },
    Pass(P),
}

/// The batch whose waves are being dispatched.
struct Current<M> {
    id: u64,
    ctx: BatchCtx,
    meta: M,
    lease: Option<BatchLease>,
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
struct Submitter<'a, M, P> {
    engine: &'a Engine,
    rx: &'a crossbeam_channel::Receiver<Submit<M, P>>,
    jobs: &'a JobTx,
    out: &'a crossbeam_channel::Sender<ToHarvestMsg<M, P>>,
    stats: &'a StatCounters,
    queue: VecDeque<Ahead<M, P>>,
    cur: Option<Current<M>>,
    /// The coordinator may still send batches.
    input_open: bool,
    /// A batch whose device work failed: its later waves are only drained.
    poisoned: Option<(u64, Error)>,
}

impl Engine {
    /// The submit thread: takes planned batches in order, keeps up to `AHEAD` waves'
    /// reads with the decode workers while it submits the oldest wave's device work, and
    /// tells the harvest thread about every wave and batch, in order.
    pub(super) fn submit_loop<M, P>(
        &self,
        rx: &crossbeam_channel::Receiver<Submit<M, P>>,
        jobs: &JobTx,
        out: &crossbeam_channel::Sender<ToHarvestMsg<M, P>>,
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
            poisoned: None,
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
        slot: WaveLease,
        jobs: &JobTx,
    ) -> std::result::Result<Dispatched, (WaveLease, Error)> {
        let plan = &ctx.plan;
        let Some(wave) = plan.waves.get(k) else {
            return Err((slot, Error::Closed));
        };
        let w = slot.buffer();
        let (regions, staging_used) = lay_out_regions(plan, wave, w);
        let work = Arc::new(WaveWork {
            ctx: ctx.clone(),
            chunks0: wave.chunks.start,
            regions,
            staging_used,
            cpu_share: self.cpu_share,
            staging: w.staging.clone(),
            decoded: w.decoded.clone(),
            gpu: self.decoder.is_some(),
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
            if jobs.send(Box::new(WaveJob { work: Arc::clone(&work), read: r })).is_err() {
                // No worker is left to run this or any job: nothing writes the slot.
                return Err((slot, Error::Closed));
            }
        }
        Ok(Dispatched { work, slot, k, out })
    }

    /// A batch's last device work: its fill chunks (grouped by array, one value per
    /// launch), then the ready event.
    fn end_batch(&self, ctx: &BatchCtx, lease: &BatchLease, stats: &StatCounters) -> Result<()> {
        let plan = &ctx.plan;
        let compute = self.cu("compute")?;
        for (a, facts) in ctx.facts.iter().enumerate() {
            let mut specs = Vec::new();
            for chunk in plan.chunks.get(plan.fills.clone()).unwrap_or(&[]) {
                if chunk.array.index() != a {
                    continue;
                }
                for p in &chunk.placements {
                    specs.push((
                        ctx.positions[p.sample] as u64,
                        p.in_sample.lo.clone(),
                        p.in_sample.shape(),
                    ));
                }
            }
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
            self.fill_boxes(lease.buffer(), &fs, &facts.fill_out, ctx.out_elems, &self.end_descs)?;
            stats.assemble_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        gs("cuEventRecord", self.ready[lease.slot()].record(compute))
    }
}

/// The region of every chunk of `wave` in a wave slot's staging and arena (`None` for a
/// fill chunk or one that does not fit), and the staging bytes they span.
fn lay_out_regions(plan: &BatchPlan, wave: &Wave, w: &WaveBufs) -> (Vec<Option<Region>>, u64) {
    let mut regions = Vec::with_capacity(wave.chunks.len());
    let (mut st, mut ar) = (0u64, 0u64);
    let (st_cap, ar_cap) = (w.staging.len() as u64, w.arena.len() as u64);
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

impl<M, P> Submitter<'_, M, P> {
    fn send(&self, m: ToHarvest<M, P>) {
        let _ = self.out.send(ToHarvestMsg(m));
    }

    /// Top up: dispatches reads of upcoming waves (up to `AHEAD`) while the oldest is
    /// outstanding. Blocks on input, a batch buffer or a wave slot only when nothing is
    /// queued to submit.
    fn top_up(&mut self) {
        loop {
            let waves_ahead = self.queue.iter().filter(|a| matches!(a, Ahead::Wave { .. })).count();
            if waves_ahead >= AHEAD {
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
        match self.engine.acquire(c.id, block) {
            Ok(Some(l)) => {
                c.lease = Some(l);
                TopUp::Proceed
            }
            Ok(None) => TopUp::Stop,
            Err(error) => {
                if let Some(c) = self.cur.take() {
                    self.queue.push_back(Ahead::Failed { meta: c.meta, error });
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
        let got = self.engine.acquire_wave(block);
        self.stats.wave_slot_wait_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let slot = match got {
            Ok(Some(s)) => s,
            Ok(None) => return TopUp::Stop,
            Err(error) => {
                // Teardown: the batch's buffer goes back with it.
                if let Some(c) = self.cur.take() {
                    if let Some(l) = c.lease {
                        let _ = self.engine.release(l, None);
                    }
                    self.queue.push_back(Ahead::Failed { meta: c.meta, error });
                }
                return TopUp::Again;
            }
        };
        let k = c.next;
        c.next += 1;
        let out =
            c.lease.as_ref().map_or((0, 0), |l| (l.buffer().device_ptr(), l.buffer().len() as u64));
        match self.engine.dispatch(&c.ctx, k, out, slot, self.jobs) {
            Ok(wave) => self.queue.push_back(Ahead::Wave { id: c.id, wave }),
            Err((slot, error)) => {
                self.engine.release_wave(slot);
                self.poisoned.get_or_insert((c.id, error));
            }
        }
        TopUp::Proceed
    }

    /// Once every wave of the current batch is dispatched, queues the batch's end.
    fn end_if_dispatched(&mut self) {
        if self.cur.as_ref().is_some_and(|c| c.next >= c.ctx.plan.waves.len())
            && let Some(c) = self.cur.take()
        {
            // The lease was taken above, before any wave was dispatched.
            self.queue.push_back(match c.lease {
                Some(lease) => Ahead::End { id: c.id, ctx: c.ctx, meta: c.meta, lease },
                None => Ahead::Failed { meta: c.meta, error: Error::Closed },
            });
        }
    }

    /// Hands the oldest queued entry on to the harvest thread, enqueuing its device work
    /// first.
    fn submit_oldest(&mut self, front: Ahead<M, P>) {
        match front {
            Ahead::Pass(p) => self.send(ToHarvest::Pass(p)),
            Ahead::Failed { meta, error } => self.send(ToHarvest::Failed { meta, error }),
            Ahead::Wave { id, wave } => self.submit_dispatched(id, wave),
            Ahead::End { id, ctx, meta, lease } => self.finish_batch(id, ctx, meta, lease),
        }
    }

    /// Waits for a dispatched wave's reads, then enqueues its device work unless its
    /// batch already failed.
    fn submit_dispatched(&mut self, id: u64, wave: Dispatched) {
        let Dispatched { work, slot, k, out } = wave;
        let t = Instant::now();
        work.wait();
        self.stats.wave_jobs_wait_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let mut state = std::mem::take(&mut *work.state.lock().unwrap_or_else(|e| e.into_inner()));
        let host_errors = std::mem::take(&mut state.errors);
        let poisoned = matches!(&self.poisoned, Some((pid, _)) if *pid == id);
        let harvest = if poisoned {
            None
        } else {
            match self.engine.submit_wave(&work, k, out, &state, slot.buffer(), self.stats) {
                Ok(h) => Some(h),
                Err(e) => {
                    // What was enqueued is covered by `done` if it records.
                    if let Ok(c) = self.engine.cu("compute") {
                        let _ = slot.buffer().done.record(c);
                    }
                    self.poisoned = Some((id, e));
                    None
                }
            }
        };
        self.send(ToHarvest::Wave { slot, harvest, errors: host_errors });
    }

    /// A batch's end, after its last wave: enqueues its fills and ready event, unless its
    /// device work failed.
    fn finish_batch(&mut self, id: u64, ctx: BatchCtx, meta: M, lease: BatchLease) {
        let outcome = if self.poisoned.as_ref().is_some_and(|p| p.0 == id) {
            Err(self.poisoned.take().map_or(Error::Closed, |p| p.1))
        } else {
            self.engine.end_batch(&ctx, &lease, self.stats)
        };
        match outcome {
            Ok(()) => self.send(ToHarvest::End { meta, lease }),
            Err(error) => {
                // The device state of this batch is unknown: keep its buffer
                // out of circulation until teardown.
                std::mem::forget(lease);
                self.send(ToHarvest::Failed { meta, error });
            }
        }
    }
}
