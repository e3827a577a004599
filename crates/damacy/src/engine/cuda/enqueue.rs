//! One staged wave's device work: uploads on `h2d`; nvCOMP decode, raw block copies and
//! the status reduction on the slot's decode stream; the assembly on `compute`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use kernels::{CopyRange, DeviceRange, Placement, ShuffleSpec, ZstdBatch};
use planner::{BatchPlan, ChunkSource, Wave};
use zarr::DataType;

use super::core::{DescsAt, Engine, WaveBufs};
use super::device::Device;
use super::harvest::{ChunkOrigin, Failure, Harvest};
use super::stage::{BatchCtx, ChunkState, StageMem, WaveState, WaveWork};
use super::{DESC_CAP, REGION_ALIGN, align_up, gpu_err, gs};
use crate::decoded_cache::{self, DeviceChunk};
use crate::error::{GpuError, PlanFault, Result, SampleError};
use crate::fault::Fault;
use crate::stats::StatCounters;

/// One placement of a staged (or cached) chunk into the batch, owning the coordinates
/// that the packed [`Placement`] borrows.
pub(super) struct StagedPlacement {
    /// Device address of the chunk's decoded bytes in the wave's arena.
    src: u64,
    src_dtype: DataType,
    shuffle: ShuffleSpec,
    /// The chunk's array (index into the batch's arrays).
    array: usize,
    in_chunk_lo: zarr::Dims,
    /// Batch position of the sample.
    sample: u64,
    in_sample_lo: zarr::Dims,
    extent: zarr::Dims,
}

/// Where each array of a wave's nvCOMP metadata lives in its slot's `meta` buffer (byte
/// offsets), in this order: comp ptrs, comp bytes, capacity, out ptrs, actual, expected
/// (a u64 per stream each), statuses (an i32 per stream), copy ranges (a `CopyRange` per
/// raw block), the report.
#[derive(Debug, Clone, Copy)]
struct MetaLayout {
    /// Device address of the slot's `meta` buffer.
    base: u64,
    /// zstd streams: entries of each per-stream array.
    streams: usize,
    /// Raw blosc blocks: entries of the copy ranges.
    raws: usize,
    comp_ptrs: u64,
    comp_bytes: u64,
    capacity: u64,
    out_ptrs: u64,
    actual: u64,
    expected: u64,
    statuses: u64,
    ranges: u64,
    report: u64,
}

impl MetaLayout {
    /// Bytes of one per-stream u64 array.
    fn n8(&self) -> u64 {
        self.streams as u64 * 8
    }

    /// `len` bytes at `off` of the slot's device metadata.
    fn range(&self, off: u64, len: u64) -> DeviceRange {
        // SAFETY: inside this slot's metadata allocation, whose size covers `streams`
        // entries (checked by `meta_layout`); callers pass ranges inside the layout.
        unsafe { DeviceRange::from_raw(self.base + off, len) }
    }
}

impl<D: Device> Engine<D> {
    /// Enqueues a staged wave's device work: uploads on `h2d`; nvCOMP decode (the slot's
    /// decoder), raw block copies and the status reduction on the slot's decode stream, so
    /// that waves of different slots decode at once; the assembly on `compute`, in wave
    /// order (the only stream that writes batch buffers); records `done` on `compute`,
    /// after all of it. The
    /// state is the wave's after [`WaveWork::take_state`]: every chunk it marks staged or
    /// decoded can be placed.
    ///
    /// # Errors
    /// The failed call, as a failure of the wave's batch.
    pub(super) fn submit_wave(
        &self,
        work: &WaveWork<D::PinMem>,
        k: usize,
        out: (u64, u64),
        state: &mut WaveState,
        w: &WaveBufs<D>,
        stats: &StatCounters,
    ) -> std::result::Result<Harvest, Failure> {
        let plan = &work.ctx.plan;
        let Some(wave) = plan.waves.get(k) else {
            let fault = PlanFault::Wave { wave: k };
            return Err(Failure::Batch(SampleError::PlanInconsistent {
                stage: "CUDA submit",
                fault,
            }));
        };
        let t = Instant::now();
        let h2d = self.cu("h2d")?;
        let compute = self.cu("compute")?;
        let decode = self.cu(w.decode_stream)?;
        if state.streams.iter().any(|f| f.gds) {
            self.check_gds_frames(work, state, w, decode, stats)?;
        }
        let state = &*state;
        self.upload_staging(work, state, w, h2d)?;
        let runs = cpu_runs(work, wave, state);
        self.upload_runs(&runs, w, h2d)?;
        let layout = self.meta_layout(state, w)?;
        let max_len = write_meta(&layout, state, w, &|| self.faults.fire(Fault::DecodeFailure));
        gs(
            "metadata upload",
            self.dev.copy_range_to_device(h2d, &w.meta, 0, &w.meta_host, 0, layout.report as usize),
        )?;
        let cache_copies = self.stage_cache_copies(work, wave, state, w);
        if cache_copies > 0 {
            gs(
                "cache ranges upload",
                self.dev.copy_range_to_device(
                    h2d,
                    &w.cache_ranges,
                    0,
                    &w.cache_ranges_host,
                    0,
                    cache_copies * 24,
                ),
            )?;
        }
        gs("cuEventRecord", self.dev.record(&w.h2d_done, h2d))?;
        gs("cuStreamWaitEvent", self.dev.wait_in(&w.h2d_done, decode))?;
        gs("cuLaunchKernel", self.faults.driver(Fault::WaveSubmit, "cuLaunchKernel"))?;
        self.decode_streams(&layout, max_len, w.index, decode)?;
        self.copy_raw_blocks(&layout, decode)?;
        self.reduce_statuses(&layout, w, decode)?;
        if cache_copies > 0 {
            let ranges = D::dev_range(&w.cache_ranges);
            // SAFETY: arena regions of this wave, decoded above on this stream (or uploaded
            // on `h2d`, ordered by `h2d_done`), into disjoint blocks of the cache
            // allocation, which stay allocated until the batch's claims are settled after
            // its device work completed; the ranges were uploaded on `h2d` before
            // `h2d_done`.
            unsafe { self.dev.memcpy_batch(decode, ranges, cache_copies as u32) }
                .map_err(|e| gpu_err("memcpy_batch", e))?;
        }
        gs("cuEventRecord", self.dev.record(&w.decoded_ev, decode))?;
        gs("cuStreamWaitEvent", self.dev.wait_in(&w.decoded_ev, compute))?;
        self.assemble_wave(work, wave, state, w, out, compute)?;
        gs("cuEventRecord", self.dev.record(&w.done, compute))?;
        stats.h2d_bytes.fetch_add(
            work.staging_used + runs.iter().map(|r| r.1).sum::<u64>(),
            Ordering::Relaxed,
        );
        stats.gpu_submit_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(Harvest {
            stream_chunk: state.streams.iter().map(|f| f.chunk as u32).collect(),
            chunks: chunk_origins(plan, wave),
            statuses_off: layout.statuses,
            actual_off: layout.actual,
            expected_off: layout.expected,
        })
    }

    /// The device frame check of the wave's GPUDirect Storage frames, whose bytes never
    /// passed the host check: it runs on the slot's decode stream over the frames in the
    /// device staging, and its verdicts come back at once (the one host wait of a GDS
    /// wave). A frame that fails is taken off nvCOMP's list, and its chunk is decoded on
    /// this thread from its device bytes, as the host path decodes a frame that fails the
    /// host check: the same data, or the same `Decode` error naming the chunk.
    fn check_gds_frames(
        &self,
        work: &WaveWork<D::PinMem>,
        state: &mut WaveState,
        w: &WaveBufs<D>,
        stream: &D::Stream,
        stats: &StatCounters,
    ) -> Result<()> {
        let gds: Vec<usize> = (0..state.streams.len()).filter(|&i| state.streams[i].gds).collect();
        let n = gds.len();
        // In the slot's metadata buffers, before the wave's own metadata is written:
        // pointers, sizes and expected sizes (a u64 per frame each), then the verdicts.
        let n8 = n as u64 * 8;
        let verdicts_at = align_up(3 * n8, 8);
        let end = verdicts_at + n as u64 * kernels::FrameVerdict::BYTES;
        if end > w.meta_host.len() as u64 {
            let too_large =
                GpuError::MetadataTooLarge { needed: end, len: w.meta_host.len() as u64 };
            return Err(gpu_err("checking GDS frames", too_large));
        }
        let staging0 = D::dev_range(&w.d_staging).ptr();
        // SAFETY: the slot is leased by this thread and its previous device use finished
        // before it was released; in bounds (checked).
        let meta = unsafe { std::slice::from_raw_parts_mut(w.meta_host.as_ptr(), end as usize) };
        for (j, &i) in gds.iter().enumerate() {
            let f = state.streams[i];
            for (k, v) in [staging0 + f.comp_off, f.comp_len, f.len].into_iter().enumerate() {
                let at = k * n8 as usize + j * 8;
                meta[at..at + 8].copy_from_slice(&v.to_ne_bytes());
            }
        }
        gs(
            "GDS frame upload",
            self.dev.copy_range_to_device(stream, &w.meta, 0, &w.meta_host, 0, 3 * n8 as usize),
        )?;
        let base = D::dev_range(&w.meta).ptr();
        // SAFETY: inside the slot's metadata allocation (checked above).
        let range = |off: u64, len: u64| unsafe { DeviceRange::from_raw(base + off, len) };
        let frames = kernels::ZstdFrames {
            count: n as u32,
            comp_ptrs: range(0, n8),
            comp_bytes: range(n8, n8),
            expected: range(2 * n8, n8),
        };
        let verdicts = range(verdicts_at, n as u64 * kernels::FrameVerdict::BYTES);
        // SAFETY: each pointer names a frame read whole into this slot's device staging
        // (the reads retired before the wave's jobs ended); the arrays were uploaded just
        // before on this stream; the verdicts are read only after the sync below.
        unsafe { self.dev.check_frames(stream, &frames, verdicts) }
            .map_err(|e| gpu_err("zstd frame check", e))?;
        gs(
            "verdict download",
            self.dev.copy_range_to_pinned(
                stream,
                &w.meta_host,
                verdicts_at as usize,
                &w.meta,
                verdicts_at as usize,
                (end - verdicts_at) as usize,
            ),
        )?;
        gs("cuEventRecord", self.dev.record(&w.decoded_ev, stream))?;
        gs("cuEventSynchronize", self.dev.sync_event(&w.decoded_ev))?;
        // SAFETY: written by the download above, which completed.
        let meta = unsafe { std::slice::from_raw_parts(w.meta_host.as_ptr(), end as usize) };
        let verdicts: Vec<kernels::FrameVerdict> = meta[verdicts_at as usize..]
            .chunks_exact(kernels::FrameVerdict::BYTES as usize)
            .map(bytemuck::pod_read_unaligned)
            .collect();
        let mut rejected = Vec::new();
        for (&i, v) in gds.iter().zip(&verdicts) {
            if v.result().is_err() {
                rejected.push(i);
            }
        }
        for &i in &rejected {
            let f = state.streams[i];
            let mut src = vec![0u8; f.comp_len as usize];
            gs(
                "GDS frame download",
                self.dev.download(&mut src, &w.d_staging, f.comp_off as usize),
            )?;
            let cs = work.decode_fallback(f.chunk, &src, &mut state.errors);
            if let Some(slot) = state.chunk_state.get_mut(f.chunk) {
                *slot = cs;
            }
        }
        stats.gds_rejected.fetch_add(rejected.len() as u64, Ordering::Relaxed);
        let mut i = 0;
        state.streams.retain(|_| {
            i += 1;
            !rejected.contains(&(i - 1))
        });
        Ok(())
    }

    /// Uploads the staged frames and raw blocks on `h2d`, if the wave has any: the whole
    /// staging prefix, or, in a wave with GPUDirect Storage frames (whose device bytes the
    /// pinned staging must not overwrite), the host-staged runs only.
    fn upload_staging(
        &self,
        work: &WaveWork<D::PinMem>,
        state: &WaveState,
        w: &WaveBufs<D>,
        h2d: &D::Stream,
    ) -> Result<()> {
        if state.streams.iter().any(|f| f.gds) {
            for (off, len) in host_staged_runs(state) {
                let (o, l) = (off as usize, len as usize);
                gs(
                    "staging upload",
                    self.dev.copy_range_to_device(h2d, &w.d_staging, o, &w.staging, o, l),
                )?;
            }
            return Ok(());
        }
        let staging_used = work.staging_used as usize;
        if staging_used > 0 && (!state.streams.is_empty() || !state.raws.is_empty()) {
            // The workers finished writing the pinned side (joined by the caller).
            gs(
                "staging upload",
                self.dev.copy_range_to_device(h2d, &w.d_staging, 0, &w.staging, 0, staging_used),
            )?;
        }
        Ok(())
    }

    /// Uploads the CPU-decoded runs (arena offset, length) on `h2d`.
    fn upload_runs(&self, runs: &[(u64, u64)], w: &WaveBufs<D>, h2d: &D::Stream) -> Result<()> {
        for (off, len) in runs {
            // Both buffers share the arena layout.
            let (o, l) = (*off as usize, *len as usize);
            gs(
                "decoded upload",
                self.dev.copy_range_to_device(h2d, &w.arena, o, &w.decoded, o, l),
            )?;
        }
        Ok(())
    }

    /// The wave's metadata layout, checked against what the slot's buffers were sized for.
    fn meta_layout(&self, state: &WaveState, w: &WaveBufs<D>) -> Result<MetaLayout> {
        let n = state.streams.len();
        if n as u64 > self.sizing.streams || state.raws.len() as u64 > self.sizing.streams {
            // The metadata buffers were sized for `streams` entries of each kind.
            let (streams, raws) = (n as u64, state.raws.len() as u64);
            let too_large = GpuError::WaveTooLarge { streams, raws, limit: self.sizing.streams };
            return Err(gpu_err("staging a wave", too_large));
        }
        let n8 = n as u64 * 8;
        let statuses = 6 * n8;
        let ranges = align_up(statuses + n as u64 * 4, 8);
        let report = align_up(ranges + state.raws.len() as u64 * 24, 8);
        if report + 8 > w.meta_host.len() as u64 {
            let too_large =
                GpuError::MetadataTooLarge { needed: report + 8, len: w.meta_host.len() as u64 };
            return Err(gpu_err("staging a wave", too_large));
        }
        Ok(MetaLayout {
            base: D::dev_range(&w.meta).ptr(),
            streams: n,
            raws: state.raws.len(),
            comp_ptrs: 0,
            comp_bytes: n8,
            capacity: 2 * n8,
            out_ptrs: 3 * n8,
            actual: 4 * n8,
            expected: 5 * n8,
            statuses,
            ranges,
            report,
        })
    }

    /// Decodes the wave's zstd streams with nvCOMP decoder `decoder` on `stream` (the
    /// slot's), at most the decoder's capacity per call; nothing without nvCOMP.
    fn decode_streams(
        &self,
        l: &MetaLayout,
        max_len: u64,
        decoder: usize,
        stream: &D::Stream,
    ) -> Result<()> {
        let Some(cap) = self.dev.decoder_capacity() else { return Ok(()) };
        let n = l.streams;
        let mut i = 0;
        while i < n {
            let m = (n - i).min(cap);
            let at = i as u64 * 8;
            let batch = ZstdBatch {
                chunks: m,
                max_chunk_bytes: max_len as usize,
                comp_ptrs: l.range(l.comp_ptrs + at, m as u64 * 8),
                comp_bytes: l.range(l.comp_bytes + at, m as u64 * 8),
                out_capacity: l.range(l.capacity + at, m as u64 * 8),
                out_ptrs: l.range(l.out_ptrs + at, m as u64 * 8),
                out_actual: l.range(l.actual + at, m as u64 * 8),
                statuses: l.range(l.statuses + i as u64 * 4, m as u64 * 4),
            };
            // SAFETY: frames were checked on the host and staged whole; outputs are
            // disjoint arena regions of the given capacity.
            // The slot's decoder is only ever used on the slot's stream.
            unsafe { self.dev.decode(decoder, stream, &batch) }
                .map_err(|e| gpu_err("nvCOMP decode", e))?;
            i += m;
        }
        Ok(())
    }

    /// Copies the wave's raw (uncompressed) blosc blocks into the arena on `stream`.
    fn copy_raw_blocks(&self, l: &MetaLayout, stream: &D::Stream) -> Result<()> {
        if l.raws == 0 {
            return Ok(());
        }
        // SAFETY: raw streams staged whole, destinations disjoint arena ranges.
        unsafe {
            self.dev.memcpy_batch(stream, l.range(l.ranges, l.raws as u64 * 24), l.raws as u32)
        }
        .map_err(|e| gpu_err("memcpy_batch", e))
    }

    /// Reduces nvCOMP's statuses and sizes into the wave's report on `stream`, and copies
    /// the report into the slot's pinned memory.
    fn reduce_statuses(&self, l: &MetaLayout, w: &WaveBufs<D>, stream: &D::Stream) -> Result<()> {
        let n = l.streams;
        self.dev
            .status_reduce(
                stream,
                l.range(l.statuses, n as u64 * 4),
                l.range(l.actual, l.n8()),
                l.range(l.expected, l.n8()),
                n as u32,
                l.range(l.report, 8),
            )
            .map_err(|e| gpu_err("status_reduce", e))?;
        // Read by the host only after `done`.
        gs(
            "report download",
            self.dev.copy_range_to_pinned(stream, &w.report, 0, &w.meta, l.report as usize, 8),
        )
    }

    /// Assembles every placement of the wave's decoded chunks into the batch buffer `out`
    /// (device address, length) on `compute`.
    fn assemble_wave(
        &self,
        work: &WaveWork<D::PinMem>,
        wave: &Wave,
        state: &WaveState,
        w: &WaveBufs<D>,
        out: (u64, u64),
        compute: &D::Stream,
    ) -> Result<()> {
        let keep = staged_placements(work, wave, state, D::dev_range(&w.arena).ptr());
        let mut at = DescsAt::Staged { descs: &w.descs, used: 0 };
        // SAFETY: the leased batch buffer, held until the batch is handed out; sources
        // are arena regions written earlier on this stream (decode, memcpy) or on `h2d`
        // (ordered by `h2d_done`).
        unsafe { self.assemble_placements(&work.ctx, &keep, out, &mut at, compute) }
    }

    /// Packs `keep`'s placements into descriptors, in pieces of `DESC_CAP`, and launches
    /// the assembly of each piece into the batch buffer `out` (device address, length) on
    /// `compute`, its descriptors copied through `descs` on the same stream first.
    ///
    /// # Safety
    /// `out` is a batch buffer the caller holds until the launches completed, and every
    /// placement's source is device memory whose bytes are written before (in `compute`'s
    /// order) and stay valid until then.
    pub(super) unsafe fn assemble_placements(
        &self,
        ctx: &BatchCtx,
        keep: &[StagedPlacement],
        out: (u64, u64),
        descs: &mut DescsAt<'_, D>,
        compute: &D::Stream,
    ) -> Result<()> {
        let kind = ctx.out_dtype;
        for piece in as_placements(keep, ctx).chunks(DESC_CAP) {
            let packed = kernels::pack_placements(piece, kind, ctx.out_elems)
                .map_err(|e| gpu_err("pack placements", e))?;
            self.with_descs(descs, bytemuck::cast_slice(&packed), |b| {
                // SAFETY: `out` is the caller's held batch buffer (the contract).
                let d = unsafe { DeviceRange::from_raw(out.0, out.1) };
                // SAFETY: the caller's contract covers `out` and the sources; descriptors
                // validated by packing and copied before the launch on this stream.
                unsafe { self.dev.assemble(compute, kind, d, b, packed.len() as u32) }
                    .map_err(|e| gpu_err("assemble", e))
            })?;
        }
        Ok(())
    }
}

/// The staging ranges (offset, length) the workers wrote in pinned memory (host-checked
/// frames, raw blosc blocks), in offset order, touching neighbours merged; GDS frames,
/// whose bytes are already on the device, split runs.
fn host_staged_runs(state: &WaveState) -> Vec<(u64, u64)> {
    let mut items: Vec<(u64, u64, bool)> = state
        .streams
        .iter()
        .map(|f| (f.comp_off, f.comp_len, f.gds))
        .chain(state.raws.iter().map(|r| (r.comp_off, r.len, false)))
        .collect();
    items.sort_unstable_by_key(|i| i.0);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut split = true;
    for (off, len, gds) in items {
        if gds {
            split = true;
            continue;
        }
        match runs.last_mut() {
            Some(last) if !split && last.0 + last.1 == off => last.1 += len,
            _ => runs.push((off, len)),
        }
        split = false;
    }
    runs
}

/// The wave's CPU-decoded chunks as runs of the arena (offset, length), neighbours merged
/// so that each run is one upload.
fn cpu_runs<S: StageMem>(work: &WaveWork<S>, wave: &Wave, state: &WaveState) -> Vec<(u64, u64)> {
    let plan = &work.ctx.plan;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (i, cs) in state.chunk_state.iter().enumerate() {
        // `take_state` failed any chunk without a region.
        if let (ChunkState::Cpu, Some(r)) = (cs, work.regions.get(i).copied().flatten()) {
            let len = plan.chunks.get(wave.chunks.start + i).map_or(0, |c| c.decompressed_len());
            match runs.last_mut() {
                Some(last) if align_up(last.0 + last.1, REGION_ALIGN) == r.arena => {
                    last.1 = r.arena + len - last.0;
                }
                _ => runs.push((r.arena, len)),
            }
        }
    }
    runs
}

/// Writes the nvCOMP pointer and size arrays and the raw copy ranges into the slot's
/// pinned metadata; returns the largest decoded stream. A frame `fail` picks (a test's
/// injected fault, [`Fault::DecodeFailure`]) is expected one byte longer than it decodes
/// to, so that the device's status reduction reports its decode as failed.
fn write_meta<D: Device>(
    l: &MetaLayout,
    state: &WaveState,
    w: &WaveBufs<D>,
    fail: &dyn Fn() -> bool,
) -> u64 {
    let dst0 = D::dev_range(&w.d_staging).ptr();
    let ar0 = D::dev_range(&w.arena).ptr();
    let mut max_len = 0u64;
    // SAFETY: the slot is leased by this thread and its previous device use finished
    // before it was released (harvested after `done`); in bounds (checked by
    // `meta_layout`).
    let meta = unsafe { std::slice::from_raw_parts_mut(w.meta_host.as_ptr(), l.report as usize) };
    for (i, f) in state.streams.iter().enumerate() {
        let mut put = |off: u64, v: u64| {
            let at = off as usize + i * 8;
            meta[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        };
        put(l.comp_ptrs, dst0 + f.comp_off);
        put(l.comp_bytes, f.comp_len);
        put(l.capacity, f.len);
        put(l.out_ptrs, ar0 + f.out_off);
        put(l.expected, if fail() { f.len + 1 } else { f.len });
        max_len = max_len.max(f.len);
    }
    let ranges: Vec<CopyRange> = state
        .raws
        .iter()
        .map(|r| CopyRange { src: dst0 + r.comp_off, dst: ar0 + r.out_off, len: r.len })
        .collect();
    meta[l.ranges as usize..l.ranges as usize + ranges.len() * 24]
        .copy_from_slice(bytemuck::cast_slice(&ranges));
    max_len
}

/// Every placement of the wave's decoded chunks (failed chunks are left out), their
/// sources in the arena at device address `ar0`.
///
/// Failed chunks have their samples reported, and every chunk staged or decoded has a
/// region, its array's facts and a batch position for each sample: `take_state`
/// enforced both before the wave was submitted, so the lookups below always succeed
/// (they are lookups, not indexing, so that a bug cannot become a panic).
fn staged_placements<S: StageMem>(
    work: &WaveWork<S>,
    wave: &Wave,
    state: &WaveState,
    ar0: u64,
) -> Vec<StagedPlacement> {
    let ctx = &work.ctx;
    let plan = &ctx.plan;
    let mut keep = Vec::new();
    for (i, cs) in state.chunk_state.iter().enumerate() {
        let shuffle = match cs {
            ChunkState::Failed => continue,
            ChunkState::Cpu => ShuffleSpec::default(),
            ChunkState::Gpu(spec) => *spec,
        };
        let (Some(reg), Some(chunk)) =
            (work.regions.get(i).copied().flatten(), plan.chunks.get(wave.chunks.start + i))
        else {
            continue;
        };
        let Some(facts) = ctx.facts.get(chunk.array.index()) else { continue };
        for p in &chunk.placements {
            let Some(&pos) = ctx.positions.get(p.sample) else { continue };
            keep.push(StagedPlacement {
                src: ar0 + reg.arena,
                src_dtype: facts.repr.data_type,
                shuffle,
                array: chunk.array.index(),
                in_chunk_lo: p.in_chunk.lo.clone(),
                sample: pos as u64,
                in_sample_lo: p.in_sample.lo.clone(),
                extent: p.in_chunk.shape(),
            });
        }
    }
    keep
}

/// The packed form's view of `keep` (placements of `ctx`'s batch); a placement whose
/// array the batch does not have is left out (the builders never make one).
pub(super) fn as_placements<'a>(
    keep: &'a [StagedPlacement],
    ctx: &'a BatchCtx,
) -> Vec<Placement<'a>> {
    keep.iter()
        .filter_map(|k| {
            Some(Placement {
                src: k.src,
                src_dtype: k.src_dtype,
                shuffle: k.shuffle,
                chunk_shape: &ctx.facts.get(k.array)?.repr.shape,
                in_chunk_lo: &k.in_chunk_lo,
                sample: k.sample,
                sample_shape: &ctx.sample_shape,
                in_sample_lo: &k.in_sample_lo,
                extent: &k.extent,
            })
        })
        .collect()
}

/// Every placement of the batch's decoded-chunk cache hits, their sources the hits'
/// device blocks (pinned by the batch's cache), and the errors (plan samples) of hits the
/// plan or the cache contradicts, which are left out.
pub(super) fn cached_placements(
    ctx: &BatchCtx,
) -> (Vec<StagedPlacement>, Vec<(usize, SampleError)>) {
    let plan = &ctx.plan;
    let (mut keep, mut errors) = (Vec::new(), Vec::new());
    let Some(cached) = plan.chunks.get(plan.cached.clone()) else {
        let fault = PlanFault::Chunks { start: plan.cached.start, end: plan.cached.end };
        let err = SampleError::PlanInconsistent { stage: "CUDA cache", fault };
        errors.extend((0..ctx.positions.len()).map(|s| (s, err.clone())));
        return (keep, errors);
    };
    for chunk in cached {
        let src = match (chunk.source, &ctx.cache) {
            (ChunkSource::Cached { hit, decompressed_len }, Some(c)) => {
                c.hit_ptr(hit, decompressed_len)
            }
            _ => None,
        };
        let (Some(src), Some(facts)) = (src, ctx.facts.get(chunk.array.index())) else {
            let err = SampleError::Internal { stage: "CUDA cache" };
            errors.extend(chunk.placements.iter().map(|p| (p.sample, err.clone())));
            continue;
        };
        for p in &chunk.placements {
            let Some(&pos) = ctx.positions.get(p.sample) else { continue };
            keep.push(StagedPlacement {
                src,
                src_dtype: facts.repr.data_type,
                // Only chunks decoded in full are cached (`stage_cache_copies`).
                shuffle: ShuffleSpec::default(),
                array: chunk.array.index(),
                in_chunk_lo: p.in_chunk.lo.clone(),
                sample: pos as u64,
                in_sample_lo: p.in_sample.lo.clone(),
                extent: p.in_chunk.shape(),
            });
        }
    }
    (keep, errors)
}

/// Per wave-local chunk, its file key, coordinates and plan samples, for the harvest
/// thread's errors.
fn chunk_origins(plan: &BatchPlan, wave: &Wave) -> Vec<ChunkOrigin> {
    let mut chunks_meta = Vec::with_capacity(wave.chunks.len());
    for chunk in plan.chunks.get(wave.chunks.clone()).unwrap_or(&[]) {
        let key = match chunk.source {
            ChunkSource::Copy { read, .. } => plan
                .reads
                .get(read)
                .and_then(|op| plan.files.get(op.file))
                .map(|f| Arc::clone(&f.key))
                .unwrap_or_else(|| Arc::from("")),
            ChunkSource::Cached { .. } | ChunkSource::Fill { .. } => Arc::from(""),
        };
        chunks_meta.push(ChunkOrigin {
            key,
            coords: chunk.chunk.clone(),
            samples: chunk.placements.iter().map(|p| p.sample).collect(),
        });
    }
    chunks_meta
}

impl<D: Device> Engine<D> {
    /// Writes the copy ranges of the wave's claimed, cacheable chunks (arena → a new
    /// block each) into the slot's pinned ranges and moves their claims to the batch's
    /// copied list; returns how many. A chunk whose block cannot be allocated (the slab is
    /// in pieces) is not cached: its claim is dropped.
    pub(super) fn stage_cache_copies(
        &self,
        work: &WaveWork<D::PinMem>,
        wave: &Wave,
        state: &WaveState,
        w: &WaveBufs<D>,
    ) -> usize {
        let (Some(mem), Some(cache)) = (&self.cache_mem, &work.ctx.cache) else { return 0 };
        let plan = &work.ctx.plan;
        if !cache.has_claims() {
            return 0;
        }
        let ar0 = D::dev_range(&w.arena).ptr();
        let mut ranges = Vec::new();
        let mut copied = Vec::new();
        for (i, cs) in state.chunk_state.iter().enumerate() {
            let cacheable = match cs {
                ChunkState::Cpu => true,
                ChunkState::Gpu(spec) => *spec == ShuffleSpec::default(),
                ChunkState::Failed => false,
            };
            let (true, Some(reg), Some(chunk)) = (
                cacheable,
                work.regions.get(i).copied().flatten(),
                plan.chunks.get(wave.chunks.start + i),
            ) else {
                continue;
            };
            let Some(key) = decoded_cache::copy_key(plan, chunk) else { continue };
            let Some(claim) = cache.take_claim(&key) else { continue };
            let decompressed_len = chunk.decompressed_len();
            let Some(block) = chunk_cache::slab::Slab::alloc(&mem.slab, decompressed_len) else {
                continue;
            };
            let ptr = mem.base + block.offset();
            ranges.push(CopyRange { src: ar0 + reg.arena, dst: ptr, len: decompressed_len });
            copied.push((claim, DeviceChunk { _block: block, ptr, len: decompressed_len }));
        }
        let bytes: &[u8] = bytemuck::cast_slice(&ranges);
        let n = ranges.len();
        if bytes.len() > w.cache_ranges_host.len() {
            // Sized for a range per chunk of a wave: cannot happen; nothing is cached.
            return 0;
        }
        // SAFETY: the slot is leased by the submit thread and its previous device use
        // finished before it was released (harvested after `done`); in bounds (checked).
        unsafe {
            std::slice::from_raw_parts_mut(w.cache_ranges_host.as_ptr(), bytes.len())
                .copy_from_slice(bytes);
        }
        cache.add_copied(copied);
        n
    }
}
