//! GPU tooling: `gpu-bundle` (release test binaries and the `damacy` CLI with the `cuda`
//! feature, stripped, plus nvCOMP's library and a `run.sh`, in `target/gpu-bundle/`, for a
//! GPU host without a Rust toolchain) and `test-gpu` (the same suite through cargo on a
//! machine with a GPU). See shared/GPU.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run};

/// Packages whose test binaries carry `_gpu` tests.
const GPU_TEST_CRATES: &[&str] = &["gpu-schedule", "kernels", "damacy", "bench"];
/// Features that turn the CUDA code on in those packages.
const GPU_FEATURES: &str = "gpu-schedule/cuda,kernels/cuda,damacy/cuda,bench/cuda";
/// The pinned nvCOMP wheel (CUDA 13 build), see shared/GPU.md.
const NVCOMP_WHEEL: &str = "nvidia-libnvcomp-cu13==6.0.0.12";
/// The bundle must travel in one piece to the GPU host, beside the working tree (about
/// 5 MiB), within the 64 MiB one device call carries.
const BUNDLE_LIMIT: u64 = 56 << 20;

fn bundle_dir() -> PathBuf {
    root().join("target/gpu-bundle")
}

fn wheel_dir() -> PathBuf {
    root().join("target/nvcomp-wheel")
}

/// The unpacked wheel's `libnvcomp.so.*`, downloading and unpacking the wheel if needed.
fn nvcomp_lib() -> Result<PathBuf> {
    let dir = wheel_dir();
    let find = |dir: &Path| -> Option<PathBuf> {
        ["nvidia/libnvcomp/lib64", "nvidia/libnvcomp/lib"].iter().find_map(|sub| {
            let lib = dir.join(sub);
            std::fs::read_dir(&lib).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libnvcomp.so") && !n.contains("cpu"))
            })
        })
    };
    if let Some(p) = find(&dir) {
        return Ok(p);
    }
    std::fs::create_dir_all(&dir)?;
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--platform", "manylinux_2_28_x86_64", "--python-version", "3.12", "-d"])
        .arg(&dir)
        .arg(NVCOMP_WHEEL);
    run(pip)?;
    let wheel = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("pip downloaded no wheel")?;
    let mut unzip = Command::new("python3");
    unzip.args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&dir);
    run(unzip)?;
    find(&dir).context("the nvCOMP wheel holds no libnvcomp.so")
}

/// The package of a compiler-artifact line: `…/crates/NAME#0.1.0` (or `…#NAME@0.1.0`)
/// in its `package_id`.
fn package_of(line: &str) -> Option<&str> {
    let start = line.find("\"package_id\":\"")? + 14;
    let id = &line[start..start + line[start..].find('"')?];
    let (path, version) = id.rsplit_once('#')?;
    match version.split_once('@') {
        Some((name, _)) => Some(name),
        None => path.rsplit('/').next(),
    }
}

/// Test executables built by `cargo test --no-run --message-format=json`, each with the
/// name it gets in the bundle: `PACKAGE-TARGET` (every crate's integration binary is
/// called `tests`, so the package keeps their logs apart).
fn test_executables() -> Result<Vec<(PathBuf, String)>> {
    let mut c = cargo();
    c.args(["test", "--release", "--no-run", "--message-format=json", "--features", GPU_FEATURES]);
    for k in GPU_TEST_CRATES {
        c.args(["-p", k]);
    }
    c.stdout(Stdio::piped());
    eprintln!("xtask: running {c:?}");
    let out = c.output().context("starting cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed with {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut exes = Vec::new();
    for line in text.lines() {
        // A compiler-artifact line of a test target carries `"executable":"<path>"`; a
        // path never holds a double quote, so a substring scan is exact here.
        if !line.contains("\"reason\":\"compiler-artifact\"") || !line.contains("\"test\":true") {
            continue;
        }
        if let Some(start) = line.find("\"executable\":\"") {
            let rest = &line[start + 14..];
            if let Some(end) = rest.find('"') {
                let exe = PathBuf::from(&rest[..end]);
                let stem = exe.file_stem().and_then(|n| n.to_str()).unwrap_or("test");
                let target = stem.rsplit_once('-').map_or(stem, |(t, _)| t);
                let name = format!("{}-{target}", package_of(line).unwrap_or("unknown"));
                exes.push((exe, name));
            }
        }
    }
    if exes.is_empty() {
        bail!("cargo reported no test executables");
    }
    Ok(exes)
}

fn cli_executable() -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "--release", "-p", "cli", "--features", "cuda", "--message-format=json"]);
    c.stdout(Stdio::piped());
    eprintln!("xtask: running {c:?}");
    let out = c.output().context("starting cargo build -p cli")?;
    if !out.status.success() {
        bail!("cargo build -p cli failed with {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| {
            let start = l.find("\"executable\":\"")?;
            let rest = &l[start + 14..];
            let p = PathBuf::from(&rest[..rest.find('"')?]);
            (p.file_name()? == "damacy").then_some(p)
        })
        .next_back()
        .context("cargo built no `damacy` executable")
}

/// Copies `from` to `to` and strips it (debug info and symbols).
fn copy_stripped(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    let mut strip = Command::new("strip");
    strip.arg("--strip-all").arg(to);
    run(strip)
}

/// Whether a test executable holds `_gpu` tests (by its `--list`; listing needs no GPU).
fn has_gpu_tests(exe: &Path) -> Result<bool> {
    let out = Command::new(exe)
        .arg("--list")
        .output()
        .with_context(|| format!("listing the tests of {}", exe.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.ends_with("_gpu: test")))
}

/// `cargo xtask gpu-bundle [--bench]`: the test executables that hold `_gpu` tests (their
/// host-only tests run in CI anyway), or with `--bench` the `damacy` CLI and the bench
/// crate's GPU tests, each beside nvCOMP and `run.sh`. Two bundles, because one device call carries at most 64 MiB and
/// both together (with the object-store client in the tests and the CLI) are larger.
pub fn bundle(bench: bool) -> Result<()> {
    let lib = nvcomp_lib()?;
    let mut tests = Vec::new();
    let mut cli = None;
    for (exe, name) in test_executables()? {
        // The bench crate's GPU tests travel with the CLI they measure.
        if name.starts_with("bench-") == bench && has_gpu_tests(&exe)? {
            tests.push((exe, name));
        }
    }
    if bench {
        cli = Some(cli_executable()?);
    }
    let dir = bundle_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    for sub in ["tests", "bin", "lib"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    for (exe, name) in &tests {
        copy_stripped(exe, &dir.join("tests").join(name))?;
    }
    if let Some(cli) = &cli {
        copy_stripped(cli, &dir.join("bin/damacy"))?;
    }
    let lib_name = lib.file_name().context("library without a name")?;
    std::fs::copy(&lib, dir.join("lib").join(lib_name))?;
    std::fs::write(dir.join("run.sh"), RUN_SH)?;
    let mut total = 0u64;
    for sub in ["tests", "bin", "lib"] {
        for e in std::fs::read_dir(dir.join(sub))? {
            total += e?.metadata()?.len();
        }
    }
    eprintln!("xtask: bundle {} holds {:.1} MiB", dir.display(), total as f64 / f64::from(1 << 20));
    if total > BUNDLE_LIMIT {
        bail!("the bundle is {total} bytes, over the {BUNDLE_LIMIT}-byte limit");
    }
    Ok(())
}

/// `cargo xtask test-gpu`: every test of the GPU crates (host and `_gpu`), release, one
/// thread, with `DAMACY_NVCOMP_LIB` pointing at the unpacked wheel.
pub fn test_gpu() -> Result<()> {
    let lib = nvcomp_lib()?;
    let mut c = cargo();
    c.args(["test", "--release", "--features", GPU_FEATURES]);
    for k in GPU_TEST_CRATES {
        c.args(["-p", k]);
    }
    c.args(["--", "--test-threads=1"]);
    c.env("DAMACY_NVCOMP_LIB", lib);
    run(c)
}

/// The bundle's driver script.
const RUN_SH: &str = r#"#!/usr/bin/env bash
# Runs the bundled GPU suite or a benchmark on a GPU host (no Rust toolchain needed).
#   bash run.sh test            every bundled test binary, one test thread each
#   bash run.sh bench SCENARIO  damacy bench --scenario SCENARIO (a `gpu-bundle --bench` bundle)
# Logs and JSON go to $OUT (default ./gpu-out).
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-./gpu-out}"
mkdir -p "$OUT"
export DAMACY_NVCOMP_LIB="$(ls "$HERE"/lib/libnvcomp.so* | head -n1)"
export RUST_BACKTRACE=1
case "${1:-test}" in
test)
    status=0
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
    for t in "$HERE"/tests/*; do
        [ -e "$t" ] || { echo "no test binaries in this bundle"; exit 2; }
        crate="$(basename "$t")"
        log="$OUT/test-$crate.log"
        start=$(date +%s)
        "$t" --test-threads=1 > "$log" 2>&1
        rc=$?
        secs=$(( $(date +%s) - start ))
        summary="$(grep -E '^test result:' "$log" | tail -n1)"
        ngpu="$(grep -cE '^test .*_gpu \.\.\. ok$' "$log")"
        echo "$crate: rc=$rc ${secs}s gpu_tests_ok=$ngpu ${summary:-no summary (crashed?)}" | tee -a "$OUT/summary.txt"
        if [ $rc -ne 0 ]; then
            status=1
            grep -E '^test .* FAILED$|panicked at|^---- ' "$log" | head -n 40
        fi
    done
    exit $status
    ;;
bench)
    scenario="${2:?usage: run.sh bench SCENARIO}"
    shift 2
    "$HERE/bin/damacy" bench --scenario "$scenario" --json "$OUT/bench-$scenario.json" "$@" 2>&1 | tee "$OUT/bench-$scenario.log"
    exit ${PIPESTATUS[0]}
    ;;
*)
    echo "usage: run.sh test | run.sh bench SCENARIO" >&2
    exit 2
    ;;
esac
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn package_names_come_from_package_ids() {
        let path = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/damacy#0.1.0","target":{}}"#;
        assert_eq!(super::package_of(path), Some("damacy"));
        let named = r#"{"package_id":"path+file:///w/crates/gpu-schedule#gpu-schedule@0.1.0"}"#;
        assert_eq!(super::package_of(named), Some("gpu-schedule"));
        assert_eq!(super::package_of("{}"), None);
    }
}
