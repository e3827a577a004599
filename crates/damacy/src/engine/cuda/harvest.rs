//! The harvest thread: waits for each wave's device work in order, turns its decode
//! report into sample errors, frees its slot, and hands each batch out.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use kernels::DecodeReport;

use super::cache::BatchCache;
use super::core::{BatchLease, Engine, WaveBufs, WaveLease};
use super::device::Device;
use super::gs;
use super::stage::StageMem;
use crate::batch::SampleInfo;
use crate::error::{Error, GpuError, Result, SampleError};
use crate::fault::Fault;
use crate::stats::StatCounters;

/// Why a batch failed in the submit or harvest thread.
#[derive(Debug)]
pub(super) enum Failure {
    /// The batch's own plan or device work failed: `pop` reports it for the batch's first
    /// sample (a device failure spoils the whole batch, not one sample's part of it).
    Batch(SampleError),
    /// The engine takes no batches now (teardown, an unusable device): reported as is.
    Engine(Error),
}

impl From<Error> for Failure {
    /// A failed device call fails the batch it was made for; any other error is the
    /// engine's.
    fn from(e: Error) -> Self {
        match e {
            Error::Gpu { call, source } => {
                Failure::Batch(SampleError::Gpu { call, chunk: None, path: None, source })
            }
            e => Failure::Engine(e),
        }
    }
}

impl Failure {
    /// The error `pop` returns for a batch of the samples `infos` that failed so.
    pub(super) fn into_error(self, infos: &[SampleInfo]) -> Error {
        match self {
            Failure::Engine(e) => e,
            // A batch always has a sample (the coordinator never plans an empty one); the
            // cause is kept even without one.
            Failure::Batch(source) => {
                let (index, uri) =
                    infos.first().map_or((u64::MAX, PathBuf::new()), |i| (i.index, i.uri.clone()));
                Error::Sample { index, uri, source: Box::new(source) }
            }
        }
    }
}

/// A wave-local chunk as a decode error names it.
pub(super) struct ChunkOrigin {
    /// The store key of the chunk's file.
    pub(super) key: Arc<str>,
    /// The chunk's grid coordinates.
    pub(super) coords: Vec<u64>,
    /// The plan samples it feeds.
    pub(super) samples: Vec<usize>,
}

/// What the host needs to turn a wave's decode report into errors.
pub(super) struct Harvest {
    /// Per nvCOMP stream: the wave-local chunk it belongs to.
    pub(super) stream_chunk: Vec<u32>,
    /// Per wave-local chunk: where it came from.
    pub(super) chunks: Vec<ChunkOrigin>,
    /// Offsets of the statuses and sizes arrays in `meta`.
    pub(super) statuses_off: u64,
    pub(super) actual_off: u64,
    pub(super) expected_off: u64,
}

/// What the harvest thread hands out, in submission order.
pub(super) enum Harvested<D: Device, M, P> {
    /// Complete on the device; `errors` name plan samples.
    Ran {
        meta: M,
        lease: BatchLease<D>,
        errors: Vec<(usize, SampleError)>,
    },
    /// A device failure (its buffer went back to the pool), or teardown.
    Failed {
        meta: M,
        failure: Failure,
    },
    Pass(P),
}

/// Messages from the submit thread to the harvest thread, in order.
pub(super) enum ToHarvest<D: Device, M, P> {
    /// `cache`: the wave's batch's share of the decoded-chunk cache, kept until the wave
    /// finished (its copies into cache blocks were enqueued with it).
    Wave {
        id: u64,
        slot: WaveLease<D>,
        harvest: Option<Harvest>,
        errors: Vec<(usize, SampleError)>,
        cache: Option<Arc<BatchCache>>,
    },
    /// The batch's device work is enqueued; `errors` are its fill chunks' (plan samples).
    /// Its cache claims are settled (and its pins dropped) once it completed.
    End {
        id: u64,
        meta: M,
        lease: BatchLease<D>,
        errors: Vec<(usize, SampleError)>,
        cache: Option<Arc<BatchCache>>,
    },
    /// Kept until everything sent before it completed on the device, then dropped (a
    /// failed batch's cache pins, whose assembly may have been enqueued).
    Keep(Arc<BatchCache>),
    /// The batch failed; its buffer, if it holds one, goes back once the device is done
    /// with it ([`Engine::recover`]).
    Failed {
        meta: M,
        failure: Failure,
        lease: Option<BatchLease<D>>,
    },
    Pass(P),
}

/// A message to the harvest thread (opaque outside this module).
pub(super) struct ToHarvestMsg<D: Device, M, P>(pub(super) ToHarvest<D, M, P>);

/// What the harvest thread gathered of the batch whose waves it is harvesting.
#[derive(Default)]
struct Gathered {
    /// Sample errors (plan samples) of the batch's waves so far.
    errors: Vec<(usize, SampleError)>,
    /// The first device failure of the batch's waves.
    failure: Option<Failure>,
}

impl<D: Device> Engine<D> {
    /// Waits for a wave to finish on the device and turns its report into errors.
    fn harvest(
        &self,
        w: &WaveBufs<D>,
        h: &Harvest,
        errors: &mut Vec<(usize, SampleError)>,
    ) -> Result<()> {
        gs("cuEventSynchronize", self.dev.sync_event(&w.done))?;
        let report = read_report::<D>(&w.report);
        if report.failures == 0 || h.stream_chunk.is_empty() {
            return Ok(());
        }
        let failed_chunks = self.failed_chunks(w, h, errors)?;
        // nvCOMP may write past the output of a corrupt frame that passed the host
        // check, into other chunks of this wave (seen on the H200): every sample drawing
        // on this wave is suspect, not only the failed chunk's. It is reported, never
        // delivered as good data (`OnError::Fill` fills it); also when the report's
        // failure names no chunk of the wave.
        let err = match failed_chunks.first().and_then(|&c| h.chunks.get(c)) {
            Some(origin) => nvcomp_error(origin, GpuError::WaveOverrun),
            None => SampleError::Gpu {
                call: "nvCOMP decode",
                chunk: None,
                path: None,
                source: Box::new(GpuError::WaveOverrun),
            },
        };
        for ChunkOrigin { samples, .. } in &h.chunks {
            errors.extend(samples.iter().map(|&p| (p, err.clone())));
        }
        Ok(())
    }

    /// Reads a finished wave's nvCOMP statuses and sizes back and names each failed chunk
    /// once, in stream order, with an error for each of its samples; returns the failed
    /// chunks.
    fn failed_chunks(
        &self,
        w: &WaveBufs<D>,
        h: &Harvest,
        errors: &mut Vec<(usize, SampleError)>,
    ) -> Result<Vec<usize>> {
        let n = h.stream_chunk.len();
        // Inside the metadata allocation (offsets from `submit_wave`); the wave finished.
        let get = |off: u64, len: usize| -> Result<Vec<u8>> {
            let mut v = vec![0u8; len];
            gs("download", self.dev.download(&mut v, &w.meta, off as usize))?;
            Ok(v)
        };
        let st = get(h.statuses_off, n * 4)?;
        let act = get(h.actual_off, n * 8)?;
        let exp = get(h.expected_off, n * 8)?;
        let mut failed_chunks = Vec::new();
        for i in 0..n {
            let s = i32::from_ne_bytes(st[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]));
            let a = u64::from_ne_bytes(act[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            let e = u64::from_ne_bytes(exp[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            let c = h.stream_chunk[i] as usize;
            if (s == 0 && a == e) || failed_chunks.contains(&c) {
                continue;
            }
            failed_chunks.push(c);
            if let Some(origin) = h.chunks.get(c) {
                let err = nvcomp_error(
                    origin,
                    GpuError::ChunkDecode { status: s, decoded: a, expected: e },
                );
                errors.extend(origin.samples.iter().map(|&p| (p, err.clone())));
            }
        }
        Ok(failed_chunks)
    }

    /// The harvest thread: waits for each submitted wave in order, reads its report,
    /// frees its slot, and hands out each batch once its last wave finished.
    pub(super) fn harvest_loop<M, P>(
        &self,
        rx: &crossbeam_channel::Receiver<ToHarvestMsg<D, M, P>>,
        stats: &StatCounters,
        emit: &dyn Fn(Harvested<D, M, P>),
    ) {
        // A failure here fails every wait below, which report it.
        let _ = self.bind();
        let mut g = Gathered::default();
        while let Ok(ToHarvestMsg(msg)) = rx.recv() {
            match msg {
                ToHarvest::Wave { id, slot, harvest, errors: host_errors, cache } => {
                    stats.trace.span("wave done", Some(id), || {
                        self.harvest_wave(slot, harvest, host_errors, &mut g, stats)
                    });
                    // The wave finished (or the device is broken): its copies are done.
                    drop(cache);
                }
                ToHarvest::End { id, meta, lease, errors, cache } => {
                    self.faults.panic_point(Fault::HarvestPanic);
                    g.errors.extend(errors);
                    let h = stats
                        .trace
                        .span("ready", Some(id), || self.harvest_end(meta, lease, &mut g, stats));
                    let began = stats.trace.begin();
                    if let Some(c) = cache {
                        // Filled only from a batch that completed with no error at all.
                        c.settle(matches!(&h, Harvested::Ran { errors, .. } if errors.is_empty()));
                    }
                    // Before the batch is out: a caller who has it sees its spans.
                    stats.trace.end("settle", Some(id), began);
                    emit(h);
                }
                ToHarvest::Keep(cache) => drop(cache),
                ToHarvest::Failed { meta, failure, lease } => {
                    g.errors.clear();
                    g.failure = None;
                    if let Some(lease) = lease {
                        self.recover(lease);
                    }
                    emit(Harvested::Failed { meta, failure });
                }
                ToHarvest::Pass(p) => emit(Harvested::Pass(p)),
            }
        }
    }

    /// Waits for a wave, gathers its errors and any device failure, and frees its slot.
    fn harvest_wave(
        &self,
        slot: WaveLease<D>,
        harvest: Option<Harvest>,
        host_errors: Vec<(usize, SampleError)>,
        g: &mut Gathered,
        stats: &StatCounters,
    ) {
        g.errors.extend(host_errors);
        let t = Instant::now();
        let w = slot.buffer();
        let outcome = match &harvest {
            Some(h) => self.harvest(w, h, &mut g.errors),
            // Nothing was submitted after the failure: the slot's last device
            // use is still covered by its `done` event.
            None => gs("cuEventSynchronize", self.dev.sync_event(&w.done)),
        };
        stats.gpu_wait_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if let Err(e) = outcome {
            g.failure.get_or_insert(e.into());
        }
        self.release_wave(slot);
    }

    /// Waits for a batch's ready event and hands it out with the errors gathered from its
    /// waves, or as failed after a device failure (its buffer back in the pool).
    fn harvest_end<M, P>(
        &self,
        meta: M,
        lease: BatchLease<D>,
        g: &mut Gathered,
        stats: &StatCounters,
    ) -> Harvested<D, M, P> {
        let t = Instant::now();
        let ready = gs("cuEventSynchronize", self.dev.sync_event(&self.ready[lease.slot()]))
            .and_then(|()| {
                let injected = self.faults.driver(Fault::BatchReady, "cuEventSynchronize");
                gs("cuEventSynchronize", injected)
            });
        stats.gpu_wait_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let errs = std::mem::take(&mut g.errors);
        match g.failure.take().or(ready.err().map(Failure::from)) {
            None => Harvested::Ran { meta, lease, errors: errs },
            Some(failure) => {
                self.recover(lease);
                Harvested::Failed { meta, failure }
            }
        }
    }
}

/// A finished wave's decode report, from the slot's pinned memory.
fn read_report<D: Device>(report: &D::PinMem) -> DecodeReport {
    let mut r = [0u8; 8];
    if report.len() >= 8 {
        // SAFETY: the slot is leased by the harvest thread and the wave finished (its
        // `done` event was waited for): nothing writes the report now; 8 bytes in bounds.
        unsafe { std::ptr::copy_nonoverlapping(report.as_ptr().cast_const(), r.as_mut_ptr(), 8) };
    }
    DecodeReport::from_bytes(r)
}

/// A failure nvCOMP reported for a chunk, or for a chunk of its wave.
fn nvcomp_error(origin: &ChunkOrigin, source: GpuError) -> SampleError {
    SampleError::Gpu {
        call: "nvCOMP decode",
        chunk: Some(origin.coords.clone()),
        path: Some(PathBuf::from(&*origin.key)),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::Failure;
    use crate::batch::SampleInfo;
    use crate::error::{Error, GpuError, SampleError};

    /// A failed device call fails its batch, reported at `pop` for the batch's first
    /// sample (push index and uri) with the typed cause; engine-wide errors pass as they
    /// are.
    #[test]
    fn a_batch_device_failure_names_the_batch_first_sample() {
        let nvcomp = kernels::Error::Nvcomp { call: "nvcompBatchedZstdDecompressAsync", status: 7 };
        let failure = Failure::from(Error::Gpu {
            call: "nvCOMP decode",
            source: Box::new(GpuError::Kernels(nvcomp.clone())),
        });
        let infos = [7u64, 8].map(|index| SampleInfo {
            index,
            uri: PathBuf::from(format!("/d/{index}.zarr")),
            aabb: zarr::Aabb::from_shape(&[1]).expect("box"),
            level: None,
        });
        match failure.into_error(&infos) {
            Error::Sample { index, uri, source } => {
                assert_eq!((index, uri), (7, PathBuf::from("/d/7.zarr")));
                match *source {
                    SampleError::Gpu { call, chunk: None, path: None, source } => {
                        assert_eq!(call, "nvCOMP decode");
                        assert_eq!(*source, GpuError::Kernels(nvcomp));
                    }
                    other => panic!("expected a batch-level Gpu error, got {other:?}"),
                }
            }
            other => panic!("expected Sample, got {other:?}"),
        }
        assert!(matches!(Failure::from(Error::Closed).into_error(&infos), Error::Closed));
    }
}
