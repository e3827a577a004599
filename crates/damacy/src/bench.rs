//! `damacy bench`: run a scenario's crop sequence through a pipeline and report
//! throughput, amplification, per-stage load, and the CPU decode ceiling measured in the
//! same run (DESIGN.md §5).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use zarr::{ArrayMetadata, ArrayToBytes, ChunkLocation, ShardIndex};

use crate::Sample;
use crate::config::{Backend, Config, OutDtype};
use crate::datagen::{self, GenProgress, GenReport};
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use crate::scenario::{OutputDtype, Scenario};
use crate::stats::Stats;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub scenario: Scenario,
    /// Where the dataset is (generated there if absent).
    pub data_dir: PathBuf,
    pub backend: Backend,
    /// CPU decode threads (0 = all cores).
    pub threads: usize,
    /// Measure the CPU decode rate on the dataset's chunks (adds about a second).
    pub measure_ceiling: bool,
}

/// Progress of a bench, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum BenchProgress {
    Generating(GenProgress),
    Warmup { done: u64, total: u64 },
    Timed { done: u64, total: u64 },
}

/// Time and share of wall time × threads spent in one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageLoad {
    pub stage: &'static str,
    pub seconds: f64,
    /// `seconds / (wall seconds × threads of that stage)`.
    pub load: f64,
}

/// The result of one bench run (what `--json` writes).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub scenario: String,
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
    /// `cpu_decode_gb_per_s / decode_amplification / source bytes per voxel`: the
    /// throughput at which decoding alone would saturate the CPU threads.
    pub ceiling_gvox_per_s: Option<f64>,
    pub dataset: GenReport,
    pub stats: Stats,
}

fn out_dtype(d: OutputDtype) -> OutDtype {
    match d {
        OutputDtype::F32 => OutDtype::F32,
        OutputDtype::Bf16 => OutDtype::Bf16,
        OutputDtype::F16 => OutDtype::F16,
        OutputDtype::Native => OutDtype::Native,
    }
}

/// Generates the dataset if needed, then runs warm-up and timed batches.
///
/// # Errors
/// `Dataset` when generation fails; pipeline errors (a failing batch aborts the bench:
/// synthetic data must read cleanly).
pub fn run(opts: &BenchOptions, progress: &dyn Fn(BenchProgress)) -> Result<BenchReport> {
    let sc = &opts.scenario;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        opts.threads
    };
    let dataset = datagen::generate(sc, &opts.data_dir, threads, &|p| {
        progress(BenchProgress::Generating(p));
    })?;
    let cfg = Config::builder()
        .sample_shape(&sc.sample_shape)
        .samples_per_batch(sc.samples_per_batch as usize)
        .dtype(out_dtype(sc.output_dtype))
        .backend(opts.backend)
        // The GPU host has 139 GiB: give the CUDA engine room for large waves and
        // nvCOMP's temp buffer (ignored by the host engine).
        .max_gpu_memory_bytes(24 << 30)
        .max_pinned_host_bytes(4 << 30)
        .decode_threads(threads)
        .io_threads(threads.max(4))
        .build()?;
    let data_store: Arc<dyn store::Store> = Arc::new(store::FsStore::new(
        "/",
        store::FsStoreConfig { io_threads: cfg.io_threads, ..Default::default() },
    )?);
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
    let mut p = Pipeline::with_stores(cfg, meta_store, data_store)?;
    let data_dir = std::path::absolute(&opts.data_dir).unwrap_or_else(|_| opts.data_dir.clone());
    let samples = sc.samples(&data_dir).map(|(uri, lo, hi)| Sample::new(uri, lo, hi));
    // Scenario crops are valid by construction; a bad one surfaces at pop.
    p.push(samples.filter_map(Result::ok))?;
    let t0 = Instant::now();
    let mut first = None;
    for b in 0..sc.warmup_batches {
        let batch = p.pop()?.ok_or(Error::Closed)?;
        first.get_or_insert(t0.elapsed());
        drop(batch);
        progress(BenchProgress::Warmup { done: b + 1, total: sc.warmup_batches });
    }
    p.reset_stats();
    let t1 = Instant::now();
    for b in 0..sc.timed_batches {
        let batch = p.pop()?.ok_or(Error::Closed)?;
        first.get_or_insert(t0.elapsed());
        drop(batch);
        progress(BenchProgress::Timed { done: b + 1, total: sc.timed_batches });
    }
    let wall = t1.elapsed().as_secs_f64();
    let stats = p.stats();
    drop(p);
    let src_size = sc.arrays.first().map(|g| g.dtype.data_type().size()).unwrap_or(2);
    let load = |stage, ns: u64, n: usize| StageLoad {
        stage,
        seconds: ns as f64 * 1e-9,
        load: if wall > 0.0 { ns as f64 * 1e-9 / (wall * n as f64) } else { 0.0 },
    };
    let mut stages = vec![
        load("plan", stats.plan_ns, 1),
        load("io", stats.io_ns, threads),
        load("decode", stats.decode_ns, threads),
        load("assemble", stats.assemble_ns, threads),
        load("pop_wait", stats.pop_wait_ns, 1),
    ];
    // GPU stages only where there was GPU work (the host engine has none).
    if stats.gpu_submit_ns + stats.gpu_wait_ns > 0 {
        stages.push(load("gpu_submit", stats.gpu_submit_ns, 1));
        stages.push(load("gpu_wait", stats.gpu_wait_ns, 1));
    }
    let cpu_decode =
        if opts.measure_ceiling { measure_cpu_decode(sc, &data_dir, threads) } else { None };
    let decode_amp = stats.decode_amplification();
    let ceiling =
        cpu_decode.filter(|_| decode_amp > 0.0).map(|gbps| gbps / decode_amp / src_size as f64);
    Ok(BenchReport {
        scenario: sc.name.clone(),
        engine: if stats.gpu_bytes_committed > 0 { "cuda" } else { "host" },
        threads,
        source_dtype_bytes: src_size,
        output_dtype: format!("{:?}", sc.output_dtype).to_lowercase(),
        batches: stats.batches,
        samples: stats.samples,
        seconds: wall,
        gvox_per_s: stats.voxels_delivered as f64 / wall / 1e9,
        source_gb_per_s: stats.source_bytes_delivered as f64 / wall / 1e9,
        output_gb_per_s: stats.bytes_delivered as f64 / wall / 1e9,
        read_amplification: stats.read_amplification(),
        decode_amplification: decode_amp,
        time_to_first_batch_s: first.map(|d| d.as_secs_f64()).unwrap_or(0.0),
        peak_rss_bytes: peak_rss(),
        stages,
        cpu_decode_gb_per_s: cpu_decode,
        ceiling_gvox_per_s: ceiling,
        dataset,
        stats,
    })
}

/// Peak resident set size of this process (Linux `VmHWM`), if known.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Decodes up to 256 stored chunks of the scenario's first array on `threads` threads
/// for about a second; returns decoded GB/s.
fn measure_cpu_decode(sc: &Scenario, data_dir: &Path, threads: usize) -> Option<f64> {
    let inst = sc.array_instances().into_iter().next()?;
    let dir = data_dir.join(&inst.name);
    let meta = ArrayMetadata::parse(&std::fs::read(dir.join("zarr.json")).ok()?).ok()?;
    let geom = zarr::ArrayGeometry::new(&meta).ok()?;
    let repr = zarr::ChunkRepr {
        shape: geom.chunk_shape.clone(),
        data_type: meta.data_type,
        fill_value: meta.fill_value,
    };
    let chunk_bytes =
        usize::try_from(geom.chunk_num_elements().ok()?).ok()? * meta.data_type.size();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let codecs = match &meta.codecs.array_to_bytes {
        ArrayToBytes::Sharding(s) => {
            let key = meta.chunk_key_encoding.chunk_key(&vec![0; meta.shape.len()]);
            let shard = std::fs::read(dir.join(key)).ok()?;
            let n = geom.num_chunks_per_shard().ok()?;
            let r = ShardIndex::byte_range(s, n, shard.len() as u64).ok()?;
            let idx = ShardIndex::decode(
                s,
                n,
                shard.len() as u64,
                shard.get(r.start as usize..r.end as usize)?,
            )
            .ok()?;
            for e in idx.entries().iter().take(256) {
                if let ChunkLocation::Range { offset, nbytes } = *e {
                    chunks.push(shard.get(offset as usize..(offset + nbytes) as usize)?.to_vec());
                }
            }
            s.codecs.clone()
        }
        ArrayToBytes::Bytes { .. } => {
            let key = meta.chunk_key_encoding.chunk_key(&vec![0; meta.shape.len()]);
            chunks.push(std::fs::read(dir.join(key)).ok()?);
            meta.codecs.clone()
        }
    };
    if chunks.is_empty() {
        return None;
    }
    let deadline = Instant::now() + Duration::from_millis(1000);
    let t = Instant::now();
    let decoded: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|k| {
                let (chunks, codecs, repr) = (&chunks, &codecs, &repr);
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
