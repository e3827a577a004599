//! A batch living in device memory: its tensor view, its delivery at `pop` (error
//! policy, fills, ready event) and the return of its buffer.

use std::sync::Arc;

use kernels::FillSpec;

use super::core::{BatchLease, DescsAt, Engine};
use super::device::Device;
use super::gs;
use super::harvest::{Failure, Harvested};
use crate::batch::{Batch, DeviceTensor, Tensor};
use crate::engine::{BatchMeta, Deliver, DeliverCtx, Pending};
use crate::error::Result;

/// A batch living in device memory.
pub(super) struct DeviceBatch<D: Device> {
    engine: Arc<Engine<D>>,
    lease: Option<BatchLease<D>>,
    bytes: usize,
}

impl<D: Device> std::fmt::Debug for DeviceBatch<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBatch").field("bytes", &self.bytes).finish_non_exhaustive()
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
        let mut this = *self;
        match this.lease.take() {
            Some(l) => this.engine.release(l, Some(event)),
            None => Ok(()),
        }
    }
}

impl<D: Device> DeviceTensor for DeviceBatch<D> {
    fn device_ptr(&self) -> Option<u64> {
        self.lease.as_ref().map(|l| D::dev_range(l.buffer()).ptr())
    }

    fn ready_event(&self) -> Option<u64> {
        self.lease.as_ref().map(|l| D::event_raw(&self.engine.ready[l.slot()]))
    }

    fn ready_stream(&self) -> Option<u64> {
        self.engine.cu("compute").ok().map(D::stream_raw)
    }

    fn to_host(&self) -> Result<Vec<u8>> {
        match &self.lease {
            Some(l) => self.engine.download(l, self.bytes),
            None => Ok(Vec::new()),
        }
    }
}

impl<D: Device> Drop for DeviceBatch<D> {
    fn drop(&mut self) {
        if let Some(l) = self.lease.take() {
            let _ = self.engine.release(l, None);
        }
    }
}

/// What a batch planned for the CUDA engine carries through the submit and harvest
/// threads to `pop`.
pub(super) struct DeviceMeta {
    pub(super) meta: BatchMeta,
    pub(super) out_elems: u64,
    /// Plan sample → batch position.
    pub(super) positions: Arc<Vec<usize>>,
}

/// Turns what the harvest thread hands out into an output-queue entry.
pub(super) fn pending<D: Device>(
    engine: &Arc<Engine<D>>,
    h: Harvested<D, DeviceMeta, Pending>,
) -> Pending {
    match h {
        Harvested::Ran { meta, lease, errors } => {
            let DeviceMeta { mut meta, out_elems, positions } = meta;
            let mut unplaced = None;
            for (s, e) in errors {
                match positions.get(s) {
                    Some(&pos) => meta.early.push((pos, e)),
                    None => unplaced = unplaced.or(Some(e)),
                }
            }
            // An error of a plan sample the batch has no position for cannot be listed
            // against its sample: rather than drop it, the whole batch fails with it.
            if let Some(e) = unplaced {
                let _ = engine.release(lease, None);
                return Pending::Failed(Failure::Batch(e).into_error(&meta.infos));
            }
            Pending::Ready(Box::new(DevicePending {
                engine: Arc::clone(engine),
                meta,
                lease,
                out_elems,
            }))
        }
        Harvested::Failed { meta, failure } => {
            Pending::Failed(failure.into_error(&meta.meta.infos))
        }
        Harvested::Pass(p) => p,
    }
}

/// A batch complete on the device, waiting for `pop`.
struct DevicePending<D: Device> {
    engine: Arc<Engine<D>>,
    /// `early` holds every sample error of the batch, before and after planning.
    meta: BatchMeta,
    lease: BatchLease<D>,
    out_elems: u64,
}

impl<D: Device> Deliver for DevicePending<D> {
    /// Applies the error policy and records the batch's ready event.
    fn deliver(self: Box<Self>, ctx: &DeliverCtx<'_>) -> Result<Batch> {
        let DevicePending { engine, mut meta, lease, out_elems } = *self;
        let errors = std::mem::take(&mut meta.early);
        let bytes = meta.sample_bytes * meta.infos.len();
        let errors = match ctx.policy(&meta.infos, errors) {
            Ok(errors) => errors,
            Err(e) => {
                // Record the ready event so the release orders after the batch's writes.
                let _ = engine.finish(&lease, &[], &ctx.cfg.sample_shape, out_elems);
                drop(DeviceBatch { engine, lease: Some(lease), bytes: 0 });
                return Err(e);
            }
        };
        let fills: Vec<(usize, Vec<u8>)> =
            errors.iter().map(|(pos, _)| (*pos, meta.fills[*pos].clone())).collect();
        let finished = engine.finish(&lease, &fills, &ctx.cfg.sample_shape, out_elems);
        let device = DeviceBatch { engine, lease: Some(lease), bytes };
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

    /// Copies a finished batch back to the host (synchronous).
    pub(super) fn download(&self, lease: &BatchLease<D>, bytes: usize) -> Result<Vec<u8>> {
        // The ready event orders the batch's writes before this synchronous copy.
        gs("cuEventSynchronize", self.dev.sync_event(&self.ready[lease.slot()]))?;
        let mut out = vec![0u8; bytes];
        gs("download", self.dev.download(&mut out, lease.buffer(), 0))?;
        Ok(out)
    }
}
