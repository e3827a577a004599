//! The fuzz driver: runs targets over mutated inputs for a time or an execution budget
//! and reports findings with the input that caused them.
//!
//! ```text
//! fuzz [--target NAME]... [--seconds N] [--execs N] [--seed S] [--max-len N]
//! fuzz --target NAME FILE...    run the given inputs once (replaying a crash file)
//! fuzz list                     the targets, one per line
//! fuzz seeds                    rewrite corpus/ from the fixtures (see corpus/README.md)
//! ```
//!
//! Each target runs in a worker process (this binary with `--worker`) that reports a
//! checkpoint every few thousand inputs. A panic or an over-allocation is caught in the
//! worker, which names the input's index; an abort kills the worker, and the driver
//! replays from the last checkpoint with a trace of every index to find the input. Either
//! way the driver rebuilds the input from the seed and its index and writes it to
//! `target/fuzz-crashes/<target>-<hash>.bin`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fuzz::allocation::{self, CAP, CountingAlloc};
use fuzz::campaign::Campaign;
use fuzz::exec;
use fuzz::mutate::MAX_INPUT_LEN;
use fuzz::targets::{self, Target};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// A worker reports progress every this many inputs; an abort is replayed from the last
/// report, so this bounds the replay.
const CHECKPOINT: u64 = 4096;

const USAGE: &str = "\
usage: fuzz [--target NAME]... [--seconds N] [--execs N] [--seed S] [--max-len N]
       fuzz --target NAME FILE...   run the given inputs once (replay a crash file)
       fuzz list                    the targets, one per line
       fuzz seeds                   rewrite corpus/ from the fixtures (corpus/README.md)
Without --target, every target runs in turn. Without --seconds or --execs, each runs for
10 seconds; with both, until the first limit. The seed is printed; --seed replays a run.
";

/// An input that runs longer than this (and less than twice this) is reported as a
/// hang. The slowest targets take well under a millisecond per input.
const HANG_SECONDS: u64 = 10;

/// Seconds per target when neither `--seconds` nor `--execs` is given.
const DEFAULT_SECONDS: f64 = 10.0;

#[derive(Debug, Clone)]
struct Options {
    targets: Vec<&'static Target>,
    seconds: Option<f64>,
    execs: Option<u64>,
    seed: u64,
    max_len: usize,
    files: Vec<PathBuf>,
    worker: bool,
    trace_from: Option<u64>,
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut o = Options {
        targets: Vec::new(),
        seconds: None,
        execs: None,
        seed: fresh_seed(),
        max_len: MAX_INPUT_LEN,
        files: Vec::new(),
        worker: false,
        trace_from: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| {
            it.next().cloned().with_context(|| format!("{a} needs {what}; see `fuzz --help`"))
        };
        match a.as_str() {
            "--target" => {
                let name = value("a target name")?;
                let t = targets::by_name(&name).with_context(|| {
                    format!("no target `{name}`; the targets are: {}", names().join(", "))
                })?;
                o.targets.push(t);
            }
            "--seconds" => o.seconds = Some(number(&value("a number of seconds")?, a)?),
            "--execs" => o.execs = Some(number(&value("a number of executions")?, a)?),
            "--seed" => o.seed = parse_seed(&value("a seed")?)?,
            "--max-len" => o.max_len = number(&value("a length in bytes")?, a)?,
            "--worker" => o.worker = true,
            "--trace-from" => o.trace_from = Some(number(&value("an input index")?, a)?),
            s if s.starts_with('-') => bail!("unknown option `{s}`; see `fuzz --help`"),
            file => o.files.push(PathBuf::from(file)),
        }
    }
    if o.targets.is_empty() {
        o.targets = targets::ALL.iter().collect();
    }
    if o.seconds.is_none() && o.execs.is_none() {
        o.seconds = Some(DEFAULT_SECONDS);
    }
    Ok(o)
}

fn number<T: std::str::FromStr>(s: &str, option: &str) -> Result<T> {
    s.parse().ok().with_context(|| format!("{option} {s}: not a number"))
}

fn parse_seed(s: &str) -> Result<u64> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    };
    parsed.with_context(|| format!("--seed {s}: not a u64 (decimal or 0x hex)"))
}

/// A seed that differs from run to run (the clock and the process id, mixed).
fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    fuzz::rng::SplitMix64::new(nanos ^ u64::from(std::process::id()) << 32).next_u64()
}

fn names() -> Vec<&'static str> {
    targets::ALL.iter().map(|t| t.name).collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("list") => {
            for t in &targets::ALL {
                println!("{}", t.name);
            }
            Ok(true)
        }
        Some("seeds") => fuzz::seeds::write_all().map(|n| {
            println!(
                "fuzz: wrote {n} seed files under {}",
                fuzz::campaign::corpus_root().display()
            );
            true
        }),
        Some("--help" | "-h" | "help") => {
            print!("{USAGE}");
            Ok(true)
        }
        _ => parse_args(&args).and_then(|o| {
            if o.worker {
                worker(&o)
            } else if !o.files.is_empty() {
                run_files(&o)
            } else {
                drive(&o)
            }
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fuzz: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the given files once through each chosen target.
fn run_files(o: &Options) -> Result<bool> {
    ensure_counting()?;
    let mut ok = true;
    for t in &o.targets {
        for f in &o.files {
            let data = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            match exec::run(t.run_one, &data, CAP) {
                Ok(p) => println!(
                    "fuzz {}: {}: passes (largest allocation {})",
                    t.name,
                    f.display(),
                    bytes(p.largest_allocation)
                ),
                Err(finding) => {
                    println!("fuzz {}: {}: {finding}", t.name, f.display());
                    ok = false;
                }
            }
        }
    }
    Ok(ok)
}

fn ensure_counting() -> Result<()> {
    if !allocation::is_counting() {
        bail!("the counting allocator is not installed, so the allocation cap cannot be checked");
    }
    Ok(())
}

/// The worker: runs one target's inputs and reports on stdout, one line each:
/// `checkpoint I` (inputs before I passed), `exec I` (before input I, when tracing),
/// `finding I` (input I failed or hung; the finding is on stderr) and finally
/// `done EXECS MILLIS LARGEST`.
fn worker(o: &Options) -> Result<bool> {
    ensure_counting()?;
    let [target] = o.targets[..] else { bail!("a worker runs exactly one target") };
    let campaign = Campaign::committed(target, o.seed, o.max_len)?;
    let start = Instant::now();
    let deadline = o.seconds.map(|s| start + Duration::from_secs_f64(s));
    let end = o.execs.unwrap_or(u64::MAX);
    let report = |line: std::fmt::Arguments<'_>| -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()
    };
    let running = watch_for_hangs(target.name);
    let mut input = Vec::with_capacity(o.max_len);
    let mut largest = 0;
    let first = o.trace_from.unwrap_or(0);
    let mut i = first;
    while i < end {
        if i.is_multiple_of(64) && deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if i.is_multiple_of(CHECKPOINT) {
            report(format_args!("checkpoint {i}"))?;
        }
        campaign.input(i, &mut input);
        if o.trace_from.is_some() {
            report(format_args!("exec {i}"))?;
        }
        running.store(i, Ordering::Relaxed);
        match exec::run(target.run_one, &input, CAP) {
            Ok(pass) => largest = largest.max(pass.largest_allocation),
            Err(finding) => {
                eprintln!("fuzz {}: input {i}: {finding}", target.name);
                report(format_args!("finding {i}"))?;
                return Ok(false);
            }
        }
        i += 1;
    }
    running.store(IDLE, Ordering::Relaxed);
    report(format_args!("done {} {} {largest}", i - first, start.elapsed().as_millis()))?;
    Ok(true)
}

/// No input is running.
const IDLE: u64 = u64::MAX;

/// Starts a thread that ends the worker with a finding when one input runs for more
/// than [`HANG_SECONDS`]; the worker stores the index of the running input in the
/// returned cell.
fn watch_for_hangs(target: &'static str) -> &'static AtomicU64 {
    static RUNNING: AtomicU64 = AtomicU64::new(IDLE);
    std::thread::spawn(move || {
        let mut seen = IDLE;
        loop {
            std::thread::sleep(Duration::from_secs(HANG_SECONDS));
            let now = RUNNING.load(Ordering::Relaxed);
            // The same input at two looks a period apart has run for a whole period.
            if now != IDLE && now == seen {
                eprintln!("fuzz {target}: input {now}: hang: still running after {HANG_SECONDS} s");
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "finding {now}").and_then(|()| out.flush());
                std::process::exit(1);
            }
            seen = now;
        }
    });
    &RUNNING
}

/// What a worker reported.
#[derive(Debug, Default)]
struct Report {
    checkpoint: u64,
    last_exec: Option<u64>,
    finding: Option<u64>,
    done: Option<(u64, u64, usize)>,
}

fn spawn_worker(o: &Options, target: &Target, extra: &[String]) -> Result<(Report, bool)> {
    let exe = std::env::current_exe().context("locating the fuzz binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["--worker", "--target", target.name, "--seed", &o.seed.to_string()]);
    cmd.args(["--max-len", &o.max_len.to_string()]);
    cmd.args(extra).stdout(Stdio::piped());
    let mut child = cmd.spawn().context("starting a fuzz worker")?;
    let mut report = Report::default();
    let stdout = child.stdout.take().context("the worker's stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let words: Vec<&str> = line.split(' ').collect();
        let n = |k: usize| words.get(k).and_then(|w| w.parse::<u64>().ok());
        match words[0] {
            "checkpoint" => report.checkpoint = n(1).unwrap_or(report.checkpoint),
            "exec" => report.last_exec = n(1),
            "finding" => report.finding = n(1),
            "done" => {
                if let (Some(e), Some(ms), Some(l)) = (n(1), n(2), n(3)) {
                    report.done = Some((e, ms, l as usize));
                }
            }
            _ => println!("{line}"),
        }
    }
    let status = child.wait().context("waiting for a fuzz worker")?;
    // Exit status 1 is a finding the worker caught and 2 an error it reported (a
    // missing corpus, say); anything else but success (a signal, 101 for a panic outside
    // an input) means it died.
    if status.code() == Some(2) {
        bail!("fuzz {}: the worker failed ({status})", target.name);
    }
    let died = !status.success() && status.code() != Some(1);
    if died {
        eprintln!("fuzz {}: the worker died ({status})", target.name);
    }
    Ok((report, died))
}

/// Runs every chosen target in a worker and reports; false if any had a finding.
fn drive(o: &Options) -> Result<bool> {
    let mut ok = true;
    for target in &o.targets {
        let limit = match (o.seconds, o.execs) {
            (Some(s), Some(e)) => format!("{s} s or {e} execs"),
            (Some(s), None) => format!("{s} s"),
            (None, Some(e)) => format!("{e} execs"),
            (None, None) => "no limit".to_owned(),
        };
        println!("fuzz {}: seed {} ({limit}): {}", target.name, o.seed, target.about);
        let mut extra = Vec::new();
        if let Some(s) = o.seconds {
            extra.extend(["--seconds".to_owned(), s.to_string()]);
        }
        if let Some(e) = o.execs {
            extra.extend(["--execs".to_owned(), e.to_string()]);
        }
        let (report, died) = spawn_worker(o, target, &extra)?;
        let culprit = if let Some(i) = report.finding {
            Some(i)
        } else if died {
            println!(
                "fuzz {}: replaying from input {} with a trace to find the input",
                target.name, report.checkpoint
            );
            let trace = [
                "--trace-from".to_owned(),
                report.checkpoint.to_string(),
                "--execs".to_owned(),
                (report.checkpoint + 2 * CHECKPOINT).to_string(),
            ];
            let (replay, died_again) = spawn_worker(o, target, &trace)?;
            match (replay.finding, died_again, replay.last_exec) {
                (Some(i), _, _) => Some(i),
                (None, true, Some(i)) => Some(i),
                _ => {
                    println!(
                        "fuzz {}: the replay did not die again; rerun with --seed {}",
                        target.name, o.seed
                    );
                    ok = false;
                    continue;
                }
            }
        } else {
            None
        };
        if let Some(i) = culprit {
            let path = save_input(o, target, i)?;
            println!(
                "fuzz {}: FAILED on input {i} of seed {}; the input is {}\n\
                 fuzz {}: reproduce with `cargo run --profile fuzz -p fuzz -- --target {} {}`",
                target.name,
                o.seed,
                path.display(),
                target.name,
                target.name,
                path.display()
            );
            ok = false;
            continue;
        }
        let Some((execs, ms, largest)) = report.done else {
            bail!("fuzz {}: the worker ended without a report", target.name);
        };
        let secs = ms as f64 / 1000.0;
        println!(
            "fuzz {}: {execs} execs in {secs:.1} s ({:.0} exec/s), largest allocation {} (cap {}), no findings",
            target.name,
            execs as f64 / secs.max(1e-3),
            bytes(largest),
            bytes(CAP)
        );
    }
    Ok(ok)
}

/// Rebuilds input `i` and writes it to `target/fuzz-crashes/<target>-<hash>.bin`.
fn save_input(o: &Options, target: &Target, i: u64) -> Result<PathBuf> {
    let campaign = Campaign::committed(target, o.seed, o.max_len)?;
    let mut input = Vec::new();
    campaign.input(i, &mut input);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-crashes");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}-{:016x}.bin", target.name, fnv1a(&input)));
    std::fs::write(&path, &input).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.canonicalize().unwrap_or(path))
}

/// FNV-1a, 64-bit: a stable name for a crash input.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}
