//! `cargo xtask fuzz [--seconds N] [--target NAME]... [--execs N] [--seed S]`: runs the
//! stable fuzz targets (`crates/fuzz`) one after another, each through
//! `cargo run --profile fuzz -p fuzz`, and fails if any target has a finding.
//!
//! Without `--seconds` or `--execs` each target runs for [`DEFAULT_SECONDS`], which is
//! what `cargo xtask test` (and so CI) uses. The `fuzz` profile is release with overflow
//! checks and debug assertions (see the root `Cargo.toml`).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cargo;

/// Seconds per target by default: six targets on CI's two cores in about 25 s, plus the
/// build.
pub const DEFAULT_SECONDS: &str = "4";

fn fuzz_binary() -> Command {
    let mut c = cargo();
    c.args(["run", "--quiet", "--locked", "--profile", "fuzz", "--package", "fuzz", "--"]);
    c
}

pub fn run(args: &[String]) -> Result<()> {
    let mut targets = Vec::new();
    let mut pass = Vec::new();
    let mut limited = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = it.next().with_context(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--target" => targets.push(value.clone()),
            "--seconds" | "--execs" | "--seed" => {
                limited |= a != "--seed";
                pass.extend([a.clone(), value.clone()]);
            }
            other => bail!("unknown option `{other}` for `cargo xtask fuzz`"),
        }
    }
    if !limited {
        pass.extend(["--seconds".to_owned(), DEFAULT_SECONDS.to_owned()]);
    }
    let start = Instant::now();
    if targets.is_empty() {
        // The binary lists its targets (and this first call builds it).
        let mut list = fuzz_binary();
        list.arg("list");
        eprintln!("xtask: running {list:?}");
        let out = list.output().with_context(|| format!("starting {list:?}"))?;
        if !out.status.success() {
            bail!("{list:?} failed with {}:\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        }
        targets =
            String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect();
    }
    let mut failed = Vec::new();
    for t in &targets {
        let mut c = fuzz_binary();
        c.args(["--target", t]).args(&pass);
        eprintln!("xtask: running {c:?}");
        let status = c.status().with_context(|| format!("starting {c:?}"))?;
        if !status.success() {
            failed.push(t.as_str());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if !failed.is_empty() {
        bail!(
            "fuzz: {} of {} targets failed: {} ({secs:.0} s)",
            failed.len(),
            targets.len(),
            failed.join(", ")
        );
    }
    eprintln!("xtask: fuzz: {} targets passed in {secs:.0} s", targets.len());
    Ok(())
}
