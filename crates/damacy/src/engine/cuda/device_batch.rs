//! A batch living in device memory: its tensor view, its delivery at `pop` (error
//! policy, fills, ready event) and the return of its buffer.

use std::sync::{Arc, Mutex};

use kernels::FillSpec;

use super::core::{BatchLease, DescsAt, Engine};
use super::device::Device;
use super::gs;
use super::harvest::{Failure, Harvested};
use crate::batch::{Batch, DeviceTensor, Tensor};
use crate::engine::{BatchMeta, Deliver, DeliverCtx, Pending, lock, plan_entries};
use crate::error::{Error, Result};

/// A batch buffer shared by the batches of one plan (`Config::batches_per_plan`), each
/// a view of its own part: the buffer goes back to the pool when the last of them lets
/// go (and, for one released behind a consumer's event, only after that event).
pub(super) struct SharedLease<D: Device> {
    engine: Arc<Engine<D>>,
    lease: Mutex<Option<BatchLease<D>>>,
    /// The buffer's device address, and its slot (whose ready event the views share).
    ptr: u64,
    slot: usize,
}

impl<D: Device> SharedLease<D> {
    fn new(engine: &Arc<Engine<D>>, lease: BatchLease<D>) -> Arc<Self> {
        let (ptr, slot) = (D::dev_range(lease.buffer()).ptr(), lease.slot());
        Arc::new(Self { engine: Arc::clone(engine), lease: Mutex::new(Some(lease)), ptr, slot })
    }

    /// Runs `f` on the lease (`None` once released: never while a view holds it).
    fn with<T>(&self, f: impl FnOnce(&BatchLease<D>) -> Result<T>) -> Result<T> {
        match lock(&self.lease).as_ref() {
            Some(l) => f(l),
            None => Err(crate::error::Error::Closed),
        }
    }
}

impl<D: Device> Drop for SharedLease<D> {
    fn drop(&mut self) {
        let lease = self.lease.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(l) = lease {
            let _ = self.engine.release(l, None);
        }
    }
}

/// A batch living in device memory: its part of its plan's buffer.
pub(super) struct DeviceBatch<D: Device> {
    lease: Arc<SharedLease<D>>,
    /// Where the batch starts in the buffer, and its length, in bytes.
    offset: usize,
    bytes: usize,
}

impl<D: Device> std::fmt::Debug for DeviceBatch<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBatch")
            .field("offset", &self.offset)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<D: Device> Tensor for DeviceBatch<D> {
    fn host(&self) -> Option<&[u8]> {
        None
    }

    fn device(&self) -> Option<&dyn DeviceTensor> {
        Some(self)
    }

    unsafe fn release_event(self: Box<Self>, event: u64) -> Result<()> {
        // The buffer goes back when the plan's last batch lets go (this one drops on
        // return), after this event: the pool's release is queued on the consumer
        // stream, behind this wait.
        // SAFETY: the caller vouches that `event` is a live event of this context.
        unsafe { self.lease.engine.consumer_wait(event) }
    }
}

impl<D: Device> DeviceTensor for DeviceBatch<D> {
    fn device_ptr(&self) -> Option<u64> {
        Some(self.lease.ptr + self.offset as u64)
    }

    fn ready_event(&self) -> Option<u64> {
        Some(D::event_raw(&self.lease.engine.ready[self.lease.slot]))
    }

    fn ready_stream(&self) -> Option<u64> {
        self.lease.engine.cu("compute").ok().map(D::stream_raw)
    }

    fn to_host(&self) -> Result<Vec<u8>> {
        let l = &self.lease;
        l.with(|lease| l.engine.download(lease, self.offset, self.bytes))
    }
}

/// What a plan for the CUDA engine carries through the submit and harvest threads to
/// `pop`.
pub(super) struct DeviceMeta {
    /// The plan's batches as one ([`crate::engine::Planned::meta`]).
    pub(super) meta: BatchMeta,
    pub(super) out_elems: u64,
    /// Plan sample → batch position (over the plan's batches).
    pub(super) positions: Arc<Vec<usize>>,
    /// Samples per batch, and the plan's batches that failed before planning.
    pub(super) per_batch: usize,
    pub(super) failed: Vec<(usize, Error)>,
}

/// Turns what the harvest thread hands out into output-queue entries: one per batch of
/// the plan, in order.
pub(super) fn pending<D: Device>(
    engine: &Arc<Engine<D>>,
    h: Harvested<D, DeviceMeta, Pending>,
) -> Vec<Pending> {
    match h {
        Harvested::Ran { meta, lease, errors } => {
            let DeviceMeta { mut meta, out_elems, positions, per_batch, failed } = meta;
            let mut unplaced = None;
            for (s, e) in errors {
                match positions.get(s) {
                    Some(&pos) => meta.early.push((pos, e)),
                    None => unplaced = unplaced.or(Some(e)),
                }
            }
            // An error of a plan sample the plan has no position for cannot be listed
            // against its sample: rather than drop it, every batch fails with it.
            if let Some(e) = unplaced {
                let _ = engine.release(lease, None);
                return failed_batches(meta, per_batch, failed, Failure::Batch(e));
            }
            let shared = SharedLease::new(engine, lease);
            let sample_bytes = meta.sample_bytes;
            plan_entries(meta, per_batch, failed, |first, meta| {
                Pending::Ready(Box::new(DevicePending {
                    lease: Arc::clone(&shared),
                    meta,
                    first,
                    offset: first * sample_bytes,
                    out_elems,
                }))
            })
        }
        Harvested::Failed { meta, failure } => {
            let DeviceMeta { meta, per_batch, failed, .. } = meta;
            failed_batches(meta, per_batch, failed, failure)
        }
        Harvested::Pass(p) => vec![p],
    }
}

/// The entries of a plan whose device work failed: each batch fails, those that failed
/// before planning with their own errors. A batch failure (the plan's data or device
/// work) names each batch's own first sample; an engine failure goes to the first batch
/// as it is, and the later batches say they were planned with it.
fn failed_batches(
    meta: BatchMeta,
    per_batch: usize,
    failed: Vec<(usize, Error)>,
    failure: Failure,
) -> Vec<Pending> {
    let (mut engine_error, source) = match failure {
        Failure::Engine(e) => (Some(e), None),
        Failure::Batch(source) => (None, Some(source)),
    };
    // The batch the engine's error went to.
    let mut with = None;
    plan_entries(meta, per_batch, failed, |_, meta| {
        Pending::Failed(if let Some(source) = &source {
            Failure::Batch(source.clone()).into_error(&meta.infos)
        } else if let Some(e) = engine_error.take() {
            with = Some(meta.id);
            e
        } else {
            Error::PlannedWith { batch: meta.id, with: with.unwrap_or(meta.id) }
        })
    })
}

/// A batch complete on the device, waiting for `pop`.
struct DevicePending<D: Device> {
    /// `early` holds every sample error of the batch, before and after planning.
    meta: BatchMeta,
    lease: Arc<SharedLease<D>>,
    /// The batch's first position in its plan's buffer, and its byte offset there.
    first: usize,
    offset: usize,
    /// Elements of the plan's buffer.
    out_elems: u64,
}

impl<D: Device> Deliver for DevicePending<D> {
    /// Applies the error policy and records the batch's ready event.
    fn deliver(self: Box<Self>, ctx: &DeliverCtx<'_>) -> Result<Batch> {
        let DevicePending { mut meta, lease, first, offset, out_elems } = *self;
        let errors = std::mem::take(&mut meta.early);
        let bytes = meta.sample_bytes * meta.infos.len();
        // On an error the lease drops here: the buffer goes back once the plan's other
        // batches let go too (after the batch's writes: the release waits for its ready
        // event).
        let errors = ctx.policy(&meta.infos, errors)?;
        let fills: Vec<(usize, Vec<u8>)> =
            errors.iter().map(|(pos, _)| (first + *pos, meta.fills[*pos].clone())).collect();
        let engine = Arc::clone(&lease.engine);
        let finished = lease.with(|l| engine.finish(l, &fills, &ctx.cfg.sample_shape, out_elems));
        let device = DeviceBatch { lease, offset, bytes };
        finished?;
        Ok(ctx.batch(meta, Box::new(device), errors))
    }
}

impl<D: Device> Engine<D> {
    /// Fills whole samples of a delivered batch with one value each (`OnError::Fill`),
    /// then re-records its ready event and waits for it. Nothing to do without fills: the
    /// submit thread recorded the event after the batch's last write.
    pub(super) fn finish(
        &self,
        lease: &BatchLease<D>,
        fills: &[(usize, Vec<u8>)],
        sample_shape: &[u64],
        out_elems: u64,
    ) -> Result<()> {
        if fills.is_empty() {
            return Ok(());
        }
        self.bind()?;
        let compute = self.cu("compute")?;
        let whole = vec![0u64; sample_shape.len()];
        for (pos, value) in fills {
            let spec = FillSpec {
                sample: *pos as u64,
                sample_shape,
                in_sample_lo: &whole,
                extent: sample_shape,
            };
            self.fill_boxes(
                lease.buffer(),
                &[spec],
                value,
                out_elems,
                &mut DescsAt::Pageable(&self.descs),
            )?;
        }
        gs("cuEventRecord", self.dev.record(&self.ready[lease.slot()], compute))?;
        gs("cuEventSynchronize", self.dev.sync_event(&self.ready[lease.slot()]))
    }

    /// Copies `bytes` of a finished batch buffer, from `offset` on, back to the host
    /// (synchronous).
    pub(super) fn download(
        &self,
        lease: &BatchLease<D>,
        offset: usize,
        bytes: usize,
    ) -> Result<Vec<u8>> {
        // The ready event orders the batch's writes before this synchronous copy.
        gs("cuEventSynchronize", self.dev.sync_event(&self.ready[lease.slot()]))?;
        let mut out = vec![0u8; bytes];
        gs("download", self.dev.download(&mut out, lease.buffer(), offset))?;
        Ok(out)
    }
}
