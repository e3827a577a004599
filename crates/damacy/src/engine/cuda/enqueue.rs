//! One staged wave's device work: uploads on `h2d`; nvCOMP decode, raw block copies, the
//! status reduction and the assembly on `compute`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use kernels::nvcomp::ZstdBatch;
use kernels::{CopyRange, DeviceRange, Placement, ShuffleSpec};
use planner::ChunkSource;
use zarr::DataType;

use super::core::{Engine, WaveBufs};
use super::harvest::{ChunkOrigin, Harvest};
use super::stage::{ChunkState, WaveState, WaveWork};
use super::{DESC_CAP, REGION_ALIGN, align_up, gpu_err, gs};
use crate::error::{Error, Result};
use crate::stats::StatCounters;

/// One placement of a staged chunk into the batch, owning the coordinates that the
/// packed [`Placement`] borrows.
struct StagedPlacement {
    /// Device address of the chunk's decoded bytes in the wave's arena.
    src: u64,
    src_dtype: DataType,
    shuffle: ShuffleSpec,
    /// The chunk's array (index into the batch's arrays).
    array: usize,
    in_chunk_lo: Vec<u64>,
    /// Batch position of the sample.
    sample: u64,
    in_sample_lo: Vec<u64>,
    extent: Vec<u64>,
}

impl Engine {
    /// Enqueues a staged wave's device work: uploads on `h2d`; nvCOMP decode, raw block
    /// copies, the status reduction and the assembly on `compute`; records `done`.
    pub(super) fn submit_wave(
        &self,
        work: &WaveWork,
        k: usize,
        out: (u64, u64),
        state: &WaveState,
        w: &WaveBufs,
        stats: &StatCounters,
    ) -> Result<Harvest> {
        let ctx = &work.ctx;
        let plan = &ctx.plan;
        let Some(wave) = plan.waves.get(k) else {
            return Err(gpu_err("staging a wave", "wave index out of range"));
        };
        let t = Instant::now();
        let h2d = self.cu("h2d")?;
        let compute = self.cu("compute")?;
        let staging_used = work.staging_used as usize;
        if staging_used > 0 && (!state.streams.is_empty() || !state.raws.is_empty()) {
            // The workers finished writing the pinned side (joined by the caller).
            gs(
                "staging upload",
                self.backend.copy_range_to_device(
                    h2d,
                    &w.d_staging,
                    0,
                    &w.staging,
                    0,
                    staging_used,
                ),
            )?;
        }
        // CPU-decoded chunks, merged into runs.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (i, cs) in state.chunk_state.iter().enumerate() {
            if let (ChunkState::Cpu, Some(r)) = (cs, work.regions[i]) {
                let len = plan.chunks[wave.chunks.start + i].decompressed_len();
                match runs.last_mut() {
                    Some(last) if align_up(last.0 + last.1, REGION_ALIGN) == r.arena => {
                        last.1 = r.arena + len - last.0;
                    }
                    _ => runs.push((r.arena, len)),
                }
            }
        }
        for (off, len) in &runs {
            // Both buffers share the arena layout.
            let (o, l) = (*off as usize, *len as usize);
            gs(
                "decoded upload",
                self.backend.copy_range_to_device(h2d, &w.arena, o, &w.decoded, o, l),
            )?;
        }
        // nvCOMP metadata: [comp ptrs][comp bytes][capacity][out ptrs][actual][expected]
        // [statuses][copy ranges][report].
        let n = state.streams.len();
        if n as u64 > self.sizing.streams || state.raws.len() as u64 > self.sizing.streams {
            // The metadata buffers were sized for `streams` entries of each kind.
            return Err(Error::Gpu {
                what: "staging a wave",
                detail: format!(
                    "{n} zstd streams and {} raw blocks exceed the {} per wave the engine \
                     was sized for",
                    state.raws.len(),
                    self.sizing.streams
                ),
            });
        }
        let n8 = n as u64 * 8;
        let (o_cp, o_cb, o_cap, o_op, o_act, o_exp) = (0, n8, 2 * n8, 3 * n8, 4 * n8, 5 * n8);
        let o_st = 6 * n8;
        let o_raw = align_up(o_st + n as u64 * 4, 8);
        let o_rep = align_up(o_raw + state.raws.len() as u64 * 24, 8);
        if o_rep + 8 > w.meta_host.len() as u64 {
            return Err(gpu_err("staging a wave", "metadata larger than its buffer"));
        }
        let base = w.meta.device_ptr();
        let dst0 = w.d_staging.device_ptr();
        let ar0 = w.arena.device_ptr();
        let mut max_len = 0u64;
        {
            // SAFETY: the slot is leased by this thread and its previous device use
            // finished before it was released (harvested after `done`); in bounds
            // (checked above).
            let meta =
                unsafe { std::slice::from_raw_parts_mut(w.meta_host.as_ptr(), o_rep as usize) };
            for (i, f) in state.streams.iter().enumerate() {
                let mut put = |off: u64, v: u64| {
                    let at = off as usize + i * 8;
                    meta[at..at + 8].copy_from_slice(&v.to_ne_bytes());
                };
                put(o_cp, dst0 + f.comp_off);
                put(o_cb, f.comp_len);
                put(o_cap, f.len);
                put(o_op, ar0 + f.out_off);
                put(o_exp, f.len);
                max_len = max_len.max(f.len);
            }
            let ranges: Vec<CopyRange> = state
                .raws
                .iter()
                .map(|r| CopyRange { src: dst0 + r.comp_off, dst: ar0 + r.out_off, len: r.len })
                .collect();
            meta[o_raw as usize..o_raw as usize + ranges.len() * 24]
                .copy_from_slice(bytemuck::cast_slice(&ranges));
        }
        gs(
            "metadata upload",
            self.backend.copy_range_to_device(h2d, &w.meta, 0, &w.meta_host, 0, o_rep as usize),
        )?;
        gs("cuEventRecord", w.h2d_done.record(h2d))?;
        gs("cuStreamWaitEvent", w.h2d_done.wait_in(compute))?;
        let r = |off: u64, len: u64| {
            // SAFETY: inside this slot's metadata allocation, whose size covers
            // `streams` entries (checked above).
            unsafe { DeviceRange::from_raw(base + off, len) }
        };
        if let Some(dec) = &self.decoder {
            let cap = dec.capacity().0;
            let mut i = 0;
            while i < n {
                let m = (n - i).min(cap);
                let at = i as u64 * 8;
                let batch = ZstdBatch {
                    chunks: m,
                    max_chunk_bytes: max_len as usize,
                    comp_ptrs: r(o_cp + at, m as u64 * 8),
                    comp_bytes: r(o_cb + at, m as u64 * 8),
                    out_capacity: r(o_cap + at, m as u64 * 8),
                    out_ptrs: r(o_op + at, m as u64 * 8),
                    out_actual: r(o_act + at, m as u64 * 8),
                    statuses: r(o_st + i as u64 * 4, m as u64 * 4),
                };
                // SAFETY: frames were checked on the host and staged whole; outputs are
                // disjoint arena regions of the given capacity.
                unsafe { dec.decode(compute, &batch) }.map_err(|e| gpu_err("nvCOMP decode", e))?;
                i += m;
            }
        }
        if !state.raws.is_empty() {
            // SAFETY: raw streams staged whole, destinations disjoint arena ranges.
            unsafe {
                self.kernels.memcpy_batch(
                    compute,
                    r(o_raw, state.raws.len() as u64 * 24),
                    state.raws.len() as u32,
                )
            }
            .map_err(|e| gpu_err("memcpy_batch", e))?;
        }
        self.kernels
            .status_reduce(
                compute,
                r(o_st, n as u64 * 4),
                r(o_act, n8),
                r(o_exp, n8),
                n as u32,
                r(o_rep, 8),
            )
            .map_err(|e| gpu_err("status_reduce", e))?;
        // Read by the host only after `done`.
        gs(
            "report download",
            self.backend.copy_range_to_pinned(compute, &w.report, 0, &w.meta, o_rep as usize, 8),
        )?;
        // Assemble.
        let mut keep = Vec::new();
        for (i, cs) in state.chunk_state.iter().enumerate() {
            let shuffle = match cs {
                ChunkState::Failed => continue,
                ChunkState::Cpu => ShuffleSpec::default(),
                ChunkState::Gpu(spec) => *spec,
            };
            let Some(reg) = work.regions[i] else { continue };
            let chunk = &plan.chunks[wave.chunks.start + i];
            let Some(facts) = ctx.facts.get(chunk.array.index()) else { continue };
            for p in &chunk.placements {
                keep.push(StagedPlacement {
                    src: ar0 + reg.arena,
                    src_dtype: facts.repr.data_type,
                    shuffle,
                    array: chunk.array.index(),
                    in_chunk_lo: p.in_chunk.lo.clone(),
                    sample: ctx.positions[p.sample] as u64,
                    in_sample_lo: p.in_sample.lo.clone(),
                    extent: p.in_chunk.shape(),
                });
            }
        }
        let places: Vec<Placement<'_>> = keep
            .iter()
            .map(|k| Placement {
                src: k.src,
                src_dtype: k.src_dtype,
                shuffle: k.shuffle,
                chunk_shape: &ctx.facts[k.array].repr.shape,
                in_chunk_lo: &k.in_chunk_lo,
                sample: k.sample,
                sample_shape: &ctx.sample_shape,
                in_sample_lo: &k.in_sample_lo,
                extent: &k.extent,
            })
            .collect();
        let kind = ctx.out_dtype;
        let mut used = 0u64;
        for piece in places.chunks(DESC_CAP) {
            let packed = kernels::pack_placements(piece, kind, ctx.out_elems)
                .map_err(|e| gpu_err("pack placements", e))?;
            self.with_descs(w, &mut used, bytemuck::cast_slice(&packed), |b| {
                // SAFETY: the leased batch buffer, held until the batch is handed out.
                let d = unsafe { DeviceRange::from_raw(out.0, out.1) };
                // SAFETY: sources are arena regions written earlier on this stream
                // (decode, memcpy) or on `h2d` (ordered by `h2d_done`); descriptors
                // validated by packing and copied before the launch on this stream.
                unsafe { self.kernels.assemble(compute, kind, d, b, packed.len() as u32) }
                    .map_err(|e| gpu_err("assemble", e))
            })?;
        }
        gs("cuEventRecord", w.done.record(compute))?;
        stats.h2d_bytes.fetch_add(
            staging_used as u64 + runs.iter().map(|r| r.1).sum::<u64>(),
            Ordering::Relaxed,
        );
        stats.gpu_submit_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let mut chunks_meta = Vec::with_capacity(wave.chunks.len());
        for chunk in plan.chunks.get(wave.chunks.clone()).unwrap_or(&[]) {
            let key = match chunk.source {
                ChunkSource::Copy { read, .. } => plan
                    .reads
                    .get(read)
                    .and_then(|op| plan.files.get(op.file))
                    .map(|f| Arc::clone(&f.key))
                    .unwrap_or_else(|| Arc::from("")),
                ChunkSource::Fill { .. } => Arc::from(""),
            };
            chunks_meta.push(ChunkOrigin {
                key,
                coords: chunk.chunk.clone(),
                samples: chunk.placements.iter().map(|p| p.sample).collect(),
            });
        }
        Ok(Harvest {
            stream_chunk: state.streams.iter().map(|f| f.chunk as u32).collect(),
            chunks: chunks_meta,
            statuses_off: o_st,
            actual_off: o_act,
            expected_off: o_exp,
        })
    }

    /// Uploads one descriptor piece and calls `launch` with its device range, on
    /// `compute`: through the wave slot's pinned buffer while it has room (an asynchronous
    /// copy), else from pageable memory into the slot's device buffer (the driver copies
    /// it before returning; the launch reading it is ordered after, on the same stream).
    fn with_descs(
        &self,
        w: &WaveBufs,
        used: &mut u64,
        packed: &[u8],
        launch: impl FnOnce(DeviceRange) -> Result<()>,
    ) -> Result<()> {
        let compute = self.cu("compute")?;
        let len = packed.len() as u64;
        if *used + len <= w.descs_host.len() as u64 {
            let at = *used as usize;
            // SAFETY: the slot is leased by this thread; the device read its previous
            // contents before the slot was released (harvested after `done`).
            unsafe { std::slice::from_raw_parts_mut(w.descs_host.as_ptr().add(at), packed.len()) }
                .copy_from_slice(packed);
            gs(
                "descriptor upload",
                self.backend.copy_range_to_device(
                    compute,
                    &w.descs,
                    at,
                    &w.descs_host,
                    at,
                    packed.len(),
                ),
            )?;
            *used = align_up(*used + len, REGION_ALIGN);
            // SAFETY: inside the slot's descriptor allocation.
            return launch(unsafe { DeviceRange::from_raw(w.descs.device_ptr() + at as u64, len) });
        }
        let dst = &w.descs;
        gs("upload", self.backend.upload(compute, dst, 0, packed))?;
        // SAFETY: a live allocation of this engine, written just before on this stream.
        launch(unsafe { DeviceRange::from_raw(dst.device_ptr(), dst.len() as u64) })
    }
}
