//! The CUDA engine as the pipeline sees it (`crate::engine::Engine`): the core engine and
//! its submit and harvest threads.
//!
//! Each thread's loop runs under [`contain`]: a panic becomes `EnginePanicked`, which the
//! harvest thread puts into the output queue after the batches before it (so `pop`
//! returns it, never the end of the stream), and later dispatches fail with it. Neither
//! thread can then wait forever on the dead one: the harvest thread sees the submit
//! channel close when the submit thread ends, and a dying harvest thread closes the
//! engine, which wakes the submit thread's waits for wave slots and batch buffers.

use std::sync::{Arc, Mutex};

use planner::PlanLimits;

use super::core::{Engine, Opened};
use super::device::Device;
use super::device_batch::{DeviceMeta, pending};
use super::harvest::Harvested;
use super::route::route;
use super::stage::BatchCtx;
use super::submit::Submit;
use crate::config::{Config, OutDtype};
use crate::engine::{
    Engine as EngineApi, EngineCtx, Fatal, Ordered, Pending, Planned, Running, contain, lock,
};
use crate::error::{Error, Result};
use crate::stats::Stats;

/// The CUDA engine as the pipeline sees it: the device engine and its submit and
/// harvest threads.
pub(crate) struct CudaEngine<D: Device> {
    core: Arc<Engine<D>>,
    /// Dropped at the end of input: the submit thread drains and ends, then harvest.
    submit: Mutex<Option<crossbeam_channel::Sender<Submit<DeviceMeta, Pending>>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The pipeline's record of a panicked thread.
    fatal: Arc<Fatal>,
    sample_shape: Vec<u64>,
    /// Elements of one sample.
    sample_elems: u64,
    out_dtype: OutDtype,
    /// What `Pipeline::backend` says runs.
    running: Running,
}

/// Starts the CUDA engine on a GPU.
///
/// # Errors
/// As `CudaDevice::open` and [`CudaEngine::start`].
#[cfg(feature = "cuda")]
pub(crate) fn start_cuda(
    cfg: &Config,
    device: usize,
    ctx: EngineCtx,
) -> Result<Box<dyn EngineApi>> {
    let opened = super::device::cuda::CudaDevice::open(cfg, device)?;
    let nvcomp = !opened.dev.decoders.is_empty();
    let running = Running::Cuda { device, nvcomp, gds: false };
    Ok(Box::new(CudaEngine::start(cfg, opened, ctx, running)?))
}

/// Starts the CUDA engine on the simulated device (`Backend::Simulated`).
///
/// # Errors
/// As `SimDevice::open` and [`CudaEngine::start`].
pub(crate) fn start_simulated(cfg: &Config, ctx: EngineCtx) -> Result<Box<dyn EngineApi>> {
    let opened = super::device::sim::SimDevice::open(cfg, Arc::clone(&ctx.faults))?;
    Ok(Box::new(CudaEngine::start(cfg, opened, ctx, Running::Simulated)?))
}

impl<D: Device> CudaEngine<D> {
    /// Allocates everything on an opened device and starts the submit and harvest
    /// threads.
    ///
    /// # Errors
    /// As [`Engine::build`]; `Spawn` when a thread cannot start.
    fn start(cfg: &Config, opened: Opened<D>, ctx: EngineCtx, running: Running) -> Result<Self> {
        let core = Arc::new(Engine::build(
            cfg,
            opened,
            ctx.faults,
            ctx.read_ahead,
            Arc::clone(&ctx.stats),
        )?);
        let running = match running {
            // GDS reads only what nvCOMP decodes: without a decoder nothing goes that way.
            Running::Cuda { device, nvcomp, .. } => {
                Running::Cuda { device, nvcomp, gds: core.gds && nvcomp }
            }
            other => other,
        };
        // One planned batch waits for the submit thread: planning runs one batch ahead,
        // bounded.
        let (stx, srx) = crossbeam_channel::bounded(1);
        let (htx, hrx) = crossbeam_channel::unbounded();
        let (e, stats, jobs) = (Arc::clone(&core), Arc::clone(&ctx.stats), ctx.jobs);
        let fatal = Arc::clone(&ctx.fatal);
        let submit = spawn(SUBMIT, move || {
            // Nothing waits on this thread but the harvest thread, which learns of its end
            // when `htx` drops, after the panic was recorded; and the coordinator, whose
            // send fails once `srx` drops.
            let _ = contain(SUBMIT, &fatal, || e.submit_loop(&srx, &jobs, &htx, &stats));
            drop(htx);
        });
        let this = Self {
            core: Arc::clone(&core),
            submit: Mutex::new(Some(stx)),
            threads: Mutex::new(Vec::new()),
            fatal: Arc::clone(&ctx.fatal),
            sample_shape: cfg.sample_shape.clone(),
            sample_elems: cfg.sample_elements()?,
            out_dtype: cfg.dtype,
            running,
        };
        lock(&this.threads).push(submit?);
        let (e, stats, output, fatal) = (core, ctx.stats, ctx.output, ctx.fatal);
        let harvest = spawn(HARVEST, move || {
            let emit = |h: Harvested<D, DeviceMeta, Pending>| {
                for p in pending(&e, h) {
                    output.push(p);
                }
            };
            if contain(HARVEST, &fatal, || e.harvest_loop(&hrx, &stats, &emit)).is_err() {
                // The submit thread may wait for a wave slot or a batch buffer that only
                // this thread would have freed: closing the engine wakes it, and it drains.
                e.close();
            }
            // After a panic of either thread (or of the coordinator or feeder), the error
            // comes after every batch handed out before it.
            if let Some(error) = fatal.error() {
                output.push(Pending::Failed(error));
            }
            output.close();
        });
        match harvest {
            Ok(h) => lock(&this.threads).push(h),
            Err(err) => {
                // Without a harvest thread nothing may be submitted: end the submit
                // thread before reporting.
                this.end_of_input();
                this.join();
                return Err(err);
            }
        }
        Ok(this)
    }
}

/// The submit thread's name.
const SUBMIT: &str = "damacy-gpu-submit";
/// The harvest thread's name.
const HARVEST: &str = "damacy-gpu-harvest";

fn spawn(
    name: &'static str,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::Spawn { name, kind: e.kind() })
}

impl<D: Device> EngineApi for CudaEngine<D> {
    fn limits(&self, cfg: &Config) -> PlanLimits {
        self.core.sizing.limits(cfg)
    }

    fn batches_per_plan(&self) -> usize {
        self.core.sizing.plan_batches
    }

    fn dispatch(&self, batch: Ordered) -> Result<()> {
        // With a dead engine thread nothing more gets through. (After the feeder's or
        // the coordinator's panic, the batches already fed are still delivered.)
        if let Some(e @ Error::EnginePanicked { thread: SUBMIT | HARVEST, .. }) = self.fatal.error()
        {
            return Err(e);
        }
        let item = match batch {
            Ordered::Failed(e) => Submit::Pass(Pending::Failed(e)),
            Ordered::Planned(p) => {
                let (ctx, meta) = self.batch_ctx(*p);
                Submit::Run { id: meta.meta.id, ctx, meta }
            }
        };
        let Some(tx) = lock(&self.submit).clone() else {
            return Err(Error::Closed);
        };
        tx.send(item).map_err(|_| self.fatal.error().unwrap_or(Error::Closed))
    }

    fn end_of_input(&self) {
        lock(&self.submit).take();
    }

    fn shutdown(&self) {
        self.core.close();
    }

    fn join(&self) {
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    fn add_stats(&self, s: &mut Stats) {
        s.gpu_bytes_committed = self.core.committed;
        s.gpu_wave_chunks = self.core.sizing.chunks;
        s.gpu_wave_slots = self.core.sizing.waves as u64;
        s.batches_in_flight = self.core.sizing.buffers as u64;
        s.cpu_decode_share_permille = self.core.cpu_share();
    }

    fn running(&self) -> Running {
        self.running
    }
}

impl<D: Device> Drop for CudaEngine<D> {
    fn drop(&mut self) {
        // Normally the pipeline ended and joined the threads already.
        self.shutdown();
        self.end_of_input();
        self.join();
    }
}

impl<D: Device> CudaEngine<D> {
    /// The device view of a planned batch.
    fn batch_ctx(&self, p: Planned) -> (BatchCtx, DeviceMeta) {
        let Planned { meta, per_batch, failed, arrays, facts, plan, positions, hits, claims } = p;
        let out_elems = self.sample_elems * meta.infos.len() as u64;
        let positions = Arc::new(positions);
        let ctx = BatchCtx {
            routes: Arc::new(arrays.iter().map(|a| route(a.chunk_codecs())).collect()),
            arrays: Arc::new(arrays),
            facts: Arc::new(facts),
            plan: Arc::new(plan),
            positions: Arc::clone(&positions),
            sample_shape: self.sample_shape.clone(),
            out_dtype: self.out_dtype,
            out_elems,
            cache: super::cache::batch_cache(hits, claims),
        };
        (ctx, DeviceMeta { meta, out_elems, positions, per_batch, failed })
    }
}
