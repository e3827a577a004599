//! `damacy bench`: run a scenario's crop sequence through a pipeline and report
//! throughput, amplification, per-stage load, and the decode ceiling measured in the same
//! run (DESIGN.md §5): CPU decode alone and, for the CUDA engine, nvCOMP alone on the
//! same chunks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use damacy::{Backend, Config, Pipeline, Sample, Stats};
use serde::Serialize;
use zarr::odometer::advance;
use zarr::{ArrayMetadata, ArrayToBytes, ShardIndex};

use crate::datagen::{self, GenError, GenProgress, GenReport};
use crate::scenario::Scenario;

/// Why a bench run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The scenario's dataset could not be generated (the error names the path).
    #[error("dataset: {0}")]
    Dataset(#[source] Box<GenError>),
    /// The file store (or the latency store around it) could not be created.
    #[error("store: {0}")]
    Store(#[source] Box<store::Error>),
    /// The pipeline refused the configuration or a batch failed: synthetic data must
    /// read cleanly, so any failure aborts the run.
    #[error(transparent)]
    Pipeline(Box<damacy::Error>),
    /// The loopback S3 server of `--store s3` could not start.
    #[error("loopback S3 server: {0}")]
    Server(#[source] Box<loopback::Error>),
}

/// Where the bench reads the dataset from.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum StoreKind {
    /// The files, through the file store.
    #[default]
    File,
    /// `s3://` uris served from the files by the loopback S3 server (the tests' server),
    /// each request delayed by `latency_ms`.
    S3 { latency_ms: f64 },
}

impl From<GenError> for BenchError {
    fn from(e: GenError) -> Self {
        Self::Dataset(Box::new(e))
    }
}

impl From<store::Error> for BenchError {
    fn from(e: store::Error) -> Self {
        Self::Store(Box::new(e))
    }
}

impl From<damacy::Error> for BenchError {
    fn from(e: damacy::Error) -> Self {
        Self::Pipeline(Box::new(e))
    }
}

/// Chunks per call of the nvCOMP ceiling measurement: one call of this many chunks fills
/// the H200 (34.7 GB/s at 2048, 53.6 at 8192), so the ceiling does not depend on how the
/// engine splits its waves.
pub const CEILING_CHUNKS_PER_CALL: u64 = 8192;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub scenario: Scenario,
    /// Where the dataset is (generated there if absent).
    pub data_dir: PathBuf,
    pub backend: Backend,
    /// CPU decode threads (0 = all cores).
    pub threads: usize,
    /// Measure the decode rates on the dataset's chunks (CPU, and nvCOMP for the CUDA
    /// engine; about a second each).
    pub measure_ceiling: bool,
    /// Files, or the loopback S3 server.
    pub store: StoreKind,
    /// Epochs: `1` runs the scenario as it is (an endless crop sequence, warm-up then
    /// timed batches). `N > 1` replays the scenario's `warmup + timed` batches of crops
    /// `N` times from its seed (the same crops in the same order each epoch, like a
    /// training loop over a fixed sample list); epoch 1 is reported as usual and every
    /// epoch, whole, in [`BenchReport::epochs`].
    pub epochs: u64,
    /// Decoded-chunk cache bytes (`Config::chunk_cache_bytes`; 0 = off).
    pub chunk_cache_bytes: u64,
    pub chunk_cache_policy: damacy::ChunkCachePolicy,
    /// CUDA engine wave slots (`Config::gpu_wave_slots`; 0 = auto).
    pub gpu_wave_slots: usize,
    /// Batch preparation threads (`Config::prepare_threads`; 0 = auto).
    pub prepare_threads: usize,
    /// GPUDirect Storage (`Config::gds`).
    pub gds: damacy::Gds,
    /// Batch buffers (`Config::batches_in_flight`; 0 = by engine and batch size).
    pub batches_in_flight: usize,
    /// Batches planned as one (`Config::batches_per_plan`; 0 = by batch size).
    pub batches_per_plan: usize,
    /// CUDA engine GPU budget (`Config::max_gpu_memory_bytes`); 0 = 24 GiB plus the
    /// device chunk cache.
    pub max_gpu_memory_bytes: u64,
    /// CUDA engine pinned budget (`Config::max_pinned_host_bytes`); 0 = an eighth of the
    /// host's memory, 1 to 8 GiB.
    pub max_pinned_host_bytes: u64,
    /// Record the pipeline's timeline ([`damacy::trace`]) after the warm-up.
    pub trace: bool,
    /// The scaling measurement: after the ordinary run, one pipeline per entry on that
    /// backend (`Cuda { device }` for one per GPU), all at once, each with `threads /
    /// len` decode threads and its own stores and buffers, each taking every `len`-th
    /// crop of the scenario's sequence from its index (as ranks of `damacy.torch` do),
    /// each running the scenario's warm-up and then, from a common start, its timed
    /// batches. Reported in [`BenchReport::side_by_side`]. Fewer than two entries: none.
    pub side_by_side: Vec<Backend>,
}

/// One epoch of a multi-epoch bench ([`BenchOptions::epochs`]): every batch of it timed.
#[derive(Debug, Clone, Serialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: u64,
    pub batches: u64,
    pub seconds: f64,
    pub gvox_per_s: f64,
    /// Chunks decoded in this epoch (cache misses and uncached reads).
    pub chunks_decoded: u64,
    pub chunk_cache: damacy::stats::ChunkCacheStats,
}

/// Progress of a bench, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum BenchProgress {
    Generating(GenProgress),
    Warmup {
        done: u64,
        total: u64,
    },
    Timed {
        done: u64,
        total: u64,
    },
    /// Epoch `epoch` (2 and later) of a multi-epoch bench.
    Epoch {
        epoch: u64,
        done: u64,
        total: u64,
    },
    /// Batches popped by the pipelines run side by side (warm-up and timed, all
    /// pipelines together).
    SideBySide {
        done: u64,
        total: u64,
    },
}

/// Time and share of wall time × threads spent in one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageLoad {
    pub stage: &'static str,
    pub seconds: f64,
    /// `seconds / (wall seconds × threads of that stage)`.
    pub load: f64,
    /// This stage's share of one batch's wall time, in milliseconds: `load ×` wall
    /// milliseconds per batch (for a stage of N threads, its time per batch over N).
    pub ms_per_batch: f64,
}

/// The result of one bench run (what `--json` writes).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub scenario: String,
    /// `file`, or `s3 (loopback, N ms per request)`.
    pub store: String,
    pub engine: &'static str,
    pub threads: usize,
    pub source_dtype_bytes: usize,
    pub output_dtype: String,
    pub batches: u64,
    pub samples: u64,
    pub seconds: f64,
    pub gvox_per_s: f64,
    /// Voxels × source element size per second (how the tensorstore peer is counted).
    pub source_gb_per_s: f64,
    pub output_gb_per_s: f64,
    pub read_amplification: f64,
    pub decode_amplification: f64,
    pub time_to_first_batch_s: f64,
    pub peak_rss_bytes: Option<u64>,
    pub stages: Vec<StageLoad>,
    /// CPU decode rate on this dataset's chunks with `threads` threads, decoded GB/s.
    pub cpu_decode_gb_per_s: Option<f64>,
    /// CUDA engine: nvCOMP's batched zstd decode alone on this dataset's chunks, decoded
    /// GB/s, in calls of `gpu_decode_chunks_per_call` chunks (absent for the host engine,
    /// without nvCOMP, or for codecs other than plain zstd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_decode_gb_per_s: Option<f64>,
    /// Chunks per nvCOMP call in that measurement ([`CEILING_CHUNKS_PER_CALL`], nvCOMP's
    /// fastest call size, unless device memory capped it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_decode_chunks_per_call: Option<u64>,
    /// CUDA engine: wave slots (waves in flight, each decoding on its own stream) and most
    /// chunks per wave, as the engine sized them; 0 on the host engine.
    pub gpu_wave_slots: u64,
    pub gpu_wave_chunks: u64,
    /// Threads that prepared batches (the `plan` stage's thread count).
    pub prepare_threads: u64,
    /// Batch buffers in circulation (`Config::batches_in_flight`, resolved).
    pub batches_in_flight: u64,
    /// Most batches a plan covered (`Config::batches_per_plan`, resolved), and the
    /// plans prepared since the timed window began (counted at planning, so a plan
    /// prepared ahead of the window's end counts though its batches may not).
    pub batches_per_plan: u64,
    pub plans: u64,
    /// CUDA engine: chunks read with GPUDirect Storage, their bytes, reads that went
    /// through host memory instead, and frames the device check rejected.
    pub gds_reads: u64,
    pub gds_bytes: u64,
    pub gds_fallbacks: u64,
    pub gds_rejected: u64,
    /// `cpu_decode_gb_per_s / decode_amplification / source bytes per voxel`: the
    /// throughput at which decoding alone would saturate the CPU threads.
    pub cpu_ceiling_gvox_per_s: Option<f64>,
    /// The decode ceiling (issue 8): `(gpu_decode_gb_per_s + cpu_decode_gb_per_s) /
    /// decode_amplification / source bytes per voxel`, the GPU term counted only where it
    /// was measured (so for the host engine this is `cpu_ceiling_gvox_per_s`).
    pub ceiling_gvox_per_s: Option<f64>,
    pub dataset: GenReport,
    pub stats: Stats,
    /// With `epochs > 1`: epoch 1's timed window, then each later epoch whole (its
    /// warm-up batches included: they are warm by then), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub epochs: Vec<EpochReport>,
    /// With [`BenchOptions::trace`]: the pipeline's timeline from the end of the warm-up
    /// to the end of the last epoch (written apart: `Trace::to_chrome_json`).
    #[serde(skip)]
    pub trace: Option<damacy::trace::Trace>,
    /// With two or more [`BenchOptions::side_by_side`] backends: those pipelines run at
    /// once, against this report's one pipeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side_by_side: Option<SideBySideReport>,
}

/// Pipelines run at once ([`BenchOptions::side_by_side`]).
#[derive(Debug, Clone, Serialize)]
pub struct SideBySideReport {
    /// Each pipeline's timed window, in the order of the options' backends.
    pub pipelines: Vec<PipelineWindow>,
    /// From the common start of the timed windows (every pipeline warmed up) to the end
    /// of the last pipeline's last timed batch.
    pub seconds: f64,
    /// Every pipeline's timed voxels over `seconds`.
    pub gvox_per_s: f64,
    /// `gvox_per_s` over the one-pipeline run's of the same bench
    /// ([`BenchReport::gvox_per_s`]).
    pub speedup: f64,
}

/// One pipeline's timed window in a side-by-side run.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineWindow {
    /// `host`, `cuda:N`, `auto` or `simulated`: as configured.
    pub backend: String,
    /// `cuda` or `host`: the engine that ran.
    pub engine: &'static str,
    pub threads: usize,
    pub batches: u64,
    pub samples: u64,
    pub voxels: u64,
    /// From the common start to this pipeline's last timed batch.
    pub seconds: f64,
    pub gvox_per_s: f64,
    /// From this pipeline's creation to its first batch.
    pub time_to_first_batch_s: f64,
}

/// Generates the dataset if needed, then runs warm-up and timed batches.
///
/// # Errors
/// `Dataset` when generation fails; `Store` when the file store cannot be created;
/// `Pipeline` for the pipeline's errors (a failing batch aborts the bench: synthetic data
/// must read cleanly), a side-by-side pipeline's among them (the first to fail; the
/// others then stop at the start of their timed windows).
pub fn run(
    opts: &BenchOptions,
    progress: &dyn Fn(BenchProgress),
) -> Result<BenchReport, BenchError> {
    let sc = &opts.scenario;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        opts.threads
    };
    let dataset = datagen::generate(sc, &opts.data_dir, threads, &|p| {
        progress(BenchProgress::Generating(p));
    })?;
    let data_dir = std::path::absolute(&opts.data_dir).unwrap_or_else(|_| opts.data_dir.clone());
    // `--store s3`: the server lives as long as the run; sample uris become
    // `s3://damacy/<array>` and the pipelines read them through their object stores.
    let server = match opts.store {
        StoreKind::File => None,
        StoreKind::S3 { latency_ms } => {
            let server = loopback::S3Server::serve(&data_dir)
                .map_err(|e| BenchError::Server(Box::new(e)))?;
            server.set_latency(Duration::from_secs_f64(latency_ms.max(0.0) / 1000.0));
            Some(server)
        }
    };
    let mut p = open_pipeline(opts, opts.backend, threads, server.as_ref())?;
    let samples = crops(sc, &data_dir, server.is_some());
    let epochs = opts.epochs.max(1);
    let per_epoch = (sc.warmup_batches + sc.timed_batches) * sc.samples_per_batch;
    if epochs == 1 {
        p.push(samples)?;
    } else {
        let one: Vec<Sample> = samples.take(per_epoch as usize).collect();
        p.push(std::iter::repeat_n(one, epochs as usize).flatten())?;
    }
    let t0 = Instant::now();
    let mut first = None;
    for b in 0..sc.warmup_batches {
        let batch = p.pop()?.ok_or(damacy::Error::Closed)?;
        first.get_or_insert(t0.elapsed());
        drop(batch);
        progress(BenchProgress::Warmup { done: b + 1, total: sc.warmup_batches });
    }
    p.reset_stats();
    if opts.trace {
        p.start_trace();
    }
    let t1 = Instant::now();
    for b in 0..sc.timed_batches {
        let batch = p.pop()?.ok_or(damacy::Error::Closed)?;
        first.get_or_insert(t0.elapsed());
        drop(batch);
        progress(BenchProgress::Timed { done: b + 1, total: sc.timed_batches });
    }
    let wall = t1.elapsed().as_secs_f64();
    let stats = p.stats();
    let mut epoch_reports = Vec::new();
    if epochs > 1 {
        let batches = sc.warmup_batches + sc.timed_batches;
        let voxels = (batches * sc.samples_per_batch * sc.sample_voxels()) as f64;
        // Epoch 1: its timed window (the cold epoch, after the scenario's warm-up).
        epoch_reports.push(EpochReport {
            epoch: 1,
            batches: sc.timed_batches,
            seconds: wall,
            gvox_per_s: stats.voxels_delivered as f64 / wall / 1e9,
            chunks_decoded: stats.chunks_decoded,
            chunk_cache: stats.chunk_cache,
        });
        for e in 2..=epochs {
            p.reset_stats();
            let t = Instant::now();
            for b in 0..batches {
                p.pop()?.ok_or(damacy::Error::Closed)?;
                progress(BenchProgress::Epoch { epoch: e, done: b + 1, total: batches });
            }
            let seconds = t.elapsed().as_secs_f64();
            let s = p.stats();
            epoch_reports.push(EpochReport {
                epoch: e,
                batches,
                seconds,
                gvox_per_s: voxels / seconds / 1e9,
                chunks_decoded: s.chunks_decoded,
                chunk_cache: s.chunk_cache,
            });
        }
    }
    let trace = opts.trace.then(|| p.take_trace());
    drop(p);
    // Before the side-by-side pipelines add theirs.
    let peak_rss_bytes = peak_rss();
    let one_gvox_per_s = stats.voxels_delivered as f64 / wall / 1e9;
    let side_by_side = if opts.side_by_side.len() >= 2 {
        Some(run_side_by_side(opts, threads, &data_dir, server.as_ref(), one_gvox_per_s, progress)?)
    } else {
        None
    };
    drop(server);
    let src_size = sc.arrays.first().map(|g| g.dtype.size()).unwrap_or(2);
    let batch_ms = if sc.timed_batches > 0 { wall * 1e3 / sc.timed_batches as f64 } else { 0.0 };
    let load = |stage, ns: u64, n: usize| {
        let load = if wall > 0.0 { ns as f64 * 1e-9 / (wall * n as f64) } else { 0.0 };
        StageLoad { stage, seconds: ns as f64 * 1e-9, load, ms_per_batch: load * batch_ms }
    };
    let mut stages = vec![
        load("plan", stats.plan_ns, stats.prepare_threads.max(1) as usize),
        load("io", stats.io_ns, threads),
        load("decode", stats.decode_ns, threads),
        load("assemble", stats.assemble_ns, threads),
        load("pop_wait", stats.pop_wait_ns, 1),
    ];
    // GPU stages only where there was GPU work (the host engine has none).
    if stats.gpu_submit_ns + stats.gpu_wait_ns > 0 {
        stages.push(load("gpu_submit", stats.gpu_submit_ns, 1));
        stages.push(load("gpu_wait", stats.gpu_wait_ns, 1));
        // The submit thread's two waits tell which side bounds the engine: for the
        // workers to read and stage a wave (CPU side), or for a free wave slot (device).
        stages.push(load("wave_jobs_wait", stats.wave_jobs_wait_ns, 1));
        stages.push(load("wave_slot_wait", stats.wave_slot_wait_ns, 1));
    }
    // Both measurements run after `drop(p)`: the engine has synchronized its streams and
    // freed its device memory, so nothing else holds the GPU.
    let cpu_decode =
        if opts.measure_ceiling { measure_cpu_decode(sc, &data_dir, threads) } else { None };
    let gpu_decode = if opts.measure_ceiling && stats.gpu_bytes_committed > 0 {
        measure_gpu_decode(sc, &data_dir, opts.backend, CEILING_CHUNKS_PER_CALL)
    } else {
        None
    };
    let decode_amp = stats.decode_amplification();
    let cpu_ceiling = ceiling_gvox_per_s(None, cpu_decode, decode_amp, src_size);
    let ceiling = ceiling_gvox_per_s(gpu_decode.map(|g| g.0), cpu_decode, decode_amp, src_size);
    Ok(BenchReport {
        scenario: sc.name.clone(),
        store: match opts.store {
            StoreKind::File => "file".into(),
            StoreKind::S3 { latency_ms } => format!("s3 (loopback, {latency_ms} ms per request)"),
        },
        engine: if stats.gpu_bytes_committed > 0 { "cuda" } else { "host" },
        threads,
        source_dtype_bytes: src_size,
        output_dtype: format!("{:?}", sc.output_dtype).to_lowercase(),
        batches: stats.batches,
        samples: stats.samples,
        seconds: wall,
        gvox_per_s: one_gvox_per_s,
        source_gb_per_s: stats.source_bytes_delivered as f64 / wall / 1e9,
        output_gb_per_s: stats.bytes_delivered as f64 / wall / 1e9,
        read_amplification: stats.read_amplification(),
        decode_amplification: decode_amp,
        time_to_first_batch_s: first.map(|d| d.as_secs_f64()).unwrap_or(0.0),
        peak_rss_bytes,
        stages,
        cpu_decode_gb_per_s: cpu_decode,
        gpu_decode_gb_per_s: gpu_decode.map(|g| g.0),
        gpu_decode_chunks_per_call: gpu_decode.map(|g| g.1),
        gpu_wave_slots: stats.gpu_wave_slots,
        gpu_wave_chunks: stats.gpu_wave_chunks,
        prepare_threads: stats.prepare_threads,
        batches_in_flight: stats.batches_in_flight,
        batches_per_plan: stats.batches_per_plan,
        plans: stats.plans,
        gds_reads: stats.gds_reads,
        gds_bytes: stats.gds_bytes,
        gds_fallbacks: stats.gds_fallbacks,
        gds_rejected: stats.gds_rejected,
        cpu_ceiling_gvox_per_s: cpu_ceiling,
        ceiling_gvox_per_s: ceiling,
        dataset,
        stats,
        epochs: epoch_reports,
        trace,
        side_by_side,
    })
}

/// The bench's configuration for one pipeline on `backend` with `threads` decode threads.
fn config(opts: &BenchOptions, backend: Backend, threads: usize) -> Result<Config, BenchError> {
    let sc = &opts.scenario;
    Ok(Config::builder()
        .sample_shape(&sc.sample_shape)
        .samples_per_batch(sc.samples_per_batch as usize)
        .dtype(sc.output_dtype)
        .backend(backend)
        // The GPU host has 139 GiB: give the CUDA engine room for large waves and
        // nvCOMP's temp buffers (ignored by the host engine). Pinned memory for three
        // wave slots of 4096 chunks needs about 8 GiB: take it where the host has 64 GiB.
        // The device chunk cache counts inside the GPU budget: room for it on top, so
        // that the engine's waves are the same with and without it.
        .max_gpu_memory_bytes(match opts.max_gpu_memory_bytes {
            0 => (24u64 << 30).saturating_add(opts.chunk_cache_bytes),
            set => set,
        })
        .max_pinned_host_bytes(match opts.max_pinned_host_bytes {
            0 => host_ram_bytes().map_or(4 << 30, |r| (r / 8).clamp(1 << 30, 8 << 30)),
            set => set,
        })
        .decode_threads(threads)
        .io_threads(threads.max(4))
        .chunk_cache_bytes(opts.chunk_cache_bytes)
        .chunk_cache_policy(opts.chunk_cache_policy)
        .gpu_wave_slots(opts.gpu_wave_slots)
        .prepare_threads(opts.prepare_threads)
        .gds(opts.gds)
        .batches_in_flight(opts.batches_in_flight)
        .batches_per_plan(opts.batches_per_plan)
        .build()?)
}

/// A pipeline on `backend` with its own stores: the files, or the loopback S3 `server`'s
/// bucket; and the scenario's metadata latency, where it has one, around them.
fn open_pipeline(
    opts: &BenchOptions,
    backend: Backend,
    threads: usize,
    server: Option<&loopback::S3Server>,
) -> Result<Pipeline, BenchError> {
    let cfg = config(opts, backend, threads)?;
    let data_store = match server {
        None => {
            let fs = store::FsStore::new(
                "/",
                store::FsStoreConfig { io_threads: cfg.io_threads, ..Default::default() },
            )?;
            Arc::new(fs) as Arc<dyn store::Store>
        }
        Some(server) => {
            let mut os = cfg.object_store.clone();
            let s3 = os.options.entry("s3".into()).or_default();
            for (k, v) in server.client_options() {
                s3.insert(k.into(), v);
            }
            let uris = store::UriStore::new(store::FsStoreConfig::default(), os.to_remote()?)?;
            Arc::new(uris) as Arc<dyn store::Store>
        }
    };
    let sc = &opts.scenario;
    let meta_store: Arc<dyn store::Store> = match sc.latency {
        None => Arc::clone(&data_store),
        Some(l) => {
            let cfg = store::LatencyConfig {
                baseline: Duration::ZERO,
                mu: (l.metadata_median_ms / 1000.0).ln(),
                sigma: 0.5,
                cap: Duration::from_secs_f64(l.metadata_median_ms * 10.0 / 1000.0),
                seed: sc.seed,
            };
            Arc::new(store::LatencyStore::new(Arc::clone(&data_store), cfg)?)
        }
    };
    Ok(Pipeline::with_stores(cfg, meta_store, data_store)?)
}

/// The scenario's endless crop sequence as samples: files under `data_dir`, or (`s3`)
/// `s3://damacy/<array>` uris of the same arrays.
fn crops(sc: &Scenario, data_dir: &Path, s3: bool) -> impl Iterator<Item = Sample> + Send + use<> {
    let root = data_dir.to_owned();
    let to_uri = move |path: PathBuf| match path.strip_prefix(&root) {
        Ok(rel) if s3 => format!("s3://{}/{}", loopback::BUCKET, rel.display()).into(),
        _ => path,
    };
    // Scenario crops are valid by construction; a bad one surfaces at pop.
    sc.samples(data_dir)
        .map(move |(uri, lo, hi)| Sample::new(to_uri(uri), lo, hi))
        .filter_map(Result::ok)
}

/// Share `index` of `of` of a sample sequence: every `of`-th sample from `index` (what
/// each rank of `damacy.torch` takes). The shares of `0..of` partition the sequence.
pub fn share<I: Iterator>(samples: I, index: usize, of: usize) -> impl Iterator<Item = I::Item> {
    samples.skip(index).step_by(of.max(1))
}

/// `host`, `cuda:N`, `auto`, `simulated`.
fn backend_name(b: Backend) -> String {
    match b {
        Backend::Auto => "auto".into(),
        Backend::Host => "host".into(),
        Backend::Cuda { device } => format!("cuda:{device}"),
        Backend::Simulated => "simulated".into(),
    }
}

/// Makes every side-by-side pipeline start its timed window together, and lets none wait
/// for good: a pipeline that failed (or panicked) before its window still arrives, as
/// failed, when dropped, and the others then skip their windows.
struct StartLine<'a> {
    barrier: &'a std::sync::Barrier,
    failed: &'a std::sync::atomic::AtomicBool,
    arrived: bool,
}

impl StartLine<'_> {
    /// Arrives (as failed unless `ready`); whether every pipeline arrived ready.
    fn arrive(&mut self, ready: bool) -> bool {
        use std::sync::atomic::Ordering;
        if !ready {
            self.failed.store(true, Ordering::SeqCst);
        }
        self.arrived = true;
        self.barrier.wait();
        !self.failed.load(Ordering::SeqCst)
    }
}

impl Drop for StartLine<'_> {
    fn drop(&mut self) {
        if !self.arrived {
            self.arrive(false);
        }
    }
}

/// What one side-by-side pipeline brings back: its window and when it started and ended,
/// or its error (`None` when another pipeline's failure cancelled its window).
type Lane = Result<Option<(PipelineWindow, Instant, Instant)>, BenchError>;

/// [`BenchOptions::side_by_side`]: the pipelines at once, each on its share of the crops.
fn run_side_by_side(
    opts: &BenchOptions,
    threads: usize,
    data_dir: &Path,
    server: Option<&loopback::S3Server>,
    one_gvox_per_s: f64,
    progress: &dyn Fn(BenchProgress),
) -> Result<SideBySideReport, BenchError> {
    let sc = &opts.scenario;
    let n = opts.side_by_side.len();
    let each = (threads / n).max(1);
    let barrier = std::sync::Barrier::new(n);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let total = n as u64 * (sc.warmup_batches + sc.timed_batches);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let lane = |index: usize, backend: Backend, tx: std::sync::mpsc::Sender<()>| -> Lane {
        let mut start = StartLine { barrier: &barrier, failed: &failed, arrived: false };
        let t0 = Instant::now();
        let mut first = None;
        let warm = (|| -> Result<Pipeline, BenchError> {
            let mut p = open_pipeline(opts, backend, each, server)?;
            p.push(share(crops(sc, data_dir, server.is_some()), index, n))?;
            for _ in 0..sc.warmup_batches {
                p.pop()?.ok_or(damacy::Error::Closed)?;
                first.get_or_insert(t0.elapsed());
                let _ = tx.send(());
            }
            p.reset_stats();
            Ok(p)
        })();
        let ready = start.arrive(warm.is_ok());
        let mut p = warm?;
        if !ready {
            return Ok(None);
        }
        let begin = Instant::now();
        for _ in 0..sc.timed_batches {
            p.pop()?.ok_or(damacy::Error::Closed)?;
            first.get_or_insert(t0.elapsed());
            let _ = tx.send(());
        }
        let end = Instant::now();
        let stats = p.stats();
        drop(p);
        let seconds = (end - begin).as_secs_f64();
        Ok(Some((
            PipelineWindow {
                backend: backend_name(backend),
                engine: if stats.gpu_bytes_committed > 0 { "cuda" } else { "host" },
                threads: each,
                batches: stats.batches,
                samples: stats.samples,
                voxels: stats.voxels_delivered,
                seconds,
                gvox_per_s: stats.voxels_delivered as f64 / seconds / 1e9,
                time_to_first_batch_s: first.map_or(0.0, |d| d.as_secs_f64()),
            },
            begin,
            end,
        )))
    };
    let lanes: Vec<Lane> = std::thread::scope(|s| {
        let lane = &lane;
        let handles: Vec<_> = opts
            .side_by_side
            .iter()
            .enumerate()
            .map(|(i, &backend)| {
                let tx = tx.clone();
                s.spawn(move || lane(i, backend, tx))
            })
            .collect();
        drop(tx);
        // Progress from this thread only (the callback need not be `Sync`); the channel
        // closes when every lane has returned.
        for (done, ()) in (1..).zip(rx) {
            progress(BenchProgress::SideBySide { done, total });
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut windows = Vec::with_capacity(n);
    let mut span: Option<(Instant, Instant)> = None;
    for lane in lanes {
        // The first failure is the one reported; a cancelled lane follows one.
        let Some((w, begin, end)) = lane? else { continue };
        span = Some(span.map_or((begin, end), |(b, e)| (b.min(begin), e.max(end))));
        windows.push(w);
    }
    let (Some((begin, end)), true) = (span, windows.len() == n) else {
        // Unreachable in practice: a lane cancels only after another failed, and that
        // failure was returned above. Kept as an error, never as a shortened report.
        return Err(BenchError::Pipeline(Box::new(damacy::Error::Closed)));
    };
    let seconds = (end - begin).as_secs_f64();
    let voxels: u64 = windows.iter().map(|w| w.voxels).sum();
    let gvox_per_s = voxels as f64 / seconds / 1e9;
    Ok(SideBySideReport {
        pipelines: windows,
        seconds,
        gvox_per_s,
        speedup: if one_gvox_per_s > 0.0 { gvox_per_s / one_gvox_per_s } else { 0.0 },
    })
}

/// Physical memory of this machine (Linux `MemTotal`), if known.
fn host_ram_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Peak resident set size of this process (Linux `VmHWM`), if known.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The decode ceiling in Gvox/s: the decode rates measured (decoded GB/s; a missing one
/// counts as 0) divided by the bytes decoded per source byte delivered and by the source
/// bytes per voxel. `None` when no rate was measured or the amplification is unknown.
pub fn ceiling_gvox_per_s(
    gpu_gb_per_s: Option<f64>,
    cpu_gb_per_s: Option<f64>,
    decode_amplification: f64,
    source_dtype_bytes: usize,
) -> Option<f64> {
    if gpu_gb_per_s.is_none() && cpu_gb_per_s.is_none() {
        return None;
    }
    // `is_nan` too: a NaN amplification compares false either way.
    if decode_amplification.is_nan() || decode_amplification <= 0.0 || source_dtype_bytes == 0 {
        return None;
    }
    let gbps = gpu_gb_per_s.unwrap_or(0.0) + cpu_gb_per_s.unwrap_or(0.0);
    Some(gbps / decode_amplification / source_dtype_bytes as f64)
}

/// Stored (still encoded) chunks of a scenario's arrays, for the decode measurements.
#[derive(Debug)]
pub(crate) struct StoredChunks {
    /// Encoded chunks, as stored.
    pub chunks: Vec<Vec<u8>>,
    /// The chain that decodes each of them (the inner chain of a sharded array).
    pub codecs: zarr::CodecChain,
    pub repr: zarr::ChunkRepr,
    /// Decoded bytes of one chunk.
    pub chunk_bytes: usize,
}

impl StoredChunks {
    /// Whether every chunk is one plain zstd frame of its decoded bytes (what nvCOMP's
    /// batched zstd decodes as is). Only the nvCOMP measurement (feature `cuda`) and the
    /// tests ask.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn plain_zstd(&self) -> bool {
        self.codecs.array_to_array.is_empty()
            && matches!(
                self.codecs.bytes_to_bytes.as_slice(),
                [zarr::codec::BytesToBytes::Zstd { .. }]
            )
    }
}

/// One array's decode facts and its stored objects' keys, in shard-grid order.
struct ArrayChunks {
    dir: PathBuf,
    meta: ArrayMetadata,
    geom: zarr::ArrayGeometry,
    codecs: zarr::CodecChain,
    repr: zarr::ChunkRepr,
    chunk_bytes: usize,
}

/// The generated array of `group` in `dir`: its metadata is the generator's (the dataset
/// key guarantees the files match it), whichever zarr format it was written in.
fn open_array(dir: PathBuf, group: &crate::scenario::ArrayGroup) -> Option<ArrayChunks> {
    let meta = crate::datagen::array_metadata(group).ok()?;
    let geom = zarr::ArrayGeometry::new(&meta).ok()?;
    let repr = zarr::ChunkRepr {
        shape: geom.chunk_shape.clone(),
        data_type: meta.data_type,
        fill_value: meta.fill_value,
    };
    let chunk_bytes = usize::try_from(geom.chunk_num_elements().ok()?)
        .ok()?
        .checked_mul(meta.data_type.size())?;
    let codecs = match &meta.codecs.array_to_bytes {
        ArrayToBytes::Sharding(s) => s.codecs.clone(),
        ArrayToBytes::Bytes { .. } => meta.codecs.clone(),
    };
    Some(ArrayChunks { dir, meta, geom, codecs, repr, chunk_bytes })
}

impl ArrayChunks {
    /// Appends the stored chunks of object `coords` (a shard, or one chunk of an unsharded
    /// array) to `out`, up to `want` in all. A missing or unreadable object adds none.
    fn read_object(&self, coords: &[u64], want: usize, out: &mut Vec<Vec<u8>>) {
        let key = self.meta.chunk_key_encoding.chunk_key(coords);
        let Ok(object) = std::fs::read(self.dir.join(key)) else { return };
        match &self.meta.codecs.array_to_bytes {
            ArrayToBytes::Sharding(s) => {
                let Ok(n) = self.geom.num_chunks_per_shard() else { return };
                let Ok(idx) = ShardIndex::of_shard(s, n, &object) else { return };
                for i in 0..n {
                    if out.len() >= want {
                        return;
                    }
                    if let Ok(Some(c)) = idx.chunk_bytes(&object, i) {
                        out.push(c.to_vec());
                    }
                }
            }
            ArrayToBytes::Bytes { .. } => {
                if out.len() < want {
                    out.push(object);
                }
            }
        }
    }

    /// Appends up to `want` chunks in all, reading objects in shard-grid (C) order.
    fn read_chunks(&self, want: usize, out: &mut Vec<Vec<u8>>) {
        let grid = self.geom.shard_grid_shape();
        if grid.contains(&0) {
            return;
        }
        let mut idx = vec![0u64; grid.len()];
        loop {
            if out.len() >= want {
                return;
            }
            self.read_object(&idx, want, out);
            if !advance(&mut idx, &grid) {
                return;
            }
        }
    }
}

/// Gathers up to `want` stored chunks: the scenario's first array first, then the next
/// arrays whose chunks decode the same way (same chain, chunk shape and data type), so a
/// large nvCOMP batch holds distinct chunks where the dataset has enough.
pub(crate) fn gather_chunks(sc: &Scenario, data_dir: &Path, want: usize) -> Option<StoredChunks> {
    let mut instances = sc.array_instances().into_iter();
    let first_inst = instances.next()?;
    let first = open_array(data_dir.join(&first_inst.name), first_inst.group)?;
    let mut chunks = Vec::new();
    first.read_chunks(want, &mut chunks);
    for inst in instances {
        if chunks.len() >= want {
            break;
        }
        let Some(a) = open_array(data_dir.join(&inst.name), inst.group) else { continue };
        if a.codecs == first.codecs && a.repr == first.repr {
            a.read_chunks(want, &mut chunks);
        }
    }
    if chunks.is_empty() {
        return None;
    }
    Some(StoredChunks {
        chunks,
        codecs: first.codecs,
        repr: first.repr,
        chunk_bytes: first.chunk_bytes,
    })
}

/// Decodes up to 256 stored chunks of the scenario's first array on `threads` threads
/// for about a second; returns decoded GB/s.
fn measure_cpu_decode(sc: &Scenario, data_dir: &Path, threads: usize) -> Option<f64> {
    let stored = gather_chunks(sc, data_dir, 256)?;
    let StoredChunks { chunks, codecs, repr, chunk_bytes } = &stored;
    let chunk_bytes = *chunk_bytes;
    let deadline = Instant::now() + Duration::from_millis(1000);
    let t = Instant::now();
    let decoded: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|k| {
                s.spawn(move || {
                    let mut out = vec![0u8; chunk_bytes];
                    let mut n = 0u64;
                    let mut i = k;
                    while Instant::now() < deadline {
                        if zarr::decode_chunk(codecs, repr, &chunks[i % chunks.len()], &mut out)
                            .is_ok()
                        {
                            n += chunk_bytes as u64;
                        }
                        i += threads;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    Some(decoded as f64 / t.elapsed().as_secs_f64() / 1e9)
}

/// nvCOMP's batched zstd decode alone on the dataset's own chunks, in calls of
/// `wave_chunks` chunks: (decoded GB/s, chunks per call). `None` without the `cuda`
/// feature, without nvCOMP, for chunks that are not plain zstd, or when the check of one
/// call's results fails.
#[cfg(feature = "cuda")]
fn measure_gpu_decode(
    sc: &Scenario,
    data_dir: &Path,
    backend: Backend,
    wave_chunks: u64,
) -> Option<(f64, u64)> {
    let want = usize::try_from(wave_chunks).ok().filter(|&n| n > 0)?;
    let stored = gather_chunks(sc, data_dir, want)?;
    if !stored.plain_zstd() {
        return None;
    }
    // The decoded first chunk, to compare nvCOMP's output with where the chain is zstd over
    // native-order bytes (then zstd's output is the chunk's bytes).
    let native = match stored.codecs.array_to_bytes {
        ArrayToBytes::Bytes { endian } => {
            stored.repr.data_type.size() == 1 || endian == Some(zarr::codec::Endian::NATIVE)
        }
        ArrayToBytes::Sharding(_) => false,
    };
    let reference = native
        .then(|| {
            let mut out = vec![0u8; stored.chunk_bytes];
            zarr::decode_chunk(&stored.codecs, &stored.repr, stored.chunks.first()?, &mut out)
                .ok()
                .map(|()| out)
        })
        .flatten();
    let device = match backend {
        Backend::Cuda { device } => device,
        Backend::Auto | Backend::Host | Backend::Simulated => 0,
    };
    let rate = crate::nvcomp_ceiling::measure(
        device,
        &stored.chunks,
        stored.chunk_bytes,
        want,
        reference.as_deref(),
        Duration::from_millis(1000),
    )?;
    Some((rate.gb_per_s, rate.chunks_per_call as u64))
}

#[cfg(not(feature = "cuda"))]
fn measure_gpu_decode(
    _sc: &Scenario,
    _data_dir: &Path,
    _backend: Backend,
    _wave_chunks: u64,
) -> Option<(f64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(gpu: Option<f64>, cpu: Option<f64>) -> BenchReport {
        let amp = 2.5;
        BenchReport {
            scenario: "t".into(),
            store: "file".into(),
            engine: if gpu.is_some() { "cuda" } else { "host" },
            threads: 4,
            source_dtype_bytes: 2,
            output_dtype: "f32".into(),
            batches: 1,
            samples: 1,
            seconds: 1.0,
            gvox_per_s: 1.0,
            source_gb_per_s: 2.0,
            output_gb_per_s: 4.0,
            read_amplification: 2.0,
            decode_amplification: amp,
            time_to_first_batch_s: 0.1,
            peak_rss_bytes: None,
            stages: Vec::new(),
            cpu_decode_gb_per_s: cpu,
            gpu_decode_gb_per_s: gpu,
            gpu_decode_chunks_per_call: gpu.map(|_| 2048),
            gpu_wave_slots: 0,
            prepare_threads: 0,
            batches_in_flight: 0,
            batches_per_plan: 0,
            plans: 0,
            gds_reads: 0,
            gds_bytes: 0,
            gds_fallbacks: 0,
            gds_rejected: 0,
            gpu_wave_chunks: 0,
            cpu_ceiling_gvox_per_s: ceiling_gvox_per_s(None, cpu, amp, 2),
            ceiling_gvox_per_s: ceiling_gvox_per_s(gpu, cpu, amp, 2),
            dataset: GenReport {
                scenario: "t".into(),
                key: "k".into(),
                arrays: 1,
                objects: 1,
                raw_bytes: 1,
                stored_bytes: 1,
                ratio: 1.0,
                seconds: 0.0,
                cached: true,
            },
            stats: Stats::default(),
            epochs: Vec::new(),
            trace: None,
            side_by_side: None,
        }
    }

    #[test]
    fn ceiling_is_the_sum_of_measured_rates_over_amplification_and_voxel_bytes() {
        // (40 + 10) GB/s / 2.5 / 2 B = 10 Gvox/s.
        assert_eq!(ceiling_gvox_per_s(Some(40.0), Some(10.0), 2.5, 2), Some(10.0));
        // The CPU alone, and the GPU alone.
        assert_eq!(ceiling_gvox_per_s(None, Some(10.0), 2.5, 2), Some(2.0));
        assert_eq!(ceiling_gvox_per_s(Some(40.0), None, 2.5, 4), Some(4.0));
        // Nothing measured, or no amplification known: no ceiling.
        assert_eq!(ceiling_gvox_per_s(None, None, 2.5, 2), None);
        assert_eq!(ceiling_gvox_per_s(Some(1.0), Some(1.0), 0.0, 2), None);
        assert_eq!(ceiling_gvox_per_s(Some(1.0), Some(1.0), f64::NAN, 2), None);
        assert_eq!(ceiling_gvox_per_s(Some(1.0), Some(1.0), 1.0, 0), None);
    }

    #[test]
    fn gpu_fields_are_in_the_json_only_when_measured() {
        let host = serde_json::to_value(report(None, Some(10.0))).expect("json");
        assert!(host.get("gpu_decode_gb_per_s").is_none(), "{host}");
        assert!(host.get("gpu_decode_chunks_per_call").is_none(), "{host}");
        assert_eq!(host["cpu_decode_gb_per_s"].as_f64(), Some(10.0));
        assert_eq!(host["cpu_ceiling_gvox_per_s"].as_f64(), Some(2.0));
        assert_eq!(host["ceiling_gvox_per_s"].as_f64(), Some(2.0));
        let cuda = serde_json::to_value(report(Some(40.0), Some(10.0))).expect("json");
        assert_eq!(cuda["gpu_decode_gb_per_s"].as_f64(), Some(40.0));
        assert_eq!(cuda["gpu_decode_chunks_per_call"].as_u64(), Some(2048));
        assert_eq!(cuda["cpu_ceiling_gvox_per_s"].as_f64(), Some(2.0));
        assert_eq!(cuda["ceiling_gvox_per_s"].as_f64(), Some(10.0));
    }

    #[test]
    fn gather_chunks_reads_further_shards_and_arrays_for_a_large_batch() {
        let sc = Scenario::builtin("smoke").expect("smoke");
        let dir = tempfile::tempdir().expect("tempdir");
        datagen::generate(&sc, dir.path(), 2, &|_| {}).expect("generate");
        // smoke: two 64³ arrays of 32×32×64 shards holding 16 chunks of 16³ each: 64
        // chunks per array, so 100 needs every shard of the first and some of the second.
        let stored = gather_chunks(&sc, dir.path(), 100).expect("chunks");
        assert_eq!(stored.chunks.len(), 100);
        assert!(stored.plain_zstd());
        assert_eq!(stored.chunk_bytes, 16 * 16 * 16 * 2);
        let distinct: std::collections::HashSet<&Vec<u8>> = stored.chunks.iter().collect();
        assert!(distinct.len() > 90, "{} distinct of 100", distinct.len());
        let mut out = vec![0u8; stored.chunk_bytes];
        for c in &stored.chunks {
            zarr::decode_chunk(&stored.codecs, &stored.repr, c, &mut out).expect("decodes");
        }
        // Never more than asked for, and all there is when asking for more.
        assert_eq!(gather_chunks(&sc, dir.path(), 3).expect("chunks").chunks.len(), 3);
        assert_eq!(gather_chunks(&sc, dir.path(), 1000).expect("chunks").chunks.len(), 128);
    }
}
