//! The `damacy` command-line tool: `bench`, `read`, `inspect`, `gen`.
//!
//! Every failure ends the process with a non-zero exit code and one line on stderr that
//! names the problem; nothing panics on bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

mod benchmark;
mod image;
mod inspect;

#[derive(Parser, Debug)]
#[command(
    name = "damacy",
    version,
    about = "Stream crops from sharded zarr v3 arrays; benchmark, read, inspect and generate datasets."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Benchmark the loader on a scenario's dataset (generated if absent). With no
    /// arguments, runs the `quickstart` scenario.
    Bench(benchmark::BenchArgs),
    /// Read one crop of an array (or of a level of an OME-NGFF image group) and write it
    /// as a NumPy .npy file.
    Read(ReadArgs),
    /// Describe an array (shape, dtype, chunking, codecs, shards, fill value) or an
    /// OME-NGFF image group (levels with their shape, dtype, chunks, scale and
    /// translation; axes; labels).
    Inspect(inspect::InspectArgs),
    /// Write a scenario's dataset as sharded zarr v3 arrays.
    Gen(benchmark::GenArgs),
    /// Serve a directory from the loopback S3-compatible server `bench --store s3` uses
    /// (for peers such as bench/peers/tensorstore_s3_bench.py). Prints the endpoint and
    /// credentials, serves until standard input closes.
    ServeS3(ServeS3Args),
}

#[derive(clap::Args, Debug)]
struct ServeS3Args {
    /// The directory served as bucket `damacy`.
    #[arg(long)]
    data: PathBuf,
    /// Milliseconds the server waits before answering each request.
    #[arg(long, default_value_t = 0.0)]
    latency_ms: f64,
}

fn serve_s3(args: &ServeS3Args) -> Result<()> {
    let server = loopback::S3Server::serve(&args.data)
        .with_context(|| format!("serving {}", args.data.display()))?;
    server.set_latency(std::time::Duration::from_secs_f64(args.latency_ms.max(0.0) / 1000.0));
    for (k, v) in server.client_options() {
        println!("{}={v}", k.to_ascii_uppercase());
    }
    println!("# bucket s3://{}; serving until standard input closes", loopback::BUCKET);
    // Blocks until EOF (or an error) on stdin: the caller decides when the server stops.
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    Ok(())
}

/// Parses `--dtype` with the one spelling of the output dtype (`zarr::OutDtype::parse`).
fn parse_dtype(s: &str) -> Result<damacy::OutDtype, String> {
    damacy::OutDtype::parse(s).map_err(|e| e.to_string())
}

/// Engine selection on the command line.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum BackendArg {
    Auto,
    Host,
    Cuda,
}

impl From<BackendArg> for damacy::Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => damacy::Backend::Auto,
            BackendArg::Host => damacy::Backend::Host,
            BackendArg::Cuda => damacy::Backend::Cuda { device: 0 },
        }
    }
}

#[derive(clap::Args, Debug)]
struct ReadArgs {
    /// The array or OME-NGFF image group: its directory, or an `s3://`, `gs://`,
    /// `az://` or `http(s)://` uri (credentials and endpoints from the environment,
    /// e.g. AWS_ENDPOINT_URL, or from --object-option).
    array: String,
    #[command(flatten)]
    object: ObjectArgs,
    /// For an image group: the level to read (an index into its multiscales datasets,
    /// 0 the highest resolution; `damacy inspect` lists them). Default 0.
    #[arg(long)]
    level: Option<usize>,
    /// The box, one half-open `lo:hi` range per axis, comma separated (e.g. 0:64,10:74,0:32).
    #[arg(long)]
    aabb: String,
    /// Output element type: native, f32, bf16 or f16.
    #[arg(long, value_parser = parse_dtype, default_value = "native")]
    dtype: damacy::OutDtype,
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Where to write the .npy file.
    #[arg(long)]
    out: PathBuf,
}

/// Parses `lo:hi,lo:hi,...`.
pub(crate) fn parse_aabb(s: &str) -> Result<(Vec<u64>, Vec<u64>)> {
    let mut lo = Vec::new();
    let mut hi = Vec::new();
    for (axis, part) in s.split(',').enumerate() {
        let (l, h) = part
            .split_once(':')
            .with_context(|| format!("--aabb axis {axis}: `{part}` is not of the form lo:hi"))?;
        let l: u64 =
            l.trim().parse().with_context(|| format!("--aabb axis {axis}: bad lo `{l}`"))?;
        let h: u64 =
            h.trim().parse().with_context(|| format!("--aabb axis {axis}: bad hi `{h}`"))?;
        if h <= l {
            bail!("--aabb axis {axis}: empty range {l}:{h} (hi must be greater than lo)");
        }
        lo.push(l);
        hi.push(h);
    }
    Ok((lo, hi))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))
}

/// Object-store options on the command line.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct ObjectArgs {
    /// An object-store option as SCHEME.KEY=VALUE (SCHEME: s3, gs, az, http), e.g.
    /// `s3.aws_endpoint=http://127.0.0.1:9000` or `s3.aws_skip_signature=true` for a
    /// public bucket. Repeat for several; they override the environment.
    #[arg(long = "object-option", value_name = "SCHEME.KEY=VALUE")]
    options: Vec<String>,
}

impl ObjectArgs {
    pub(crate) fn config(&self) -> Result<damacy::ObjectStoreConfig> {
        let mut cfg = damacy::ObjectStoreConfig::default();
        for o in &self.options {
            let (key, value) = o
                .split_once('=')
                .with_context(|| format!("--object-option `{o}` is not SCHEME.KEY=VALUE"))?;
            let (scheme, key) = key
                .split_once('.')
                .with_context(|| format!("--object-option `{o}`: no SCHEME. before the key"))?;
            cfg.options.entry(scheme.into()).or_default().insert(key.into(), value.into());
        }
        Ok(cfg)
    }
}

/// A uri with a scheme stays as given; a path becomes absolute, with `.` and `..`
/// resolved lexically (stores refuse keys with `..`).
pub(crate) fn array_uri(array: &str) -> Result<PathBuf> {
    if array.contains("://") {
        return Ok(PathBuf::from(array));
    }
    let mut out = PathBuf::new();
    for c in absolute(Path::new(array))?.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

fn read(args: &ReadArgs) -> Result<()> {
    let (lo, hi) = parse_aabb(&args.aabb)?;
    let shape: Vec<u64> = lo.iter().zip(&hi).map(|(l, h)| h - l).collect();
    let cfg = damacy::Config::builder()
        .sample_shape(&shape)
        .samples_per_batch(1)
        .dtype(args.dtype)
        .backend(args.backend.into())
        .batches_in_flight(1)
        .decode_threads(0)
        .object_store(args.object.config()?)
        .build()?;
    let mut p = damacy::Pipeline::new(cfg)?;
    let mut sample = damacy::Sample::new(array_uri(&args.array)?, lo, hi)?;
    if let Some(level) = args.level {
        sample = sample.level(level);
    }
    p.push([sample])?;
    p.finish();
    let batch = p.pop()?.context("the pipeline produced no batch")?;
    bench::npy::write_npy_file(&args.out, batch.element(), &shape, batch.data()?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {} ({} {:?})", args.out.display(), batch.element(), shape);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd.unwrap_or(Cmd::Bench(benchmark::BenchArgs::default())) {
        Cmd::Bench(a) => benchmark::bench(&a),
        Cmd::Read(a) => read(&a),
        Cmd::Inspect(a) => inspect::inspect(&a),
        Cmd::ServeS3(a) => serve_s3(&a),
        Cmd::Gen(a) => benchmark::generate(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes, outermost first, skipping any cause whose
            // text the message already carries (the library's errors embed their causes).
            let mut msg = String::new();
            for cause in e.chain().map(ToString::to_string) {
                if !msg.contains(&cause) {
                    if !msg.is_empty() {
                        msg.push_str(": ");
                    }
                    msg.push_str(&cause);
                }
            }
            eprintln!("damacy: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
