//! The submit thread: takes planned batches in order, keeps the decode workers reading
//! the next waves, and enqueues the oldest wave's device work.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use kernels::FillSpec;
use planner::ChunkSource;

use super::core::{BatchLease, Engine, WaveLease};
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
        let send = |m: ToHarvest<M, P>| {
            let _ = out.send(ToHarvestMsg(m));
        };
        let mut queue: VecDeque<Ahead<M, P>> = VecDeque::new();
        let mut cur: Option<Current<M>> = None;
        let mut input_open = true;
        // A batch whose device work failed: its later waves are only drained.
        let mut poisoned: Option<(u64, Error)> = None;
        loop {
            // Top up: dispatch reads of upcoming waves while the oldest is outstanding.
            loop {
                let waves_ahead = queue.iter().filter(|a| matches!(a, Ahead::Wave { .. })).count();
                if waves_ahead >= AHEAD {
                    break;
                }
                let block = queue.is_empty();
                if cur.is_none() {
                    if !input_open {
                        break;
                    }
                    let item = if block {
                        rx.recv().map_err(|_| crossbeam_channel::TryRecvError::Disconnected)
                    } else {
                        rx.try_recv()
                    };
                    match item {
                        Ok(Submit::Pass(p)) => queue.push_back(Ahead::Pass(p)),
                        Ok(Submit::Run { id, ctx, meta }) => {
                            cur = Some(Current { id, ctx, meta, lease: None, next: 0 });
                        }
                        Err(crossbeam_channel::TryRecvError::Empty) => break,
                        Err(crossbeam_channel::TryRecvError::Disconnected) => {
                            input_open = false;
                            break;
                        }
                    }
                    continue;
                }
                let Some(c) = cur.as_mut() else { break };
                if c.lease.is_none() {
                    match self.acquire(c.id, block) {
                        Ok(Some(l)) => c.lease = Some(l),
                        Ok(None) => break,
                        Err(error) => {
                            if let Some(c) = cur.take() {
                                queue.push_back(Ahead::Failed { meta: c.meta, error });
                            }
                            continue;
                        }
                    }
                }
                if c.next < c.ctx.plan.waves.len() {
                    let t = Instant::now();
                    let got = self.acquire_wave(block);
                    stats
                        .wave_slot_wait_ns
                        .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    let slot = match got {
                        Ok(Some(s)) => s,
                        Ok(None) => break,
                        Err(error) => {
                            // Teardown: the batch's buffer goes back with it.
                            if let Some(c) = cur.take() {
                                if let Some(l) = c.lease {
                                    let _ = self.release(l, None);
                                }
                                queue.push_back(Ahead::Failed { meta: c.meta, error });
                            }
                            continue;
                        }
                    };
                    let k = c.next;
                    c.next += 1;
                    let out = c
                        .lease
                        .as_ref()
                        .map_or((0, 0), |l| (l.buffer().device_ptr(), l.buffer().len() as u64));
                    match self.dispatch(&c.ctx, k, out, slot, jobs) {
                        Ok(wave) => queue.push_back(Ahead::Wave { id: c.id, wave }),
                        Err((slot, error)) => {
                            self.release_wave(slot);
                            poisoned.get_or_insert((c.id, error));
                        }
                    }
                }
                if c.next >= c.ctx.plan.waves.len()
                    && let Some(c) = cur.take()
                {
                    // The lease was taken above, before any wave was dispatched.
                    queue.push_back(match c.lease {
                        Some(lease) => Ahead::End { id: c.id, ctx: c.ctx, meta: c.meta, lease },
                        None => Ahead::Failed { meta: c.meta, error: Error::Closed },
                    });
                }
            }
            // Submit the oldest.
            let Some(front) = queue.pop_front() else {
                if !input_open && cur.is_none() {
                    break;
                }
                continue;
            };
            match front {
                Ahead::Pass(p) => send(ToHarvest::Pass(p)),
                Ahead::Failed { meta, error } => send(ToHarvest::Failed { meta, error }),
                Ahead::Wave { id, wave } => {
                    let t = Instant::now();
                    wave.work.wait();
                    stats
                        .wave_jobs_wait_ns
                        .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    let mut state = std::mem::take(
                        &mut *wave.work.state.lock().unwrap_or_else(|e| e.into_inner()),
                    );
                    let host_errors = std::mem::take(&mut state.errors);
                    let slot = wave.slot;
                    let harvest = match &poisoned {
                        Some((pid, _)) if *pid == id => None,
                        _ => match self.submit_wave(
                            &wave.work,
                            wave.k,
                            wave.out,
                            &state,
                            slot.buffer(),
                            stats,
                        ) {
                            Ok(h) => Some(h),
                            Err(e) => {
                                // What was enqueued is covered by `done` if it records.
                                if let Ok(c) = self.cu("compute") {
                                    let _ = slot.buffer().done.record(c);
                                }
                                poisoned = Some((id, e));
                                None
                            }
                        },
                    };
                    send(ToHarvest::Wave { slot, harvest, errors: host_errors });
                }
                Ahead::End { id, ctx, meta, lease } => {
                    let outcome = if poisoned.as_ref().is_some_and(|p| p.0 == id) {
                        Err(poisoned.take().map_or(Error::Closed, |p| p.1))
                    } else {
                        self.end_batch(&ctx, &lease, stats)
                    };
                    match outcome {
                        Ok(()) => send(ToHarvest::End { meta, lease }),
                        Err(error) => {
                            // The device state of this batch is unknown: keep its buffer
                            // out of circulation until teardown.
                            std::mem::forget(lease);
                            send(ToHarvest::Failed { meta, error });
                        }
                    }
                }
            }
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
        // Region layout of every chunk of the wave.
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
        let work = Arc::new(WaveWork {
            ctx: ctx.clone(),
            chunks0: wave.chunks.start,
            regions,
            staging_used: st.min(st_cap),
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
