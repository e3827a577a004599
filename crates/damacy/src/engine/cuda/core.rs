//! The CUDA engine's core: the opened device, its streams, kernels and nvCOMP decoder,
//! and the pools of device batch buffers and wave slots, all allocated at construction.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use gpu_schedule::{
    EdgeTable, Endpoint, Lease, Pool, PoolSpec, Scheduler, SchedulerConfig, Stream,
};
use kernels::{DeviceRange, FillSpec};

use super::device::Device;
use super::route::cpu_share_from_env;
use super::sizing::{Sizing, cache_ranges_bytes, meta_bytes};
use super::stage::{GdsRead, StageMem};
use super::{
    DECODE_STREAMS, DESC_BYTES, DESC_CAP, END_DESC_BYTES, REGION_ALIGN, STAGING_PAD, align_up,
    gpu_err, gs,
};
use crate::config::{Config, Gds};
use crate::engine::lock;
use crate::engine::read_ahead::ReadAhead;
use crate::error::{Error, GpuError, Result};
use crate::fault::{Fault, Faults};
use crate::stats::StatCounters;

/// A descriptor buffer in device memory and its pinned host twin, from which it is
/// copied asynchronously on `compute`.
pub(super) struct Descs<D: Device> {
    pub(super) dev: D::DevMem,
    pub(super) host: D::PinMem,
}

/// Where [`Engine::with_descs`] puts descriptor pieces.
pub(super) enum DescsAt<'a, D: Device> {
    /// A device buffer, written from pageable memory: the driver may wait for the stream
    /// to drain first, so only paths off the pipeline's rhythm use it.
    Pageable(&'a D::DevMem),
    /// A pinned/device pair owned by the caller until its copies ran, filled from
    /// `used` on (advanced per piece); when it is full, the rest goes as `Pageable` into
    /// its device buffer.
    Staged { descs: &'a Descs<D>, used: u64 },
}

/// One wave slot's buffers: host-written pinned memory, its device copies, and the events
/// that order their reuse. Cycled through the `wave_slots` pool.
pub(super) struct WaveBufs<D: Device> {
    pub(super) staging: D::PinMem,
    pub(super) decoded: D::PinMem,
    pub(super) d_staging: D::DevMem,
    pub(super) arena: D::DevMem,
    pub(super) meta: D::DevMem,
    /// Host side of `meta` (nvCOMP pointer arrays, raw copy ranges), copied on `h2d`.
    pub(super) meta_host: D::PinMem,
    /// Assemble and fill descriptors, host and device side.
    pub(super) descs: Descs<D>,
    pub(super) report: D::PinMem,
    /// Copy ranges from the arena into the decoded-chunk cache's blocks, host and device
    /// side (a `CopyRange` per chunk of a wave).
    pub(super) cache_ranges: D::DevMem,
    pub(super) cache_ranges_host: D::PinMem,
    /// GPUDirect Storage reads into `d_staging` (`Config::gds`), when in use.
    pub(super) gds: Option<Arc<dyn GdsRead>>,
    /// The slot's index: its decoder.
    pub(super) index: usize,
    /// The slot's decode stream (`DECODE_STREAMS[index]`).
    pub(super) decode_stream: &'static str,
    pub(super) h2d_done: D::Event,
    /// Recorded on the slot's decode stream after its decode, waited for by `compute`.
    pub(super) decoded_ev: D::Event,
    pub(super) done: D::Event,
}

/// Which device batch buffers are held, and whether the engine can take batches.
#[derive(Debug)]
struct Held {
    /// Per batch buffer: acquired and not released.
    leased: Vec<bool>,
    /// Teardown began: acquires fail with `Closed`.
    closed: bool,
    /// The device became unusable: the call that found it so, and its error. Acquires
    /// fail with `DeviceBroken`.
    broken: Option<(&'static str, GpuError)>,
}

impl Held {
    /// Why nothing can be acquired now, if so.
    fn refusal(&self) -> Option<Error> {
        if self.closed {
            return Some(Error::Closed);
        }
        let (call, source) = self.broken.as_ref()?;
        Some(Error::DeviceBroken { call, source: Box::new(source.clone()) })
    }
}

pub(super) type WaveLease<D> = Lease<<D as Device>::Sched, WaveBufs<D>>;
pub(super) type BatchLease<D> = Lease<<D as Device>::Sched, <D as Device>::DevMem>;

/// The CUDA engine of one pipeline, on device `D` (a GPU, or the simulated one).
pub(super) struct Engine<D: Device> {
    pub(super) dev: D,
    pub(super) in_align: u64,
    pub(super) out_align: u64,
    sched: Scheduler<D::Sched>,
    batches: Pool<D::Sched, D::DevMem>,
    waves: Pool<D::Sched, WaveBufs<D>>,
    held: Mutex<Held>,
    held_cv: Condvar,
    /// Per wave slot: free for the submit thread to take.
    wave_free: Mutex<Vec<bool>>,
    wave_cv: Condvar,
    pub(super) ready: Vec<D::Event>,
    /// Descriptors of fills applied at `pop` (`OnError::Fill`), on `compute`.
    pub(super) descs: D::DevMem,
    /// Per batch buffer: the descriptors of its batch's end (fill boxes, cache hits),
    /// staged by the submit thread while it holds the buffer. Pinned, because a pageable
    /// upload lets the driver wait for `compute` to drain, which held each batch's end
    /// back until the device was idle (the cached epochs' bound, 2026-12-03).
    pub(super) end_descs: Vec<Descs<D>>,
    /// Per mille of GPU-decodable chunks the workers decode instead (`DAMACY_CPU_SHARE`,
    /// default 0). Measured on the H200 (`default`, 16 threads): 100, 200 and 300 per
    /// mille cut throughput from 12.1 to 9.4, 7.6 and 5.8 Gvox/s, since a wave goes to
    /// the device only once its slowest CPU decode is done (docs/PERFORMANCE.md).
    pub(super) cpu_share: u32,
    pub(super) sizing: Sizing,
    pub(super) committed: u64,
    /// Faults armed by a test.
    pub(super) faults: Arc<Faults>,
    /// Where object-store reads of a wave are submitted ahead of its jobs.
    pub(super) read_ahead: Arc<ReadAhead>,
    /// The decoded-chunk cache's device memory, when `chunk_cache_bytes` is set.
    pub(super) cache_mem: Option<CacheMem<D>>,
    /// Whether zstd chunks of local files are read with GPUDirect Storage.
    pub(super) gds: bool,
    /// The pipeline's counters (`gpu_pageable_uploads` is counted here) and timeline.
    stats: Arc<StatCounters>,
}

/// The device memory of the decoded-chunk cache: one allocation of `chunk_cache_bytes`,
/// carved into blocks (one per cached chunk) by a slab allocator. A block goes back to the
/// slab when its cache entry is dropped, which happens only once no batch pins it.
pub(super) struct CacheMem<D: Device> {
    /// Held for the engine's life (the blocks point into it).
    pub(super) _mem: D::DevMem,
    pub(super) slab: Arc<chunk_cache::slab::Slab>,
    /// Device address of the allocation (block offsets are relative to it).
    pub(super) base: u64,
}

impl<D: Device> std::fmt::Debug for Engine<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("device", &self.dev)
            .field("sizing", &self.sizing)
            .finish_non_exhaustive()
    }
}

/// What opening a device found, for [`Engine::build`].
pub(super) struct Opened<D> {
    pub(super) dev: D,
    pub(super) sizing: Sizing,
    /// Device bytes the decoder holds (counted against the budget by `sizing`).
    pub(super) temp: u64,
    /// nvCOMP's alignment of compressed inputs and decoded outputs (1: none).
    pub(super) in_align: u64,
    pub(super) out_align: u64,
}

impl<D: Device> Engine<D> {
    /// Allocates everything on an opened device.
    ///
    /// # Errors
    /// `Gpu` when an allocation or the scheduler's setup fails.
    pub(super) fn build(
        cfg: &Config,
        opened: Opened<D>,
        faults: Arc<Faults>,
        read_ahead: Arc<ReadAhead>,
        stats: Arc<StatCounters>,
    ) -> Result<Self> {
        let Opened { dev, sizing, temp, in_align, out_align } = opened;
        let backend = Arc::clone(dev.sched());
        let mut streams = vec!["h2d", "compute", "consumer"];
        streams.extend(DECODE_STREAMS.iter().take(sizing.waves));
        let sched = Scheduler::new(
            Arc::clone(&backend),
            &SchedulerConfig { streams, movers: 1, orderable_on_device: true },
        )
        .map_err(|e| gpu_err("scheduler", e))?;
        let n = sizing.buffers;
        let table = Arc::new(
            EdgeTable::new(Arc::clone(&backend), n.max(sizing.waves))
                .map_err(|e| gpu_err("edge table", e))?,
        );
        let batches = batch_pool(&dev, &table, n, &sizing)?;
        let ready = (0..n).map(|_| new_event(&dev)).collect::<Result<Vec<_>>>()?;
        let (waves, gds) = wave_pool(&dev, &table, &sizing, cfg.gds)?;
        let descs =
            dev.alloc_device(DESC_BYTES as usize).map_err(|e| gpu_err("descriptor buffer", e))?;
        let end_descs =
            (0..n).map(|_| new_descs(&dev, END_DESC_BYTES)).collect::<Result<Vec<_>>>()?;
        let committed = sizing.device_bytes + temp * sizing.waves as u64;
        let cache_mem = match cfg.chunk_cache_bytes {
            0 => None,
            bytes => {
                let mem = dev
                    .alloc_device(bytes as usize)
                    .map_err(|e| gpu_err("decoded-chunk cache", e))?;
                let base = D::dev_range(&mem).ptr();
                let slab =
                    chunk_cache::slab::Slab::new(bytes, crate::decoded_cache::DEVICE_BLOCK_ALIGN);
                Some(CacheMem { _mem: mem, slab, base })
            }
        };
        Ok(Self {
            dev,
            in_align: in_align.max(1),
            out_align: out_align.max(1),
            sched,
            batches,
            waves,
            held: Mutex::new(Held { leased: vec![false; n], closed: false, broken: None }),
            held_cv: Condvar::new(),
            wave_free: Mutex::new(vec![true; sizing.waves]),
            wave_cv: Condvar::new(),
            ready,
            descs,
            end_descs,
            cpu_share: cpu_share_from_env(),
            sizing,
            committed,
            faults,
            read_ahead,
            cache_mem,
            gds,
            stats,
        })
    }

    /// Waves whose reads may be with the workers while the submit thread waits for the
    /// oldest: one fewer than the slots, so that one slot is always the device's.
    pub(super) fn ahead(&self) -> usize {
        self.sizing.waves.saturating_sub(1).max(1)
    }

    /// The CPU's current decode share, per mille.
    pub(super) fn cpu_share(&self) -> u64 {
        u64::from(self.cpu_share)
    }

    /// Whether a batched zstd decoder (nvCOMP, or its twin) decodes on this engine.
    pub(super) fn has_decoder(&self) -> bool {
        self.dev.decoder_capacity().is_some()
    }

    fn stream(&self, name: &'static str) -> Result<&Stream<D::Sched>> {
        self.sched.stream(name).map_err(|e| gpu_err("stream", e))
    }

    pub(super) fn cu(&self, name: &'static str) -> Result<&D::Stream> {
        Ok(self.stream(name)?.raw())
    }

    pub(super) fn bind(&self) -> Result<()> {
        gs("binding the device", self.dev.bind())
    }

    /// Why nothing can be acquired now (teardown, a broken device), if so.
    fn refusal(&self) -> Option<Error> {
        lock(&self.held).refusal()
    }

    /// Leases a released device batch buffer on `compute`, any free one starting at
    /// `id % n` (a caller holding an old batch must not stall the others). Waits for one
    /// when `block`; otherwise `None` when all are held.
    ///
    /// # Errors
    /// `Closed` on teardown; `DeviceBroken` once the device is unusable; `Gpu` when the
    /// pool refuses.
    pub(super) fn acquire(&self, id: u64, block: bool) -> Result<Option<BatchLease<D>>> {
        let n = self.batches.slots();
        let slot = {
            let mut h = lock(&self.held);
            loop {
                if let Some(e) = h.refusal() {
                    return Err(e);
                }
                let first = (id % n as u64) as usize;
                if let Some(s) = (0..n).map(|k| (first + k) % n).find(|&s| !h.leased[s]) {
                    h.leased[s] = true;
                    break s;
                }
                if !block {
                    return Ok(None);
                }
                h = self.held_cv.wait(h).unwrap_or_else(|e| e.into_inner());
            }
        };
        let leased = self.stream("compute").and_then(|compute| {
            self.batches.acquire(slot, compute).map_err(|e| gpu_err("pool acquire", e))
        });
        leased.map(Some).inspect_err(|e| {
            // The buffer was never handed out: its slot is free again. A pool that refuses
            // (or cannot enqueue the wait for the slot's last release) leaves the device's
            // ordering unknown, so nothing may use the buffers any more.
            lock(&self.held).leased[slot] = false;
            self.mark_broken(e);
        })
    }

    /// Takes a free wave slot; waits for one when `block`, otherwise `None` if none is.
    pub(super) fn acquire_wave(&self, block: bool) -> Result<Option<WaveLease<D>>> {
        let slot = {
            let mut f = lock(&self.wave_free);
            loop {
                if let Some(e) = self.refusal() {
                    return Err(e);
                }
                if let Some(s) = f.iter().position(|&free| free) {
                    f[s] = false;
                    break s;
                }
                if !block {
                    return Ok(None);
                }
                f = self.wave_cv.wait(f).unwrap_or_else(|e| e.into_inner());
            }
        };
        // Free in `wave_free` means released in the pool: this does not block.
        self.waves.acquire_blocking(slot, "stager").map(Some).map_err(|e| {
            // A refusal is a bookkeeping bug: the slot is freed again so that nothing waits
            // for it, and the engine takes no more batches.
            let e = gpu_err("wave slot", e);
            lock(&self.wave_free)[slot] = true;
            self.mark_broken(&e);
            e
        })
    }

    pub(super) fn release_wave(&self, lease: WaveLease<D>) {
        let slot = lease.slot();
        // A refusal would mean a bookkeeping bug; the slot is freed either way so that
        // nothing waits forever (its next acquire reports the pool's error).
        let _ = self.waves.release_host(lease, "harvester");
        let mut f = lock(&self.wave_free);
        f[slot] = true;
        self.wave_cv.notify_all();
    }

    /// Orders the consumer stream (where batch buffers go back to their pool) after `ev`,
    /// a raw event of the caller's: a buffer released later waits for it.
    ///
    /// # Safety
    /// `ev` must be a live event of this engine's context.
    ///
    /// # Errors
    /// The failed call (binding, the wait).
    pub(super) unsafe fn consumer_wait(&self, ev: u64) -> Result<()> {
        self.bind()?;
        let consumer = self.stream("consumer")?;
        // SAFETY: the caller vouches that `ev` is a live event of this context.
        gs("cuStreamWaitEvent", unsafe { self.dev.wait_raw_event(consumer.raw(), ev) })
    }

    /// Returns a device batch buffer on `consumer`, after `after` (a raw event) if given.
    ///
    /// The buffer is never lost, whatever fails: its slot is free for `acquire` afterwards.
    /// A failure of the engine's own calls (binding, ordering `consumer` after the batch's
    /// writes, the pool's release) means the device is unusable: the engine is marked
    /// broken, so nothing acquires the buffer again. A failed wait on the caller's `after`
    /// event is the caller's error: reported, and the buffer goes back regardless.
    ///
    /// # Errors
    /// The first failed call.
    pub(super) fn release(&self, lease: BatchLease<D>, after: Option<u64>) -> Result<()> {
        let slot = lease.slot();
        let began = self.stats.trace.begin();
        let mut theirs = Ok(());
        let ours = self.bind().and_then(|()| self.stream("consumer")).and_then(|consumer| {
            if let Some(ev) = after {
                // SAFETY: the caller vouches that `ev` is a live event of this context.
                theirs =
                    gs("cuStreamWaitEvent", unsafe { self.dev.wait_raw_event(consumer.raw(), ev) });
            }
            // The consumer must also be ordered after the batch's own writes.
            gs("cuStreamWaitEvent", self.dev.wait_in(&self.ready[slot], consumer.raw()))?;
            self.batches.release(lease, consumer).map_err(|e| gpu_err("pool release", e))
        });
        if let Err(e) = &ours {
            self.mark_broken(e);
        }
        let mut h = lock(&self.held);
        h.leased[slot] = false;
        self.held_cv.notify_all();
        drop(h);
        self.stats.trace.end("release", None, began);
        theirs.and(ours)
    }

    /// Gives back the buffer of a batch whose device work failed.
    ///
    /// The rule, for every failure path: a batch buffer is never kept out of circulation
    /// (after `batches_in_flight` kept buffers `acquire` would wait forever, and `pop`
    /// with it). What the failed batch enqueued may still run, so first everything
    /// enqueued on `compute` so far, the only stream that writes batch buffers, is waited
    /// for (the buffer's ready event, recorded now). If even that fails the device is
    /// unusable: the engine is marked broken, and every later batch fails at once with
    /// `DeviceBroken`. Then the buffer goes back to the pool either way (a broken engine
    /// acquires nothing again).
    pub(super) fn recover(&self, lease: BatchLease<D>) {
        let ready = &self.ready[lease.slot()];
        let synced = self
            .cu("compute")
            .and_then(|compute| gs("cuEventRecord", self.dev.record(ready, compute)))
            .and_then(|()| gs("cuEventSynchronize", self.dev.sync_event(ready)))
            .and_then(|()| {
                gs(
                    "cuEventSynchronize",
                    self.faults.driver(Fault::DeviceLost, "cuEventSynchronize"),
                )
            });
        if let Err(e) = &synced {
            self.mark_broken(e);
        }
        // A failure here marks the engine broken in `release` itself.
        let _ = self.release(lease, None);
    }

    /// Marks the device unusable after `e`, a failed call of the engine's own: every
    /// later acquire fails with `DeviceBroken`, and waiting ones wake up. Only a `Gpu`
    /// error says anything about the device; another error changes nothing.
    pub(super) fn mark_broken(&self, e: &Error) {
        let Error::Gpu { call, source } = e else { return };
        lock(&self.held).broken.get_or_insert_with(|| (call, (**source).clone()));
        self.wake();
    }

    /// Teardown: wakes waiting acquires, which fail with `Closed` from now on.
    pub(super) fn close(&self) {
        lock(&self.held).closed = true;
        self.wake();
        self.read_ahead.close();
    }

    /// Wakes every waiting acquire, to look at the engine's state again. Each notify is
    /// taken under its condvar's lock, so a waiter between its check and its wait cannot
    /// miss it.
    fn wake(&self) {
        let h = lock(&self.held);
        self.held_cv.notify_all();
        drop(h);
        let _f = lock(&self.wave_free);
        self.wave_cv.notify_all();
    }

    /// Fills boxes of `dst` with `value` on `compute`, the descriptors copied to `descs`
    /// (see [`Engine::with_descs`]).
    pub(super) fn fill_boxes(
        &self,
        dst: &D::DevMem,
        specs: &[FillSpec<'_>],
        value: &[u8],
        out_elems: u64,
        descs: &mut DescsAt<'_, D>,
    ) -> Result<()> {
        let compute = self.cu("compute")?;
        for piece in specs.chunks(DESC_CAP) {
            let packed = kernels::pack_fills(piece, value, out_elems)
                .map_err(|e| gpu_err("pack fills", e))?;
            self.with_descs(descs, bytemuck::cast_slice(&packed), |b| {
                let d = D::dev_range(dst);
                // SAFETY: boxes packed for this output size; the descriptor copy precedes
                // the launch on the same stream.
                unsafe { self.dev.fill(compute, value.len() as u32, d, b, packed.len() as u32) }
                    .map_err(|e| gpu_err("fill", e))
            })?;
        }
        Ok(())
    }

    /// Copies one descriptor piece to the device on `compute` and calls `launch` with its
    /// device range: through a pinned buffer while it has room (an asynchronous copy),
    /// else from pageable memory (the driver copies it before returning, and may first
    /// wait for the stream; the launch reading it is ordered after, on the same stream).
    pub(super) fn with_descs(
        &self,
        at: &mut DescsAt<'_, D>,
        packed: &[u8],
        launch: impl FnOnce(DeviceRange) -> Result<()>,
    ) -> Result<()> {
        let compute = self.cu("compute")?;
        let len = packed.len() as u64;
        let dst = match at {
            DescsAt::Staged { descs: d, used } if *used + len <= d.host.len() as u64 => {
                let off = *used as usize;
                // SAFETY: the pair is the caller's (a leased wave slot or batch buffer),
                // and the device read its previous contents before that lease was given
                // back (harvested after its completion event).
                unsafe { std::slice::from_raw_parts_mut(d.host.as_ptr().add(off), packed.len()) }
                    .copy_from_slice(packed);
                gs(
                    "descriptor upload",
                    self.dev.copy_range_to_device(compute, &d.dev, off, &d.host, off, packed.len()),
                )?;
                *used = align_up(*used + len, REGION_ALIGN);
                // SAFETY: inside the pair's device allocation.
                return launch(unsafe {
                    DeviceRange::from_raw(D::dev_range(&d.dev).ptr() + off as u64, len)
                });
            }
            DescsAt::Staged { descs: d, .. } => &d.dev,
            DescsAt::Pageable(d) => *d,
        };
        self.stats.gpu_pageable_uploads.fetch_add(1, Ordering::Relaxed);
        gs("upload", self.dev.upload(compute, dst, 0, packed))?;
        // A live allocation of this engine, written just before on this stream.
        launch(D::dev_range(dst))
    }
}

/// A descriptor buffer pair of `bytes`.
fn new_descs<D: Device>(dev: &D, bytes: u64) -> Result<Descs<D>> {
    Ok(Descs {
        dev: dev.alloc_device(bytes as usize).map_err(|e| gpu_err("device descriptors", e))?,
        host: dev.alloc_pinned(bytes as usize).map_err(|e| gpu_err("pinned descriptors", e))?,
    })
}

/// A new event of the engine's device (blocking sync, no timing).
pub(super) fn new_event<D: Device>(dev: &D) -> Result<D::Event> {
    dev.new_event().map_err(|e| gpu_err("cuEventCreate", e))
}

/// Allocates the device batch buffers, acquired on `compute` and released on `consumer`.
fn batch_pool<D: Device>(
    dev: &D,
    table: &Arc<EdgeTable<D::Sched>>,
    n: usize,
    sizing: &Sizing,
) -> Result<Pool<D::Sched, D::DevMem>> {
    let mut bufs = Vec::with_capacity(n);
    for _ in 0..n {
        bufs.push(
            dev.alloc_device(sizing.batch_bytes as usize)
                .map_err(|e| gpu_err("device batch buffer", e))?,
        );
    }
    Pool::new(
        table,
        PoolSpec {
            name: "device_batches",
            acquirer: Endpoint::Stream("compute"),
            releaser: Endpoint::Stream("consumer"),
        },
        bufs,
    )
    .map_err(|e| gpu_err("device batch pool", e))
}

/// The wave slots' pool.
type WavePool<D> = Pool<<D as Device>::Sched, WaveBufs<D>>;

/// Allocates the wave slots' pinned and device buffers and events, and opens GPUDirect
/// Storage into their device staging as `gds` asks (the second value: whether it is in
/// use).
fn wave_pool<D: Device>(
    dev: &D,
    table: &Arc<EdgeTable<D::Sched>>,
    sizing: &Sizing,
    gds: Gds,
) -> Result<(WavePool<D>, bool)> {
    let pad_staging = sizing.chunks * (STAGING_PAD + REGION_ALIGN);
    let pad_arena = sizing.chunks * REGION_ALIGN;
    let meta_bytes = meta_bytes(sizing.streams) as usize;
    let ranges = cache_ranges_bytes(sizing.chunks) as usize;
    let mut slots = Vec::with_capacity(sizing.waves);
    for index in 0..sizing.waves {
        let decode_stream = *DECODE_STREAMS.get(index).ok_or(Error::ConfigValue {
            knob: "gpu_wave_slots",
            value: sizing.waves as u64,
            expected: "0 (auto) or 2 to 16",
        })?;
        let st = (sizing.staging + pad_staging) as usize;
        let ar = (sizing.decompressed + pad_arena) as usize;
        let pinned = |len, what| dev.alloc_pinned(len).map_err(|e| gpu_err(what, e));
        let device = |len, what| dev.alloc_device(len).map_err(|e| gpu_err(what, e));
        slots.push(WaveBufs {
            staging: pinned(st, "pinned staging")?,
            decoded: pinned(ar, "pinned decoded")?,
            d_staging: device(st, "device staging")?,
            arena: device(ar, "device arena")?,
            meta: device(meta_bytes, "device metadata")?,
            meta_host: pinned(meta_bytes, "pinned metadata")?,
            descs: new_descs(dev, DESC_BYTES)?,
            report: pinned(64, "pinned report")?,
            cache_ranges: device(ranges, "device cache ranges")?,
            cache_ranges_host: pinned(ranges, "pinned cache ranges")?,
            gds: None,
            index,
            decode_stream,
            h2d_done: new_event(dev)?,
            decoded_ev: new_event(dev)?,
            done: new_event(dev)?,
        });
    }
    let staging: Vec<D::DevMem> = slots.iter().map(|s: &WaveBufs<D>| s.d_staging.clone()).collect();
    let readers = dev.open_gds(gds, &staging)?;
    let in_use = readers.is_some();
    for (slot, reader) in slots.iter_mut().zip(readers.into_iter().flatten()) {
        slot.gds = Some(reader);
    }
    // The submit thread fills a slot's pinned memory; the harvest thread gives it back
    // once the device finished with it and its report was read.
    let pool = Pool::new(
        table,
        PoolSpec {
            name: "wave_slots",
            acquirer: Endpoint::Host("stager"),
            releaser: Endpoint::Host("harvester"),
        },
        slots,
    )
    .map_err(|e| gpu_err("wave slot pool", e))?;
    Ok((pool, in_use))
}

impl<D: Device> Drop for Engine<D> {
    fn drop(&mut self) {
        // Nothing may still run on buffers about to be freed.
        let _ = self.sched.synchronize_all();
    }
}
