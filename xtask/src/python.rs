//! The Python package's tasks: `cargo xtask test`'s pytest step (`test`) and
//! `cargo xtask wheel` (a release wheel with the CUDA engine).
//!
//! Both make their own virtual environment under `target/python-venv` with the system's
//! `python3` (or `$DAMACY_PYTHON`) and pip-install pinned tools from the package
//! registry: nothing but CPython >= 3.10 with `venv` is assumed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::{root, run};

/// Pinned build and test tools.
const MATURIN: &str = "maturin==1.16.0";
const NUMPY: &str = "numpy==2.3.5";
const PYTEST: &str = "pytest==8.4.2";
/// A hung test fails (with every thread's stack) instead of holding CI to its limit.
const PYTEST_TIMEOUT: &str = "pytest-timeout==2.4.0";

/// The package's directory (its `pyproject.toml`).
fn package() -> PathBuf {
    root().join("crates/damacy-py")
}

/// The virtual environment, created on first use, with the pinned tools installed.
fn venv() -> Result<PathBuf> {
    let dir = root().join("target/python-venv");
    let python = dir.join("bin/python");
    if !python.exists() {
        let base = std::env::var("DAMACY_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut c = Command::new(base);
        c.args(["-m", "venv"]).arg(&dir);
        run(c).context("creating the Python virtual environment (is python3-venv installed?)")?;
    }
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]);
    pip.args([MATURIN, NUMPY, PYTEST, PYTEST_TIMEOUT]);
    run(pip)?;
    Ok(dir)
}

/// A command run inside the environment (its `bin` first on `PATH`, as activation does:
/// maturin's build backend finds its own executable there).
fn in_venv(venv: &Path, program: &str) -> Command {
    let bin = venv.join("bin");
    let mut c = Command::new(bin.join(program));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin];
    paths.extend(std::env::split_paths(&path));
    if let Ok(joined) = std::env::join_paths(paths) {
        c.env("PATH", joined);
    }
    c.env("VIRTUAL_ENV", venv);
    c.current_dir(root());
    c
}

/// Builds the package and installs it into the environment with pip, as a user's `pip
/// install` does, then runs pytest on `crates/damacy-py/tests` (the CPU suite;
/// `tests_gpu` is for the GPU host). The build uses cargo's `dev` profile (maturin's
/// `--profile test` would build the test harness, not the module): the tests need no
/// optimized build.
pub(crate) fn test() -> Result<()> {
    let start = Instant::now();
    let venv = venv()?;
    let mut install = in_venv(&venv, "python");
    install.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-build-isolation",
        "--force-reinstall",
        "--no-deps",
    ]);
    install.arg(package());
    install.env("MATURIN_PEP517_ARGS", "--profile dev --locked");
    run(install)?;
    let mut pytest = in_venv(&venv, "python");
    pytest.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "300"]);
    pytest.arg(package().join("tests"));
    run(pytest)?;
    eprintln!("xtask: the Python step took {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// `cargo xtask wheel`: a release abi3 wheel with the CUDA engine (CUDA is loaded at run
/// time, so the wheel also runs on machines without a GPU) in `target/wheels`.
pub(crate) fn wheel() -> Result<()> {
    let venv = venv()?;
    let out = root().join("target/wheels");
    let mut c = in_venv(&venv, "maturin");
    c.args(["build", "--release", "--locked", "--features", "cuda", "--manifest-path"]);
    c.arg(package().join("Cargo.toml"));
    c.arg("--out").arg(&out);
    run(c)?;
    eprintln!("xtask: wheel written to {}", out.display());
    Ok(())
}
