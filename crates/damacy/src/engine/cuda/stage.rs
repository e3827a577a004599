//! The decode workers' part of a wave: read each read op, check and stage zstd frames in
//! the wave slot's pinned memory, or decode on the CPU into it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use gpu_schedule::CudaPinnedMem;
use kernels::{Shuffle, ShuffleSpec};
use planner::{ArrayEntry, BatchPlan, ChunkPlan, ChunkSource};

use super::route::{Route, cpu_takes};
use super::{MAX_GPU_STREAM, align_up};
use crate::config::OutDtype;
use crate::engine::{ArrayFacts, Job, Worker};
use crate::error::SampleError;
use crate::stats::StatCounters;

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
pub(super) struct WaveWork {
    pub(super) ctx: BatchCtx,
    pub(super) chunks0: usize,
    pub(super) regions: Vec<Option<Region>>,
    /// Bytes of `staging` the regions span (what is uploaded).
    pub(super) staging_used: u64,
    /// Per mille of the GPU-decodable chunks decoded by the workers instead.
    pub(super) cpu_share: u32,
    pub(super) staging: CudaPinnedMem,
    pub(super) decoded: CudaPinnedMem,
    pub(super) gpu: bool,
    pub(super) in_align: u64,
    pub(super) out_align: u64,
    pub(super) state: Mutex<WaveState>,
    pub(super) remaining: AtomicUsize,
    pub(super) done: (Mutex<bool>, Condvar),
}

/// One read op of a wave, for the decode workers.
pub(super) struct WaveJob {
    pub(super) work: Arc<WaveWork>,
    pub(super) read: usize,
}

impl Job for WaveJob {
    fn run(self: Box<Self>, w: &mut Worker<'_>) {
        self.work.run(self.read, w.store, w.scratch.read_buf(), w.stats);
    }
}

impl WaveWork {
    pub(super) fn wait(&self) {
        let mut d = self.done.0.lock().unwrap_or_else(|e| e.into_inner());
        while !*d {
            d = self.done.1.wait(d).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn finish_job(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.done.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.done.1.notify_all();
        }
    }

    /// A mutable view of `len` pinned bytes at `off` of `mem`.
    ///
    /// # Safety
    /// Chunk regions are disjoint and each is written by the one job owning its read op;
    /// the device reads them only after every job finished.
    #[allow(clippy::mut_from_ref)]
    unsafe fn pinned(mem: &CudaPinnedMem, off: u64, len: u64) -> Option<&mut [u8]> {
        let end = off.checked_add(len)?;
        if end > mem.len() as u64 {
            return None;
        }
        // SAFETY: in bounds (checked); exclusivity per the contract above.
        Some(unsafe {
            std::slice::from_raw_parts_mut(mem.as_ptr().add(off as usize), len as usize)
        })
    }

    /// Runs read op `r`: read, check and stage frames, or decode on the CPU.
    pub(super) fn run(
        &self,
        r: usize,
        store: &dyn store::Store,
        buf: &mut Vec<u8>,
        stats: &StatCounters,
    ) {
        self.run_inner(r, store, buf, stats);
        self.finish_job();
    }

    fn run_inner(
        &self,
        r: usize,
        store: &dyn store::Store,
        buf: &mut Vec<u8>,
        stats: &StatCounters,
    ) {
        let plan = &self.ctx.plan;
        let (Some(op), Some(group)) = (plan.reads.get(r), plan.group(r)) else { return };
        let Some(file) = plan.files.get(op.file) else { return };
        let mut local = WaveState::default();
        let fail_all = |local: &mut WaveState, err: SampleError| {
            for c in group {
                local.errors.extend(c.placements.iter().map(|p| (p.sample, err.clone())));
            }
        };
        let Ok(len) = usize::try_from(op.len) else {
            fail_all(
                &mut local,
                SampleError::Format(zarr::Error::Overflow { what: "read length" }),
            );
            self.merge(local, &[]);
            return;
        };
        buf.resize(len, 0);
        let t = Instant::now();
        let read = store.read_exact(&file.key, op.offset, &mut buf[..len]);
        stats.io_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if let Err(e) = read {
            fail_all(&mut local, SampleError::Store(e));
            self.merge(local, &[]);
            return;
        }
        let mut states = Vec::with_capacity(group.len());
        for (j, chunk) in group.iter().enumerate() {
            let gi = op.chunks.start + j;
            let li = gi.wrapping_sub(self.chunks0);
            if let Some(state) = self.stage_chunk(li, chunk, &file.key, buf, stats, &mut local) {
                states.push((li, state));
            }
        }
        self.merge(local, &states);
    }

    /// Stages wave-local chunk `li` of the read in `buf` for nvCOMP, or decodes it on the
    /// CPU; its state, or `None` for a chunk this job leaves alone (a fill chunk, one of
    /// an unknown array, or bytes outside the read).
    fn stage_chunk(
        &self,
        li: usize,
        chunk: &ChunkPlan,
        key: &str,
        buf: &[u8],
        stats: &StatCounters,
        local: &mut WaveState,
    ) -> Option<ChunkState> {
        let ChunkSource::Copy { offset_in_read, compressed_len, decompressed_len, .. } =
            chunk.source
        else {
            return None;
        };
        let a = chunk.array.index();
        let (Some(entry), Some(facts), Some(route)) =
            (self.ctx.arrays.get(a), self.ctx.facts.get(a), self.ctx.routes.get(a))
        else {
            return None;
        };
        let Some(reg) = self.regions.get(li).copied().flatten() else {
            let err = SampleError::Unsupported {
                path: PathBuf::from(key),
                what: "a chunk larger than the CUDA engine's wave buffers",
            };
            local.errors.extend(chunk.placements.iter().map(|p| (p.sample, err.clone())));
            return Some(ChunkState::Failed);
        };
        let lo = offset_in_read as usize;
        let src = buf.get(lo..lo.saturating_add(compressed_len as usize))?;
        let t = Instant::now();
        let staged = self.stage_for_gpu(li, *route, reg, src, decompressed_len, local);
        let state = match staged {
            Some(spec) => ChunkState::Gpu(spec),
            None => match self.decode_on_cpu(entry, facts, reg, src, decompressed_len) {
                Ok(()) => ChunkState::Cpu,
                Err(source) => {
                    let err = SampleError::Decode {
                        path: PathBuf::from(key),
                        chunk: chunk.chunk.clone(),
                        source,
                    };
                    local.errors.extend(chunk.placements.iter().map(|p| (p.sample, err.clone())));
                    ChunkState::Failed
                }
            },
        };
        stats.decode_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Some(state)
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

    /// Decodes a chunk on the worker straight into its region of the pinned arena.
    fn decode_on_cpu(
        &self,
        entry: &ArrayEntry,
        facts: &ArrayFacts,
        reg: Region,
        src: &[u8],
        dlen: u64,
    ) -> Result<(), zarr::Error> {
        // SAFETY: this chunk's arena region, owned by this job.
        let out = unsafe { Self::pinned(&self.decoded, reg.arena, dlen) };
        match out {
            Some(out) => zarr::decode_chunk(entry.chunk_codecs(), &facts.repr, src, out),
            None => Err(zarr::Error::Overflow { what: "arena region" }),
        }
    }

    fn merge(&self, local: WaveState, states: &[(usize, ChunkState)]) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
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
