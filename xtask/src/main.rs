//! Project automation, run as `cargo xtask <task>` (the cargo-xtask pattern).
//!
//! Tasks:
//! - `test`: the whole CPU test suite: workspace tests, loom models, and a build of the
//!   `cuda` features (which must compile on a machine without CUDA). This is the README's
//!   test command and what `.ci/run` runs.
//! - `fuzz`: the stable fuzz targets (`crates/fuzz`) for a bounded time (see `fuzz.rs`);
//!   `test` runs them too.
//! - `loom`: only the loom models (`--cfg damacy_loom`, release, preemption bound 2).
//! - `fixtures`: regenerates `tests/data` with the pinned zarr-python script, and
//!   `tests/data/ngff` with the pinned ome-zarr-py one.
//! - `bench-compare`: `damacy bench` against the tensorstore peer on one scenario
//!   (see `compare.rs`).
//! - `gpu-bundle [--bench]`: release test binaries with `_gpu` tests (or, with `--bench`,
//!   the `damacy` CLI), nvCOMP and `run.sh` in `target/gpu-bundle/` for the GPU host
//!   (see `gpu.rs`).
//! - `test-gpu`: the GPU test suite through cargo, on a machine with a GPU.
//! - `check-imports`: no import cycle between the files of one crate (see `imports.rs`).
//! - `wheel`: a release wheel of the `damacy` Python package, with the CUDA engine (see
//!   `python.rs`); `test` builds the package into its own virtual environment and runs
//!   its pytest suite.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod compare;

mod fuzz;

mod gpu;

mod imports;

mod python;

/// Crates that carry loom models under `cfg(damacy_loom)`.
const LOOM_CRATES: &[&str] = &["prefetch-cache", "gpu-schedule", "store", "chunk-cache"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    match task {
        "test" => test(),
        "loom" => loom(),
        "fuzz" => fuzz::run(&args[1..]),
        "fixtures" => fixtures(),
        "bench-compare" => compare::run(&args[1..]),
        "gpu-bundle" => gpu::bundle(args.iter().any(|a| a == "--bench")),
        "test-gpu" => gpu::test_gpu(),
        "check-imports" => imports::check(),
        "wheel" => python::wheel(),
        "help" | "--help" | "-h" => {
            println!(
                "usage: cargo xtask <test|loom|fuzz|fixtures|gpu-bundle [--bench]|test-gpu|bench-compare|check-imports|wheel>"
            );
            println!(
                "       cargo xtask fuzz [--seconds N] [--target NAME]... [--execs N] [--seed S]"
            );
            println!(
                "       cargo xtask bench-compare --scenario NAME|FILE.json [--threads 1,2,4,...] [--out DIR]"
            );
            Ok(())
        }
        other => bail!("unknown task `{other}`; run `cargo xtask help`"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(mut cmd: Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn test() -> Result<()> {
    imports::check()?;
    let mut t = cargo();
    t.args(["test", "--workspace", "--locked"]);
    run(t)?;
    loom()?;
    fuzz::run(&[])?;
    // The CUDA code paths must build on a machine with no CUDA toolkit and no GPU.
    let mut b = cargo();
    b.args(["check", "--locked", "--all-targets", "--features", "cuda"]);
    for p in ["gpu-schedule", "kernels", "damacy", "cli", "bench", "damacy-py"] {
        b.args(["-p", p]);
    }
    run(b)?;
    python::test()
}

fn loom() -> Result<()> {
    let mut c = cargo();
    c.args(["test", "--locked", "--release", "--lib"]);
    for k in LOOM_CRATES {
        c.args(["-p", k]);
    }
    c.arg("loom");
    // A separate target dir keeps the loom build from invalidating the normal one.
    c.env("CARGO_TARGET_DIR", root().join("target/loom"));
    c.env("RUSTFLAGS", "--cfg damacy_loom");
    // The models need no debug info; without it the loom build takes a third of the disk.
    c.env("CARGO_PROFILE_RELEASE_DEBUG", "false");
    c.env("LOOM_MAX_PREEMPTIONS", "2");
    run(c)
}

fn fixtures() -> Result<()> {
    // zarr-python's arrays, then ome-zarr-py's OME-NGFF images (each with its own pins).
    for script in ["tests/data/make_fixtures.sh", "tests/data/ngff/make_ngff_fixtures.sh"] {
        let mut c = Command::new("bash");
        c.arg(root().join(script)).current_dir(root());
        run(c)?;
    }
    Ok(())
}
