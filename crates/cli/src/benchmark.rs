//! `damacy bench` and `damacy gen`: scenario datasets and throughput runs, with progress
//! bars on stderr and an optional JSON report.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bench::{BenchOptions, BenchProgress, BenchReport, GenProgress, Scenario};
use indicatif::{ProgressBar, ProgressStyle};

use crate::BackendArg;

#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// A built-in scenario name (smoke, quickstart, default, blosc, bitshuffle,
    /// mixed-dtype, many-arrays, latency) or a scenario JSON file.
    #[arg(long, default_value = "quickstart")]
    scenario: String,
    /// Dataset directory (default: ./bench-data/<scenario>); generated if absent.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// CPU threads for decoding (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Skip the decode-ceiling measurements (CPU decode alone, and nvCOMP alone for the
    /// CUDA engine).
    #[arg(long)]
    no_ceiling: bool,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where the dataset is read from: `file`, or `s3` (served from the files by the
    /// loopback S3-compatible server the tests use, as `s3://damacy/...`).
    #[arg(long, value_enum, default_value = "file")]
    store: StoreArg,
    /// With `--store s3`: milliseconds the server waits before answering each request.
    #[arg(long, default_value_t = 0.0)]
    latency_ms: f64,
    /// Replay the scenario's crops this many times (epochs 2.. are reported one by one;
    /// with `--chunk-cache` they show what the cache saves).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    epochs: u64,
    /// Decoded-chunk cache size, in bytes or with a K/M/G/T suffix (powers of 1024), e.g.
    /// `4G`. 0 (default) = no cache. Host memory for the host engine, device memory for
    /// the CUDA engine (added to its 24 GiB GPU budget).
    #[arg(long, default_value = "0", value_parser = parse_bytes)]
    chunk_cache: u64,
    /// Eviction policy of the decoded-chunk cache.
    #[arg(long, value_enum, default_value = "clock")]
    chunk_cache_policy: PolicyArg,
    /// CUDA engine wave slots: waves in flight at once, each decoding on its own stream
    /// (2 to 16; 0 = 8 for small batches with the automatic 8 buffers, else 3, where the
    /// memory budgets allow, else fewer; `Config::gpu_wave_slots`).
    #[arg(long, default_value_t = 0)]
    gpu_wave_slots: usize,
    /// Threads preparing batches (planning, cache probes), each a whole batch; batches
    /// stay in order (0 = a quarter of the cores, 1 to 4; `Config::prepare_threads`).
    #[arg(long, default_value_t = 0)]
    prepare_threads: usize,
    /// CUDA engine: read zstd chunks of local files with GPUDirect Storage (`on` uses
    /// cuFile's compat mode too, where nvidia-fs is absent; `Config::gds`).
    #[arg(long, value_enum, default_value = "auto")]
    gds: GdsArg,
    /// Batch buffers in circulation, held by the caller or being filled (0 = the
    /// default: 8 for small batches on the CUDA engine, else 3;
    /// `Config::batches_in_flight`).
    #[arg(long, default_value_t = 0)]
    batches_in_flight: usize,
    /// Batches planned, read and decoded as one, each still popped on its own (0 = as
    /// many as fill about 3 GiB of buffer, at most 16, on the CUDA engine where its
    /// budgets allow; `Config::batches_per_plan`).
    #[arg(long, default_value_t = 0)]
    batches_per_plan: usize,
    /// CUDA engine GPU memory budget, bytes or with a K/M/G/T suffix (0 = 24 GiB plus
    /// `--chunk-cache`; `Config::max_gpu_memory_bytes`). Larger budgets allow larger
    /// waves (more chunks per nvCOMP call).
    #[arg(long, default_value = "0", value_parser = parse_bytes)]
    gpu_memory: u64,
    /// CUDA engine pinned host memory budget (0 = an eighth of the host's memory, 1 to
    /// 8 GiB; `Config::max_pinned_host_bytes`).
    #[arg(long, default_value = "0", value_parser = parse_bytes)]
    pinned_memory: u64,
    /// Write the pipeline's timeline after the warm-up (each thread's steps per batch)
    /// to this file, as Chrome trace-event JSON (Perfetto, chrome://tracing).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// CUDA devices, comma separated (e.g. `0,1`): the run uses the first; with two or
    /// more, one pipeline per device then runs at once, each with its share of the
    /// threads and every N-th crop, and the report gives their aggregate against the
    /// one-device run (the multi-GPU scaling measurement). Implies `--backend cuda`.
    #[arg(long, value_delimiter = ',', conflicts_with = "pipelines")]
    devices: Vec<usize>,
    /// After the run, this many pipelines of `--backend` at once, each with its share of
    /// the threads and every N-th crop, against the one-pipeline run (1 = none).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pipelines: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GdsArg {
    Off,
    Auto,
    On,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PolicyArg {
    Lru,
    Clock,
}

/// `1234`, `64K`, `512M`, `4G`, `1T` (powers of 1024; a trailing `B`/`iB` is allowed).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("`{s}`: unknown unit `{c}` (use K, M, G or T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("`{s}` is not a byte count"))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("`{s}` is too large"))
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreArg {
    File,
    S3,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            scenario: "quickstart".into(),
            data: None,
            backend: BackendArg::Auto,
            threads: 0,
            no_ceiling: false,
            json: None,
            store: StoreArg::File,
            latency_ms: 0.0,
            epochs: 1,
            chunk_cache: 0,
            chunk_cache_policy: PolicyArg::Clock,
            gpu_wave_slots: 0,
            prepare_threads: 0,
            gds: GdsArg::Auto,
            batches_in_flight: 0,
            batches_per_plan: 0,
            gpu_memory: 0,
            pinned_memory: 0,
            trace: None,
            devices: Vec::new(),
            pipelines: 1,
        }
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct GenArgs {
    /// A built-in scenario name or a scenario JSON file.
    #[arg(long)]
    scenario: String,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Writer threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn load(arg: &str) -> Result<Scenario> {
    Scenario::load(arg).with_context(|| format!("scenario `{arg}`"))
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b.set_message(what.to_owned());
    b
}

fn gen_progress(b: &ProgressBar, p: GenProgress) {
    b.set_length(p.objects_total);
    b.set_position(p.objects_done);
}

fn threads(n: usize) -> usize {
    if n == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { n }
}

pub(crate) fn generate(args: &GenArgs) -> Result<()> {
    let sc = load(&args.scenario)?;
    let b = bar(0, "generate");
    let report =
        bench::datagen::generate(&sc, &args.out, threads(args.threads), &|p| gen_progress(&b, p))
            .with_context(|| format!("generating `{}` into {}", sc.name, args.out.display()))?;
    b.finish_and_clear();
    println!(
        "{}: {} arrays, {} objects, {:.1} MiB raw, {:.1} MiB stored, zstd ratio {:.2}x, {:.1} s{}",
        report.scenario,
        report.arrays,
        report.objects,
        report.raw_bytes as f64 / 1048576.0,
        report.stored_bytes as f64 / 1048576.0,
        report.ratio,
        report.seconds,
        if report.cached { " (already there)" } else { "" }
    );
    Ok(())
}

/// The run's backend and the side-by-side ones: `--devices` picks CUDA devices (the first
/// for the run, every one side by side), `--pipelines` repeats `--backend`.
fn backends(args: &BenchArgs) -> Result<(damacy::Backend, Vec<damacy::Backend>)> {
    let Some(&first) = args.devices.first() else {
        let b = args.backend.into();
        return Ok((b, vec![b; if args.pipelines >= 2 { args.pipelines as usize } else { 0 }]));
    };
    if args.backend == BackendArg::Host {
        bail!(
            "--devices runs the CUDA engine on each listed GPU; drop --backend host, or use --pipelines N for host pipelines side by side"
        );
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(d) = args.devices.iter().find(|d| !seen.insert(**d)) {
        bail!("--devices lists device {d} twice; give each GPU once");
    }
    let cuda = |device| damacy::Backend::Cuda { device };
    let side = if args.devices.len() >= 2 {
        args.devices.iter().map(|&d| cuda(d)).collect()
    } else {
        Vec::new()
    };
    Ok((cuda(first), side))
}

pub(crate) fn bench(args: &BenchArgs) -> Result<()> {
    let sc = load(&args.scenario)?;
    let data_dir = args.data.clone().unwrap_or_else(|| PathBuf::from("bench-data").join(&sc.name));
    let (backend, side_by_side) = backends(args)?;
    let opts = BenchOptions {
        scenario: sc.clone(),
        data_dir: data_dir.clone(),
        backend,
        threads: args.threads,
        measure_ceiling: !args.no_ceiling,
        store: match args.store {
            StoreArg::File => bench::StoreKind::File,
            StoreArg::S3 => bench::StoreKind::S3 { latency_ms: args.latency_ms },
        },
        epochs: args.epochs,
        chunk_cache_bytes: args.chunk_cache,
        chunk_cache_policy: match args.chunk_cache_policy {
            PolicyArg::Lru => damacy::ChunkCachePolicy::Lru,
            PolicyArg::Clock => damacy::ChunkCachePolicy::Clock,
        },
        gpu_wave_slots: args.gpu_wave_slots,
        prepare_threads: args.prepare_threads,
        gds: match args.gds {
            GdsArg::Off => damacy::Gds::Off,
            GdsArg::Auto => damacy::Gds::Auto,
            GdsArg::On => damacy::Gds::On,
        },
        batches_in_flight: args.batches_in_flight,
        batches_per_plan: args.batches_per_plan,
        max_gpu_memory_bytes: args.gpu_memory,
        max_pinned_host_bytes: args.pinned_memory,
        trace: args.trace.is_some(),
        side_by_side,
    };
    let gen_bar = bar(0, "generate");
    let run_bar = bar(sc.warmup_batches + sc.timed_batches, "batches");
    run_bar.set_position(0);
    let report = bench::run(&opts, &|p| match p {
        BenchProgress::Generating(g) => gen_progress(&gen_bar, g),
        BenchProgress::Warmup { done, .. } => {
            gen_bar.finish_and_clear();
            run_bar.set_message("warm-up");
            run_bar.set_position(done);
        }
        BenchProgress::Timed { done, .. } => {
            run_bar.set_message("timed");
            run_bar.set_position(sc.warmup_batches + done);
        }
        BenchProgress::Epoch { epoch, done, .. } => {
            run_bar.set_message(format!("epoch {epoch}"));
            run_bar.set_position(done);
        }
        BenchProgress::SideBySide { done, total } => {
            run_bar.set_message("side by side");
            run_bar.set_length(total);
            run_bar.set_position(done);
        }
    })
    .with_context(|| format!("bench `{}` on {}", sc.name, data_dir.display()))?;
    gen_bar.finish_and_clear();
    run_bar.finish_and_clear();
    print_report(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    if let (Some(path), Some(trace)) = (&args.trace, &report.trace) {
        std::fs::write(path, trace.to_chrome_json())
            .with_context(|| format!("writing {}", path.display()))?;
        println!("trace of {} spans written to {}", trace.spans.len(), path.display());
    }
    Ok(())
}

fn print_report(r: &BenchReport) {
    println!(
        "scenario {}  engine {}  threads {}  output {}  store {}",
        r.scenario, r.engine, r.threads, r.output_dtype, r.store
    );
    println!(
        "dataset  {} arrays, zstd ratio {:.2}x{}",
        r.dataset.arrays,
        r.dataset.ratio,
        if r.dataset.cached { " (cached)" } else { "" }
    );
    println!("batches  {} ({} samples) in {:.2} s", r.batches, r.samples, r.seconds);
    println!(
        "throughput  {:.3} Gvox/s   source {:.3} GB/s   output {:.3} GB/s",
        r.gvox_per_s, r.source_gb_per_s, r.output_gb_per_s
    );
    println!(
        "amplification  read {:.2}x   decode {:.2}x",
        r.read_amplification, r.decode_amplification
    );
    println!("{}", ceiling_line(r));
    if r.gpu_wave_slots > 0 {
        println!("waves    {} slots of up to {} chunks", r.gpu_wave_slots, r.gpu_wave_chunks);
    }
    println!(
        "prepare  {} batch preparers, {} batch buffers, up to {} batches a plan ({} plans for {} batches)",
        r.prepare_threads, r.batches_in_flight, r.batches_per_plan, r.plans, r.stats.batches
    );
    if r.gds_reads + r.gds_fallbacks > 0 {
        println!(
            "gds      {} chunks ({:.2} GB) read into device memory, {} reads through host memory instead, {} frames rejected by the device check",
            r.gds_reads,
            r.gds_bytes as f64 / 1e9,
            r.gds_fallbacks,
            r.gds_rejected
        );
    }
    let stages: Vec<String> = r
        .stages
        .iter()
        .map(|s| format!("{} {:.2}s ({:.0}%)", s.stage, s.seconds, 100.0 * s.load))
        .collect();
    println!("stages   {}", stages.join("  "));
    if r.batches > 0 {
        let per: Vec<String> =
            r.stages.iter().map(|s| format!("{} {:.2}", s.stage, s.ms_per_batch)).collect();
        println!(
            "per batch {:.2} ms wall; stage shares (ms): {}",
            r.seconds * 1e3 / r.batches as f64,
            per.join("  ")
        );
    }
    println!(
        "first batch after {:.3} s   peak RSS {}",
        r.time_to_first_batch_s,
        r.peak_rss_bytes
            .map(|b| format!("{:.0} MiB", b as f64 / 1048576.0))
            .unwrap_or_else(|| "unknown".into())
    );
    let c = &r.stats.chunk_cache;
    if c.capacity_bytes > 0 {
        println!(
            "chunk cache  {:.0} MiB: hit rate {:.1}%  ({} hits, {} misses, {} evictions, {} not cached), {:.0} MiB held",
            c.capacity_bytes as f64 / 1048576.0,
            100.0 * c.hit_rate(),
            c.hits,
            c.misses,
            c.evictions,
            c.rejected,
            c.bytes as f64 / 1048576.0
        );
    }
    for e in &r.epochs {
        println!(
            "epoch {:>3}  {:.3} Gvox/s  {} batches in {:.2} s  {} chunks decoded  cache hit rate {:.1}%{}",
            e.epoch,
            e.gvox_per_s,
            e.batches,
            e.seconds,
            e.chunks_decoded,
            100.0 * e.chunk_cache.hit_rate(),
            if e.epoch == 1 { " (timed window)" } else { "" }
        );
    }
    if let Some(s) = &r.side_by_side {
        println!(
            "side by side  {} pipelines at once: {:.3} Gvox/s together in {:.2} s, {:.2}x the one-pipeline run above",
            s.pipelines.len(),
            s.gvox_per_s,
            s.seconds,
            s.speedup
        );
        for w in &s.pipelines {
            println!(
                "  {:<10} {} engine, threads {}: {:.3} Gvox/s, {} batches in {:.2} s, first batch after {:.3} s",
                w.backend,
                w.engine,
                w.threads,
                w.gvox_per_s,
                w.batches,
                w.seconds,
                w.time_to_first_batch_s
            );
        }
    }
}

/// `ceiling  nvCOMP 41.2 GB/s (2048 chunks/call) + CPU 7.1 GB/s on 16 threads -> 13.4
/// Gvox/s; achieved 78% of it` (the nvCOMP term only where it was measured).
fn ceiling_line(r: &BenchReport) -> String {
    let Some(c) = r.ceiling_gvox_per_s else { return "ceiling  not measured".into() };
    let mut terms = Vec::new();
    if let Some(g) = r.gpu_decode_gb_per_s {
        let per_call =
            r.gpu_decode_chunks_per_call.map(|n| format!(" ({n} chunks/call)")).unwrap_or_default();
        terms.push(format!("nvCOMP {g:.1} GB/s{per_call}"));
    }
    if let Some(d) = r.cpu_decode_gb_per_s {
        terms.push(format!("CPU {d:.1} GB/s on {} threads", r.threads));
    }
    // The CUDA engine decodes on the GPU too: say so when nvCOMP could not be measured
    // (blosc chunks, no nvCOMP), since the CPU-only figure then understates the ceiling.
    let note = if r.engine == "cuda" && r.gpu_decode_gb_per_s.is_none() {
        " (nvCOMP not measured: CPU decode only)"
    } else {
        ""
    };
    let achieved = if c > 0.0 { 100.0 * r.gvox_per_s / c } else { 0.0 };
    format!("ceiling  {} -> {c:.3} Gvox/s{note}; achieved {achieved:.0}% of it", terms.join(" + "))
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_counts_take_binary_suffixes_and_refuse_the_rest() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1234"), Ok(1234));
        assert_eq!(parse_bytes("64K"), Ok(64 << 10));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("4G"), Ok(4 << 30));
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("1TB"), Ok(1 << 40));
        assert!(parse_bytes("4X").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999T").unwrap_err().contains("too large"));
    }
}
