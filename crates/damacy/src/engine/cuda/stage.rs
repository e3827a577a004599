//! The decode workers' part of a wave: read each read op, check and stage zstd frames in
//! the wave slot's pinned memory, or decode on the CPU into it.
//!
//! The rule: once a wave's jobs are done ([`WaveWork::take_state`]), every chunk of the
//! wave is either staged or decoded, and placeable, or reported, with an error for each
//! sample it feeds. A chunk is never left out silently: assembly skips failed chunks, so a
//! sample with an unreported one would ship with the previous batch's bytes in its place.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use kernels::{Shuffle, ShuffleSpec};
use planner::{ArrayEntry, BatchPlan, ChunkPlan, ChunkSource};

use super::route::{Route, cpu_takes};
use super::{MAX_GPU_STREAM, align_up};
use crate::config::OutDtype;
use crate::engine::read_ahead::{Ahead, read_op};
use crate::engine::{ArrayFacts, Job, Worker, lock};
use crate::error::{PlanFault, SampleError};
use crate::stats::StatCounters;

/// The stage named in this module's errors.
const STAGE: &str = "CUDA staging";

/// A plan inconsistency found while staging, as the error of the samples it affects.
fn plan_error(fault: PlanFault) -> SampleError {
    SampleError::PlanInconsistent { stage: STAGE, fault }
}

/// Host memory the workers stage a wave into: a wave slot's pinned buffers (the
/// simulated device's, or plain memory in the unit tests).
pub(crate) trait StageMem: std::fmt::Debug + Send + Sync {
    /// Bytes of the buffer.
    fn len(&self) -> usize;
    /// Its first byte, writable through a shared reference (see [`WaveWork::pinned`]).
    fn as_ptr(&self) -> *mut u8;
}

/// Reads of local files straight into one wave slot's device staging (GPUDirect
/// Storage): `cuFileRead` on a GPU, a positioned read into the simulated device's memory
/// on the simulated one. Synchronous, on a decode worker: the bytes are in place when
/// `read` returns, so the wave's device work, enqueued once every job of the wave
/// finished, runs after every read retired.
pub(crate) trait GdsRead: Send + Sync + std::fmt::Debug {
    /// Reads `len` bytes at `offset` of the local file `path` into the slot's device
    /// staging at `dst_off`.
    ///
    /// # Errors
    /// The read failed, was short, or the file could not be registered: the caller reads
    /// through host memory instead (where a real I/O error is reported as usual).
    fn read(
        &self,
        path: &str,
        offset: u64,
        len: usize,
        dst_off: u64,
    ) -> std::result::Result<(), GdsFailed>;
}

/// A GPUDirect Storage read that did not happen ([`GdsRead::read`]); the read goes
/// through host memory instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GdsFailed;

/// A chunk of a read op, as the errors name them (indices into the plan's tables).
#[derive(Debug, Clone, Copy)]
struct ChunkAt {
    read: usize,
    chunk: usize,
}

/// Per-batch facts shared by the wave jobs.
#[derive(Debug, Clone)]
pub(super) struct BatchCtx {
    pub arrays: Arc<Vec<ArrayEntry>>,
    /// Per array: chunk representation and the fill value cast to the output.
    pub facts: Arc<Vec<ArrayFacts>>,
    pub routes: Arc<Vec<Route>>,
    pub plan: Arc<BatchPlan>,
    pub positions: Arc<Vec<usize>>,
    pub sample_shape: Vec<u64>,
    pub out_dtype: OutDtype,
    pub out_elems: u64,
    /// The batch's hits and claims in the decoded-chunk cache, if any.
    pub cache: Option<Arc<super::cache::BatchCache>>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Region {
    pub(super) staging: u64,
    pub(super) staging_len: u64,
    pub(super) arena: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkState {
    Failed,
    Cpu,
    Gpu(ShuffleSpec),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Frame {
    /// Read with GPUDirect Storage straight into the device staging: its bytes were never
    /// on the host (nor checked there), and the pinned staging does not hold them.
    pub(super) gds: bool,
    pub(super) chunk: usize,
    pub(super) comp_off: u64,
    pub(super) comp_len: u64,
    pub(super) out_off: u64,
    pub(super) len: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Raw {
    pub(super) comp_off: u64,
    pub(super) out_off: u64,
    pub(super) len: u64,
}

#[derive(Debug, Default)]
pub(super) struct WaveState {
    pub(super) chunk_state: Vec<ChunkState>,
    pub(super) streams: Vec<Frame>,
    pub(super) raws: Vec<Raw>,
    pub(super) errors: Vec<(usize, SampleError)>,
}

/// One wave's jobs: a read op each.
#[derive(Debug)]
pub(super) struct WaveWork<S: StageMem> {
    pub(super) ctx: BatchCtx,
    /// The wave's chunks (indices into the plan's chunks).
    pub(super) chunks: Range<usize>,
    /// Per wave-local chunk: its region in the slot (`None`: it does not fit).
    pub(super) regions: Vec<Option<Region>>,
    /// Bytes of `staging` the regions span (what is uploaded).
    pub(super) staging_used: u64,
    /// Per mille of the GPU-decodable chunks decoded by the workers instead.
    pub(super) cpu_share: u32,
    pub(super) staging: S,
    pub(super) decoded: S,
    /// GPUDirect Storage reads into the slot's device staging, when in use.
    pub(super) gds: Option<Arc<dyn GdsRead>>,
    pub(super) gpu: bool,
    pub(super) in_align: u64,
    pub(super) out_align: u64,
    pub(super) state: Mutex<WaveState>,
    pub(super) remaining: AtomicUsize,
    pub(super) done: (Mutex<bool>, Condvar),
}

/// One read op of a wave, for the decode workers.
pub(super) struct WaveJob<S: StageMem> {
    pub(super) work: Arc<WaveWork<S>>,
    pub(super) read: usize,
    /// The read op's bytes in flight, for an object store.
    pub(super) ahead: Option<Ahead>,
}

impl<S: StageMem + 'static> Job for WaveJob<S> {
    fn run(self: Box<Self>, w: &mut Worker<'_>) {
        self.work.run(self.read, self.ahead, w.store, w.scratch.read_buf(), w.stats);
    }
}

impl<S: StageMem> WaveWork<S> {
    pub(super) fn wait(&self) {
        let mut d = lock(&self.done.0);
        while !*d {
            d = self.done.1.wait(d).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn finish_job(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            *lock(&self.done.0) = true;
            self.done.1.notify_all();
        }
    }

    /// The wave's state once every job finished (after [`WaveWork::wait`]), with this
    /// module's rule enforced: a chunk that the jobs left neither staged nor reported (no
    /// read op of the wave holds it, say), or that is staged but could not be placed (no
    /// fill value for its array, a sample without a batch position), gets an error for
    /// each sample it feeds that has none yet, and is failed.
    pub(super) fn take_state(&self) -> WaveState {
        let mut st = std::mem::take(&mut *lock(&self.state));
        let plan = &self.ctx.plan;
        let samples = self.ctx.positions.len();
        let Some(chunks) = plan.chunks.get(self.chunks.clone()) else {
            let fault = PlanFault::Chunks { start: self.chunks.start, end: self.chunks.end };
            let err = plan_error(fault);
            st.chunk_state.fill(ChunkState::Failed);
            st.errors.extend((0..samples).map(|s| (s, err.clone())));
            return st;
        };
        let WaveState { chunk_state, errors, .. } = &mut st;
        chunk_state.resize(chunks.len(), ChunkState::Failed);
        let mut reported = vec![false; samples];
        for (s, _) in errors.iter() {
            if let Some(r) = reported.get_mut(*s) {
                *r = true;
            }
        }
        for (li, (chunk, cs)) in chunks.iter().zip(chunk_state.iter_mut()).enumerate() {
            let gi = self.chunks.start + li;
            let unplaceable = if *cs == ChunkState::Failed {
                None
            } else if self.regions.get(li).copied().flatten().is_none() {
                // Only a chunk with a region is ever staged or decoded.
                Some(SampleError::Internal { stage: STAGE })
            } else if self.ctx.facts.get(chunk.array.index()).is_none() {
                Some(plan_error(PlanFault::Array { chunk: gi, array: chunk.array.index() }))
            } else {
                chunk
                    .placements
                    .iter()
                    .find(|p| p.sample >= samples)
                    .map(|p| plan_error(PlanFault::Sample { chunk: gi, sample: p.sample }))
            };
            if let Some(err) = unplaceable {
                *cs = ChunkState::Failed;
                for p in &chunk.placements {
                    errors.push((p.sample, err.clone()));
                    if let Some(r) = reported.get_mut(p.sample) {
                        *r = true;
                    }
                }
                continue;
            }
            if *cs != ChunkState::Failed {
                continue;
            }
            let err = plan_error(PlanFault::Unreported { chunk: gi });
            for p in &chunk.placements {
                if !reported.get(p.sample).copied().unwrap_or(false) {
                    errors.push((p.sample, err.clone()));
                }
            }
        }
        st
    }

    /// The plan samples the wave's chunks feed, every planned sample of the batch when
    /// the wave's chunks are not in the plan.
    fn wave_samples(&self) -> Vec<usize> {
        match self.ctx.plan.chunks.get(self.chunks.clone()) {
            Some(chunks) => {
                chunks.iter().flat_map(|c| c.placements.iter().map(|p| p.sample)).collect()
            }
            None => (0..self.ctx.positions.len()).collect(),
        }
    }

    /// A mutable view of `len` pinned bytes at `off` of `mem`.
    ///
    /// # Safety
    /// Chunk regions are disjoint and each is written by the one job owning its read op;
    /// the device reads them only after every job finished.
    #[allow(clippy::mut_from_ref)]
    unsafe fn pinned(mem: &S, off: u64, len: u64) -> Option<&mut [u8]> {
        let end = off.checked_add(len)?;
        if end > mem.len() as u64 {
            return None;
        }
        // SAFETY: in bounds (checked); exclusivity per the contract above.
        Some(unsafe {
            std::slice::from_raw_parts_mut(mem.as_ptr().add(off as usize), len as usize)
        })
    }

    /// Runs read op `r`: read, check and stage frames, or decode on the CPU. The job
    /// counts as finished however it ends: a panic fails every sample of the wave, rather
    /// than leaving the submit thread waiting for a job that never finishes.
    pub(super) fn run(
        &self,
        r: usize,
        ahead: Option<Ahead>,
        store: &dyn store::Store,
        buf: &mut Vec<u8>,
        stats: &StatCounters,
    ) {
        // Unwind safety: `buf` is resized before every read; the wave's state is merged
        // only at the end of a job, under a lock that tolerates poisoning.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_inner(r, ahead, store, buf, stats)
        }));
        if ran.is_err() {
            let err = SampleError::Internal { stage: "CUDA decode worker" };
            let errors = self.wave_samples().into_iter().map(|s| (s, err.clone())).collect();
            self.merge(WaveState { errors, ..WaveState::default() }, &[]);
        }
        self.finish_job();
    }

    fn run_inner(
        &self,
        r: usize,
        ahead: Option<Ahead>,
        store: &dyn store::Store,
        buf: &mut Vec<u8>,
        stats: &StatCounters,
    ) {
        let plan = &self.ctx.plan;
        let mut local = WaveState::default();
        let (Some(op), Some(group)) = (plan.reads.get(r), plan.group(r)) else {
            // Which chunks the op holds is unknown: every sample of the wave is suspect.
            let err = plan_error(PlanFault::Read { read: r });
            local.errors = self.wave_samples().into_iter().map(|s| (s, err.clone())).collect();
            self.merge(local, &[]);
            return;
        };
        let fail_all = |local: &mut WaveState, err: SampleError| {
            for c in group {
                local.errors.extend(c.placements.iter().map(|p| (p.sample, err.clone())));
            }
        };
        let Some(file) = plan.files.get(op.file) else {
            fail_all(&mut local, plan_error(PlanFault::File { read: r, file: op.file }));
            self.merge(local, &[]);
            return;
        };
        let Ok(len) = usize::try_from(op.len) else {
            fail_all(
                &mut local,
                SampleError::Format(zarr::Error::Overflow { what: "read length" }),
            );
            self.merge(local, &[]);
            return;
        };
        if let (Some(g), None) = (&self.gds, &ahead) {
            let local_file = store.local_file(&file.key);
            if let Some((local, states)) =
                local_file.and_then(|path| self.read_with_gds(&**g, op, group, &path, stats))
            {
                self.merge(local, &states);
                return;
            }
        }
        let t = Instant::now();
        let read = read_op(ahead, store, &file.key, op.offset, len, buf);
        stats.io_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if let Err(e) = read {
            fail_all(&mut local, SampleError::Store(e));
            self.merge(local, &[]);
            return;
        }
        let mut states = Vec::with_capacity(group.len());
        for (j, chunk) in group.iter().enumerate() {
            let at = ChunkAt { read: r, chunk: op.chunks.start + j };
            if let Some(state) = self.stage_chunk(at, chunk, &file.key, buf, stats, &mut local) {
                states.push(state);
            }
        }
        self.merge(local, &states);
    }

    /// Stages chunk `at` of the read in `buf` for nvCOMP, or decodes it on the CPU;
    /// returns its wave-local index and state, `None` for a chunk outside the wave. A chunk
    /// that cannot be staged or decoded gets an error for each sample it feeds.
    fn stage_chunk(
        &self,
        at: ChunkAt,
        chunk: &ChunkPlan,
        key: &str,
        buf: &[u8],
        stats: &StatCounters,
        local: &mut WaveState,
    ) -> Option<(usize, ChunkState)> {
        let fail = |local: &mut WaveState, err: SampleError| {
            local.errors.extend(chunk.placements.iter().map(|p| (p.sample, err.clone())));
        };
        let li = at.chunk.checked_sub(self.chunks.start).filter(|&li| li < self.chunks.len());
        let Some(li) = li else {
            fail(local, plan_error(PlanFault::OutsideWave { chunk: at.chunk, read: at.read }));
            return None;
        };
        let ChunkSource::Copy { offset_in_read, compressed_len, decompressed_len, .. } =
            chunk.source
        else {
            fail(local, plan_error(PlanFault::FillInRead { chunk: at.chunk, read: at.read }));
            return Some((li, ChunkState::Failed));
        };
        let a = chunk.array.index();
        let (Some(entry), Some(facts), Some(route)) =
            (self.ctx.arrays.get(a), self.ctx.facts.get(a), self.ctx.routes.get(a))
        else {
            fail(local, plan_error(PlanFault::Array { chunk: at.chunk, array: a }));
            return Some((li, ChunkState::Failed));
        };
        let Some(reg) = self.regions.get(li).copied().flatten() else {
            let err = SampleError::Unsupported {
                path: PathBuf::from(key),
                what: "a chunk larger than the CUDA engine's wave buffers",
            };
            fail(local, err);
            return Some((li, ChunkState::Failed));
        };
        let lo = offset_in_read as usize;
        let Some(src) = buf.get(lo..lo.saturating_add(compressed_len as usize)) else {
            fail(local, plan_error(PlanFault::ChunkBytes { chunk: at.chunk, read: at.read }));
            return Some((li, ChunkState::Failed));
        };
        let t = Instant::now();
        let staged = self.stage_for_gpu(li, *route, reg, src, decompressed_len, local);
        let state = match staged {
            Some(spec) => ChunkState::Gpu(spec),
            None => self.decode_on_cpu(entry, facts, reg, (chunk, key), src, &mut local.errors),
        };
        stats.decode_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Some((li, state))
    }

    /// Stages a chunk's frames for nvCOMP when its route and the CPU's share allow;
    /// `None` sends it to the CPU.
    fn stage_for_gpu(
        &self,
        li: usize,
        route: Route,
        reg: Region,
        src: &[u8],
        dlen: u64,
        local: &mut WaveState,
    ) -> Option<ShuffleSpec> {
        if !self.gpu || cpu_takes(self.cpu_share, li) {
            return None;
        }
        match route {
            Route::Zstd => self.stage_zstd(li, reg, src, dlen, local),
            Route::BloscZstd => self.stage_blosc(li, reg, src, dlen, local),
            Route::Cpu => None,
        }
    }

    /// Reads read op `op`'s chunks with GPUDirect Storage straight into their device
    /// staging regions, when every chunk can go that way (plain zstd for nvCOMP, not the
    /// CPU's share, a region that holds it) and the store holds the op's file locally
    /// (`path`). `None` sends the op through host memory: when it cannot, or when a read
    /// failed (counted in `gds_fallbacks`). The frames are checked on the device before
    /// nvCOMP sees them (`Engine::check_gds_frames`).
    fn read_with_gds(
        &self,
        g: &dyn GdsRead,
        op: &planner::ReadOp,
        group: &[ChunkPlan],
        path: &std::path::Path,
        stats: &StatCounters,
    ) -> Option<(WaveState, Vec<(usize, ChunkState)>)> {
        if !self.gpu {
            return None;
        }
        let mut frames = Vec::with_capacity(group.len());
        for (j, chunk) in group.iter().enumerate() {
            let li = (op.chunks.start + j)
                .checked_sub(self.chunks.start)
                .filter(|&li| li < self.chunks.len())?;
            let ChunkSource::Copy { compressed_len, decompressed_len, .. } = chunk.source else {
                return None;
            };
            let route = self.ctx.routes.get(chunk.array.index())?;
            if *route != Route::Zstd
                || cpu_takes(self.cpu_share, li)
                || decompressed_len > MAX_GPU_STREAM
            {
                return None;
            }
            let reg = self.regions.get(li).copied().flatten()?;
            let off = align_up(reg.staging, self.in_align);
            if off.checked_add(compressed_len)? > reg.staging + reg.staging_len {
                return None;
            }
            frames.push(Frame {
                gds: true,
                chunk: li,
                comp_off: off,
                comp_len: compressed_len,
                out_off: reg.arena,
                len: decompressed_len,
            });
        }
        let path = path.to_str()?;
        let t = Instant::now();
        for (f, chunk) in frames.iter().zip(group) {
            let ChunkSource::Copy { offset_in_read, .. } = chunk.source else { return None };
            let at = op.offset.checked_add(offset_in_read)?;
            if g.read(path, at, usize::try_from(f.comp_len).ok()?, f.comp_off).is_err() {
                stats.gds_fallbacks.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        stats.io_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.gds_reads.fetch_add(frames.len() as u64, Ordering::Relaxed);
        stats.gds_bytes.fetch_add(frames.iter().map(|f| f.comp_len).sum(), Ordering::Relaxed);
        let states =
            frames.iter().map(|f| (f.chunk, ChunkState::Gpu(ShuffleSpec::default()))).collect();
        Some((WaveState { streams: frames, ..WaveState::default() }, states))
    }

    /// Decodes wave-local chunk `li` on this thread from `src`, its compressed bytes, into
    /// its region of the pinned arena: the fallback for a GPUDirect Storage frame that
    /// failed the device frame check, as a frame that fails the host check is decoded on
    /// the CPU. The chunk's state, and on failure the same `Decode` error the host path
    /// gives, for each sample it feeds.
    pub(super) fn decode_fallback(
        &self,
        li: usize,
        src: &[u8],
        errors: &mut Vec<(usize, SampleError)>,
    ) -> ChunkState {
        let plan = &self.ctx.plan;
        let gi = self.chunks.start + li;
        let Some(chunk) = plan.chunks.get(gi) else {
            return ChunkState::Failed;
        };
        let a = chunk.array.index();
        let found = (
            self.ctx.arrays.get(a),
            self.ctx.facts.get(a),
            self.regions.get(li).copied().flatten(),
            crate::decoded_cache::copy_key(plan, chunk),
        );
        let (Some(entry), Some(facts), Some(reg), Some((key, ..))) = found else {
            let err = plan_error(PlanFault::Array { chunk: gi, array: a });
            errors.extend(chunk.placements.iter().map(|p| (p.sample, err.clone())));
            return ChunkState::Failed;
        };
        self.decode_on_cpu(entry, facts, reg, (chunk, &key), src, errors)
    }

    /// Decodes `chunk` (stored in object `key`) on this thread from `src` straight into
    /// its region of the pinned arena: `Cpu`, or `Failed` with the chunk's `Decode` error
    /// for each sample it feeds.
    fn decode_on_cpu(
        &self,
        entry: &ArrayEntry,
        facts: &ArrayFacts,
        reg: Region,
        (chunk, key): (&ChunkPlan, &str),
        src: &[u8],
        errors: &mut Vec<(usize, SampleError)>,
    ) -> ChunkState {
        let dlen = chunk.decompressed_len();
        // SAFETY: this chunk's arena region, owned by this job.
        let out = unsafe { Self::pinned(&self.decoded, reg.arena, dlen) };
        let decoded = match out {
            Some(out) => zarr::decode_chunk(entry.chunk_codecs(), &facts.repr, src, out),
            None => Err(zarr::Error::Overflow { what: "arena region" }),
        };
        match decoded {
            Ok(()) => ChunkState::Cpu,
            Err(source) => {
                let err = SampleError::Decode {
                    path: PathBuf::from(key),
                    chunk: chunk.chunk.clone(),
                    source,
                };
                errors.extend(chunk.placements.iter().map(|p| (p.sample, err.clone())));
                ChunkState::Failed
            }
        }
    }

    fn merge(&self, local: WaveState, states: &[(usize, ChunkState)]) {
        let mut st = lock(&self.state);
        for &(li, s) in states {
            if let Some(slot) = st.chunk_state.get_mut(li) {
                *slot = s;
            }
        }
        st.streams.extend(local.streams);
        st.raws.extend(local.raws);
        st.errors.extend(local.errors);
    }

    /// Stages a plain zstd chunk; `None` sends it to the CPU.
    fn stage_zstd(
        &self,
        li: usize,
        reg: Region,
        src: &[u8],
        dlen: u64,
        local: &mut WaveState,
    ) -> Option<ShuffleSpec> {
        if dlen > MAX_GPU_STREAM || kernels::check_zstd_frame(src, dlen).is_err() {
            return None;
        }
        let off = align_up(reg.staging, self.in_align);
        if off + src.len() as u64 > reg.staging + reg.staging_len {
            return None;
        }
        // SAFETY: inside this chunk's staging region, owned by this job.
        unsafe { Self::pinned(&self.staging, off, src.len() as u64) }?.copy_from_slice(src);
        local.streams.push(Frame {
            gds: false,
            chunk: li,
            comp_off: off,
            comp_len: src.len() as u64,
            out_off: reg.arena,
            len: dlen,
        });
        Some(ShuffleSpec::default())
    }

    /// Stages the streams of a blosc-zstd chunk; `None` sends it to the CPU.
    fn stage_blosc(
        &self,
        li: usize,
        reg: Region,
        src: &[u8],
        dlen: u64,
        local: &mut WaveState,
    ) -> Option<ShuffleSpec> {
        use zarr::blosc;
        let lay = blosc::layout(src).ok()?;
        if lay.nbytes as u64 != dlen || (!lay.memcpyed && lay.compressor != blosc::Compressor::Zstd)
        {
            return None;
        }
        let streams = blosc::streams(src).ok()?;
        let mut frames = Vec::with_capacity(streams.len());
        let mut raws = Vec::new();
        let mut at = reg.staging;
        let end = reg.staging + reg.staging_len;
        let mut copies = Vec::with_capacity(streams.len());
        for s in &streams {
            let out_off = reg.arena + (s.block * lay.blocksize + s.offset) as u64;
            let bytes = src.get(s.src.clone())?;
            let off = align_up(at, self.in_align);
            if off + bytes.len() as u64 > end {
                return None;
            }
            if s.raw {
                raws.push(Raw { comp_off: off, out_off, len: s.len as u64 });
            } else {
                if s.len as u64 > MAX_GPU_STREAM
                    || !out_off.is_multiple_of(self.out_align)
                    || kernels::check_zstd_frame(bytes, s.len as u64).is_err()
                {
                    return None;
                }
                frames.push(Frame {
                    gds: false,
                    chunk: li,
                    comp_off: off,
                    comp_len: bytes.len() as u64,
                    out_off,
                    len: s.len as u64,
                });
            }
            copies.push((off, bytes));
            at = off + bytes.len() as u64;
        }
        for (off, bytes) in copies {
            // SAFETY: inside this chunk's staging region (checked), owned by this job.
            unsafe { Self::pinned(&self.staging, off, bytes.len() as u64) }?.copy_from_slice(bytes);
        }
        local.streams.extend(frames);
        local.raws.extend(raws);
        let shuffle = match lay.shuffle {
            blosc::Shuffle::None => Shuffle::None,
            blosc::Shuffle::Byte => Shuffle::Byte,
            blosc::Shuffle::Bit => Shuffle::Bit,
        };
        Some(if shuffle == Shuffle::None {
            ShuffleSpec::default()
        } else {
            ShuffleSpec { shuffle, typesize: lay.typesize as u32, blocksize: lay.blocksize as u64 }
        })
    }
}

#[cfg(test)]
mod tests;
