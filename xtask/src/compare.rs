//! `cargo xtask bench-compare`: `damacy bench` (host engine) against the tensorstore peer
//! (`bench/peers/tensorstore_bench.py`) on the same dataset and crop sequence, one thread
//! count at a time; prints one table and writes it as JSON and as a PNG plot.
//!
//! Steps: build the release `damacy` CLI, generate the scenario's data (cached by
//! `damacy gen`), run `damacy bench --backend host --threads N` for each N, make sure the
//! pinned tensorstore is installed in `<target dir>/peer-venv`, run the peer over the same
//! thread counts, then report. The target dir is `$CARGO_TARGET_DIR` when set (so that
//! engineers sharing a checkout keep separate ones), else `<repo>/target`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const USAGE: &str =
    "usage: cargo xtask bench-compare --scenario NAME|FILE.json [--threads 1,2,4,...] [--out DIR]";

/// Parsed command line.
#[derive(Debug)]
struct Args {
    scenario: String,
    threads: Vec<usize>,
    out: Option<PathBuf>,
}

fn parse_threads(s: &str) -> Result<Vec<usize>> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n: usize =
            part.parse().with_context(|| format!("--threads: `{part}` is not a thread count"))?;
        if n == 0 {
            bail!("--threads: thread counts must be at least 1");
        }
        if !v.contains(&n) {
            v.push(n);
        }
    }
    if v.is_empty() {
        bail!("--threads: give at least one thread count, e.g. 1,2,4");
    }
    Ok(v)
}

/// Powers of two up to the machine's parallelism, and the parallelism itself.
fn default_threads() -> Vec<usize> {
    let max = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |n| n.checked_mul(2))
        .take_while(|&n| n <= max)
        .collect();
    if v.last() != Some(&max) {
        v.push(max);
    }
    v
}

fn parse_args(args: &[String]) -> Result<Args> {
    let mut scenario = None;
    let mut threads = None;
    let mut out = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next().cloned().with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--scenario" => scenario = Some(value("--scenario")?),
            "--threads" => threads = Some(parse_threads(&value("--threads")?)?),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let scenario = scenario.with_context(|| format!("--scenario is required\n{USAGE}"))?;
    Ok(Args { scenario, threads: threads.unwrap_or_else(default_threads), out })
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => super::root().join(d),
        _ => super::root().join("target"),
    }
}

/// The scenario file both engines read: a path as given (like `damacy`, when it ends in
/// `.json` or contains a separator), else `bench/scenarios/<name>.json`.
fn scenario_file(arg: &str) -> Result<PathBuf> {
    let path =
        if arg.ends_with(".json") || arg.contains('/') || arg.contains(std::path::MAIN_SEPARATOR) {
            std::path::absolute(arg).unwrap_or_else(|_| PathBuf::from(arg))
        } else {
            super::root().join("bench/scenarios").join(format!("{arg}.json"))
        };
    if !path.is_file() {
        let known: Vec<String> = std::fs::read_dir(super::root().join("bench/scenarios"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        bail!("scenario file {} not found (built-ins: {})", path.display(), known.join(", "));
    }
    Ok(path)
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn num(v: &Value, key: &str) -> Result<f64> {
    v.get(key).and_then(Value::as_f64).with_context(|| format!("report lacks numeric `{key}`: {v}"))
}

fn run_step(step: &str, mut cmd: Command) -> Result<()> {
    // Child stdout goes to our stderr: stdout carries only the table and the paths.
    cmd.stdout(std::io::stderr());
    eprintln!("bench-compare: {step}: {cmd:?}");
    let status = cmd.status().with_context(|| format!("{step}: starting {cmd:?}"))?;
    if !status.success() {
        bail!("{step}: {cmd:?} failed with {status}");
    }
    Ok(())
}

/// Creates or reuses `<target>/peer-venv` with bench/peers/requirements.txt installed;
/// returns its python. A copy of the installed requirements inside the venv tells whether
/// the pins changed since.
fn ensure_venv(target: &Path) -> Result<PathBuf> {
    let req = super::root().join("bench/peers/requirements.txt");
    let wanted =
        std::fs::read_to_string(&req).with_context(|| format!("reading {}", req.display()))?;
    let venv = target.join("peer-venv");
    let python =
        if cfg!(windows) { venv.join("Scripts/python.exe") } else { venv.join("bin/python") };
    let stamp = venv.join("damacy-requirements.txt");
    if python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        eprintln!("bench-compare: reusing {}", venv.display());
        return Ok(python);
    }
    if !python.is_file() {
        let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut c = Command::new(&py);
        c.args(["-m", "venv"]).arg(&venv);
        run_step("create the tensorstore venv (needs python3 with venv)", c)?;
    }
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--disable-pip-version-check", "-r"]).arg(&req);
    run_step("install the pinned tensorstore (pip)", pip)?;
    std::fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(python)
}

/// One row of the comparison table.
#[derive(Debug, Clone)]
struct Row {
    engine: String,
    threads: usize,
    gvox_per_s: f64,
    source_gb_per_s: f64,
    read_amplification: Option<f64>,
    decode_amplification: Option<f64>,
    /// This row's Gvox/s over tensorstore's at the same thread count.
    vs_tensorstore: Option<f64>,
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.prec$}"))
}

fn table(scenario: &str, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<14} {:<13} {:>7} {:>9} {:>11} {:>8} {:>10} {:>10}",
        "scenario",
        "engine",
        "threads",
        "Gvox/s",
        "src GB/s",
        "read amp",
        "decode amp",
        "vs best ts"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<14} {:<13} {:>7} {:>9.4} {:>11.4} {:>8} {:>10} {:>10}",
            scenario,
            r.engine,
            r.threads,
            r.gvox_per_s,
            r.source_gb_per_s,
            opt(r.read_amplification, 2),
            opt(r.decode_amplification, 2),
            r.vs_tensorstore.map_or_else(|| "-".into(), |x| format!("{x:.2}x")),
        );
    }
    s
}

/// The peer configurations run (see bench/peers/tensorstore_bench.py): a plain loop's
/// collate copy, and tensorstore's best without and with its chunk cache.
const PEER_CONFIGS: &str = "naive,best,best-cache";

/// Rows per thread count: the host engine, then each peer configuration. Every ratio is
/// against the best peer figure of the same thread count (never a handicapped one).
fn rows_from(host: &[Value], peer: &[Value]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for h in host {
        let threads = num(h, "threads")? as usize;
        let peers: Vec<&Value> = peer
            .iter()
            .filter(|p| p.get("threads").and_then(Value::as_u64) == Some(threads as u64))
            .collect();
        if peers.is_empty() {
            bail!("the tensorstore peer has no result for {threads} threads");
        }
        let mut best = 0.0f64;
        for p in &peers {
            best = best.max(num(p, "gvox_per_s")?);
        }
        let ratio = |x: f64| (best > 0.0).then(|| x / best);
        let host_gvox = num(h, "gvox_per_s")?;
        rows.push(Row {
            engine: h.get("engine").and_then(Value::as_str).unwrap_or("host").to_owned(),
            threads,
            gvox_per_s: host_gvox,
            source_gb_per_s: num(h, "source_gb_per_s")?,
            read_amplification: h.get("read_amplification").and_then(Value::as_f64),
            decode_amplification: h.get("decode_amplification").and_then(Value::as_f64),
            vs_tensorstore: ratio(host_gvox),
        });
        for p in peers {
            let gvox = num(p, "gvox_per_s")?;
            let engine = match p.get("config").and_then(Value::as_str) {
                Some(c) => format!("ts/{c}"),
                None => "tensorstore".to_owned(),
            };
            rows.push(Row {
                engine,
                threads,
                gvox_per_s: gvox,
                source_gb_per_s: num(p, "source_gb_per_s")?,
                read_amplification: None,
                decode_amplification: None,
                vs_tensorstore: ratio(gvox),
            });
        }
    }
    Ok(rows)
}

/// Where the host engine's time went, from its stage loads, one line per thread count.
fn stage_lines(host: &[Value]) -> String {
    let mut s = String::new();
    for h in host {
        let _ = write!(s, "host threads={}: stage load", h["threads"]);
        for st in h.get("stages").and_then(Value::as_array).into_iter().flatten() {
            let _ = write!(
                s,
                " {}={:.2}",
                st["stage"].as_str().unwrap_or("?"),
                st["load"].as_f64().unwrap_or(f64::NAN)
            );
        }
        if let Some(c) = h.get("ceiling_gvox_per_s").and_then(Value::as_f64) {
            let _ = write!(s, "; CPU decode ceiling {c:.4} Gvox/s");
        }
        s.push('\n');
    }
    s
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    });
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned());
    json!({
        "cpu": cpu,
        "logical_cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "os": std::env::consts::OS,
        "date": date,
    })
}

/// Runs the comparison; see the module documentation.
///
/// # Errors
/// Any failing step, named in the error's context.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let args = parse_args(args)?;
    let target = target_dir();
    let out = args.out.clone().unwrap_or_else(|| target.join("bench-compare"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let sc_file = scenario_file(&args.scenario)?;
    let sc = read_json(&sc_file)?;
    let name = sc
        .get("name")
        .and_then(Value::as_str)
        .with_context(|| format!("{} has no `name`", sc_file.display()))?
        .to_owned();
    let data = target.join("bench-data").join(&name);

    let mut build = super::cargo();
    build.args(["build", "--release", "-p", "cli"]);
    run_step("build the damacy CLI", build)?;
    let damacy = target.join("release").join(if cfg!(windows) { "damacy.exe" } else { "damacy" });
    if !damacy.is_file() {
        bail!("build the damacy CLI: {} does not exist after the build", damacy.display());
    }

    let mut gen_cmd = Command::new(&damacy);
    gen_cmd.arg("gen").arg("--scenario").arg(&sc_file).arg("--out").arg(&data);
    run_step("generate the dataset (cached)", gen_cmd)?;

    let threads_arg = args.threads.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let mut commands = Vec::new();
    let mut host = Vec::new();
    for &n in &args.threads {
        let report = out.join(format!("damacy-{name}-t{n}.json"));
        let mut c = Command::new(&damacy);
        c.arg("bench")
            .arg("--scenario")
            .arg(&sc_file)
            .arg("--data")
            .arg(&data)
            .args(["--backend", "host", "--threads", &n.to_string(), "--json"])
            .arg(&report);
        commands.push(format!("{c:?}"));
        run_step(&format!("damacy bench, {n} threads"), c)?;
        host.push(read_json(&report).context("reading damacy's bench report")?);
    }

    let python = ensure_venv(&target)?;
    let peer_json = out.join(format!("tensorstore-{name}.json"));
    let mut p = Command::new(&python);
    p.arg(super::root().join("bench/peers/tensorstore_bench.py"))
        .arg("--scenario-json")
        .arg(&sc_file)
        .arg("--data")
        .arg(&data)
        .args(["--threads", &threads_arg, "--configs", PEER_CONFIGS, "--json"])
        .arg(&peer_json);
    commands.push(format!("{p:?}"));
    run_step("tensorstore peer", p)?;
    let peer = match read_json(&peer_json)? {
        Value::Array(v) => v,
        other => bail!("tensorstore peer: {} is not a JSON list: {other}", peer_json.display()),
    };

    let rows = rows_from(&host, &peer)?;
    let text = table(&name, &rows);
    print!("{text}");
    print!("{}", stage_lines(&host));

    let json_path = out.join(format!("compare-{name}.json"));
    let doc = json!({
        "scenario": name,
        "scenario_file": sc_file,
        "data_dir": data,
        "machine": machine(),
        "command": format!("cargo xtask bench-compare --scenario {} --threads {threads_arg}", args.scenario),
        "steps": commands,
        "rows": rows.iter().map(|r| json!({
            "scenario": name,
            "engine": r.engine,
            "threads": r.threads,
            "gvox_per_s": r.gvox_per_s,
            "source_gb_per_s": r.source_gb_per_s,
            "read_amplification": r.read_amplification,
            "decode_amplification": r.decode_amplification,
            "vs_tensorstore": r.vs_tensorstore,
        })).collect::<Vec<_>>(),
        "host_reports": host,
        "tensorstore_reports": peer,
    });
    let pretty = serde_json::to_string_pretty(&doc).context("serializing the comparison")?;
    std::fs::write(&json_path, pretty + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;

    let png = out.join(format!("compare-{name}.png"));
    plot::draw(&png, &name, &rows).with_context(|| format!("drawing {}", png.display()))?;
    println!("json: {}", json_path.display());
    println!("png:  {}", png.display());
    Ok(())
}

mod plot {
    //! The throughput-vs-threads PNG.

    use std::path::Path;

    use anyhow::{Result, anyhow};
    use plotters::prelude::*;
    use plotters::style::FontStyle;

    use super::Row;

    /// Common places of a sans-serif TTF; `DAMACY_PLOT_FONT` overrides.
    const FONT_PATHS: &[&str] = &[
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
        "/System/Library/Fonts/Supplemental/Arial.ttf",
        "/Library/Fonts/Arial.ttf",
        "C:\\Windows\\Fonts\\arial.ttf",
    ];

    /// Registers a system font with plotters' pure-Rust text renderer; false when none
    /// is found (the plot is then drawn without text).
    fn register_font() -> bool {
        let env = std::env::var("DAMACY_PLOT_FONT").ok();
        let candidates = env.iter().map(String::as_str).chain(FONT_PATHS.iter().copied());
        for p in candidates {
            if let Ok(bytes) = std::fs::read(p) {
                // plotters keeps fonts for the process lifetime; this runs once per process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    }

    fn color(engine: &str) -> RGBColor {
        match engine {
            "tensorstore" | "ts/best" => RGBColor(0x4c, 0x72, 0xb0),
            "ts/naive" => RGBColor(0x93, 0xa8, 0xcc),
            "ts/best-cache" => RGBColor(0x2a, 0x3f, 0x66),
            "host" => RGBColor(0xdd, 0x84, 0x52),
            _ => RGBColor(0x55, 0xa8, 0x68),
        }
    }

    pub(super) fn draw(path: &Path, scenario: &str, rows: &[Row]) -> Result<()> {
        let text = register_font();
        if !text {
            eprintln!(
                "bench-compare: no TTF font found (set DAMACY_PLOT_FONT=/path/font.ttf); the PNG has no labels"
            );
        }
        let mut engines: Vec<&str> = Vec::new();
        for r in rows {
            if !engines.contains(&r.engine.as_str()) {
                engines.push(&r.engine);
            }
        }
        let max_t = rows.iter().map(|r| r.threads).max().unwrap_or(1) as f64;
        let max_y = rows.iter().map(|r| r.gvox_per_s).fold(0.0f64, f64::max).max(1e-9) * 1.15;

        let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| anyhow!("plotters: {e}");
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut b = ChartBuilder::on(&root);
        b.margin(20);
        if text {
            b.caption(
                format!("{scenario}: throughput vs CPU threads (higher is better)"),
                ("sans-serif", 24),
            )
            .x_label_area_size(45)
            .y_label_area_size(70);
        }
        let x_hi = if max_t > 1.0 { max_t } else { 2.0 };
        let mut chart =
            b.build_cartesian_2d(0.8f64..x_hi * 1.05, 0f64..max_y).map_err(|e| err(&e))?;
        if text {
            chart
                .configure_mesh()
                .x_desc("threads")
                .y_desc("Gvox/s")
                .x_labels(max_t as usize + 1)
                .x_label_formatter(&|x| {
                    if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { String::new() }
                })
                .y_label_formatter(&|y| format!("{y:.3}"))
                .label_style(("sans-serif", 16))
                .axis_desc_style(("sans-serif", 18))
                .draw()
                .map_err(|e| err(&e))?;
        } else {
            chart
                .configure_mesh()
                .x_labels(0)
                .y_labels(0)
                .disable_x_mesh()
                .disable_y_mesh()
                .draw()
                .map_err(|e| err(&e))?;
        }
        for engine in engines {
            let c = color(engine);
            let mut pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.engine == engine)
                .map(|r| (r.threads as f64, r.gvox_per_s))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let series = chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))
                .map_err(|e| err(&e))?;
            if text {
                series.label(engine).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3))
                });
            }
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 5, c.filled())))
                .map_err(|e| err(&e))?;
        }
        if text {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 18))
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(threads: u64, gvox: f64) -> Value {
        json!({"engine": "host", "threads": threads, "gvox_per_s": gvox, "source_gb_per_s": gvox * 2.0,
               "read_amplification": 1.5, "decode_amplification": 2.0,
               "stages": [{"stage": "decode", "seconds": 1.0, "load": 0.75}], "ceiling_gvox_per_s": 9.0})
    }
    fn peer(threads: u64, gvox: f64) -> Value {
        json!({"engine": "tensorstore", "threads": threads, "gvox_per_s": gvox, "source_gb_per_s": gvox * 2.0})
    }
    fn peer_cfg(threads: u64, config: &str, gvox: f64) -> Value {
        json!({"engine": "tensorstore", "config": config, "threads": threads, "gvox_per_s": gvox,
               "source_gb_per_s": gvox * 2.0})
    }

    #[test]
    fn ratios_are_against_the_best_peer_configuration_of_the_thread_count() {
        let peers = [
            peer_cfg(2, "naive", 0.1),
            peer_cfg(2, "best", 0.25),
            peer_cfg(2, "best-cache", 0.2),
            peer_cfg(4, "naive", 1.0),
        ];
        let rows = rows_from(&[host(2, 0.5), host(4, 0.5)], &peers).unwrap();
        let got: Vec<(&str, usize, f64)> = rows
            .iter()
            .map(|r| (r.engine.as_str(), r.threads, r.vs_tensorstore.unwrap()))
            .collect();
        let want = [
            ("host", 2, 2.0),
            ("ts/naive", 2, 0.4),
            ("ts/best", 2, 1.0),
            ("ts/best-cache", 2, 0.8),
            ("host", 4, 0.5),
            ("ts/naive", 4, 1.0),
        ];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0, g.1), (w.0, w.1));
            assert!((g.2 - w.2).abs() < 1e-12, "{g:?} vs {w:?}");
        }
    }

    #[test]
    fn threads_parse_dedup_and_reject() {
        assert_eq!(parse_threads("1, 2,4,2").unwrap(), [1, 2, 4]);
        assert!(parse_threads("0").is_err());
        assert!(parse_threads("x").is_err());
        assert!(parse_threads(",").is_err());
        let d = default_threads();
        assert_eq!(d[0], 1);
        assert!(d.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn args_require_scenario_and_reject_unknown() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let a = parse_args(&s(&["--scenario", "smoke", "--threads", "1,2", "--out", "o"])).unwrap();
        assert_eq!((a.scenario.as_str(), a.threads.as_slice()), ("smoke", &[1usize, 2][..]));
        assert_eq!(a.out, Some(PathBuf::from("o")));
        assert!(parse_args(&s(&["--threads", "1"])).is_err());
        assert!(parse_args(&s(&["--scenario"])).is_err());
        assert!(parse_args(&s(&["--scenario", "smoke", "--bogus"])).is_err());
    }

    #[test]
    fn builtin_scenario_files_resolve() {
        assert!(scenario_file("smoke").unwrap().ends_with("bench/scenarios/smoke.json"));
        assert!(scenario_file("no-such-scenario").is_err());
    }

    #[test]
    fn rows_pair_engines_by_thread_count_and_compute_ratios() {
        let rows =
            rows_from(&[host(1, 0.3), host(2, 0.5)], &[peer(2, 0.25), peer(1, 0.2)]).unwrap();
        let got: Vec<(&str, usize, f64, Option<f64>)> = rows
            .iter()
            .map(|r| (r.engine.as_str(), r.threads, r.gvox_per_s, r.vs_tensorstore))
            .collect();
        assert_eq!(got.len(), 4);
        assert_eq!((got[0].0, got[0].1), ("host", 1));
        assert!((got[0].3.unwrap() - 1.5).abs() < 1e-12);
        assert_eq!((got[1].0, got[1].1, got[1].3), ("tensorstore", 1, Some(1.0)));
        assert!((got[2].3.unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(rows[0].read_amplification, Some(1.5));
        assert_eq!(rows[1].read_amplification, None);
        // A thread count the peer did not run is an error, not a silent gap.
        assert!(rows_from(&[host(4, 1.0)], &[peer(1, 1.0)]).is_err());
    }

    #[test]
    fn table_and_stage_lines_show_the_numbers() {
        let rows = rows_from(&[host(2, 0.5)], &[peer(2, 0.25)]).unwrap();
        let t = table("smoke", &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("smoke")
                && lines[1].contains("host")
                && lines[1].ends_with("2.00x")
        );
        assert!(
            lines[2].contains("tensorstore")
                && lines[2].contains(" - ")
                && lines[2].ends_with("1.00x")
        );
        assert!(lines[0].ends_with("vs best ts"));
        let s = stage_lines(&[host(2, 0.5)]);
        assert_eq!(s, "host threads=2: stage load decode=0.75; CPU decode ceiling 9.0000 Gvox/s\n");
    }

    #[test]
    fn plot_writes_a_png() {
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.png");
        let rows =
            rows_from(&[host(1, 0.3), host(2, 0.5)], &[peer(1, 0.2), peer(2, 0.25)]).unwrap();
        plot::draw(&path, "smoke", &rows).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 1000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
