//! The `damacy` binary, run as a user would: exit codes, stderr, files written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod images;
// Needs zarr v2 arrays (issue 17's other half): passes once that work is merged.
mod images_v04;

fn damacy(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_damacy"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run damacy")
}

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr).lines().map(str::to_owned).collect()
}

#[test]
fn read_writes_the_crop_as_npy_equal_to_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = tests::manifest::Manifest::load().unwrap();
    for name in [
        "shard_end_u16_zstd",
        "blosc_zstd_bitshuffle_u16",
        "bytes_be_f64_zstd",
        "keys_v2_dot_i16",
        "v2_zstd_f_u16",
        "v2_blosc_zstd_be_f32",
    ] {
        let a = manifest.array(name).unwrap();
        let crop = &a.crops[1];
        let aabb: Vec<String> =
            crop.lo.iter().zip(&crop.hi).map(|(l, h)| format!("{l}:{h}")).collect();
        let out = dir.path().join(format!("{name}.npy"));
        let o = damacy(
            &[
                "read",
                data().join(&a.path).to_str().unwrap(),
                "--aabb",
                &aabb.join(","),
                "--dtype",
                "native",
                "--backend",
                "host",
                "--out",
                out.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert!(o.status.success(), "{name}: {:?}", stderr_lines(&o));
        let got = bench::npy::Npy::read(&out).unwrap();
        let want = bench::npy::Npy::read(&data().join(&crop.npy)).unwrap();
        assert_eq!(got.shape, want.shape, "{name}");
        assert_eq!(got.data_type, want.data_type, "{name}");
        assert_eq!(got.data, want.data, "{name}");
    }
}

#[test]
fn read_as_f32_casts() {
    let dir = tempfile::tempdir().unwrap();
    let arr = data().join("zarr/zstd_u16");
    let out = dir.path().join("x.npy");
    let o = damacy(
        &[
            "read",
            arr.to_str().unwrap(),
            "--aabb",
            "0:2,0:3,0:4",
            "--dtype",
            "f32",
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{:?}", stderr_lines(&o));
    let got = bench::npy::Npy::read(&out).unwrap();
    assert_eq!(got.shape, vec![2, 3, 4]);
    assert_eq!(got.data_type, zarr::DataType::Float32);
}

/// Each failure: exit code 1, exactly one line on stderr, naming the problem.
#[test]
fn failures_exit_nonzero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of a fixture with one chunk overwritten: a decode error.
    let arr = dir.path().join("broken");
    std::fs::create_dir_all(arr.join("c/0/0")).unwrap();
    std::fs::copy(data().join("zarr/zstd_u16/zarr.json"), arr.join("zarr.json")).unwrap();
    std::fs::write(arr.join("c/0/0/0"), b"this is not a zstd frame").unwrap();
    let out = dir.path().join("o.npy");
    let o_str = out.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "read".into(),
                arr.to_string_lossy().into(),
                "--aabb".into(),
                "0:4,0:4,0:4".into(),
                "--out".into(),
                o_str.into(),
            ],
            "decode",
        ),
        (
            vec![
                "read".into(),
                "/nonexistent/a.zarr".into(),
                "--aabb".into(),
                "0:4".into(),
                "--out".into(),
                o_str.into(),
            ],
            "not found",
        ),
        (
            vec![
                "read".into(),
                arr.to_string_lossy().into(),
                "--aabb".into(),
                "0:4,0:4,0:99".into(),
                "--out".into(),
                o_str.into(),
            ],
            "outside",
        ),
        (
            vec![
                "read".into(),
                arr.to_string_lossy().into(),
                "--aabb".into(),
                "4:2".into(),
                "--out".into(),
                o_str.into(),
            ],
            "empty range",
        ),
        (
            vec![
                "read".into(),
                data().join("zarr/v2_filter_delta").to_string_lossy().into(),
                "--aabb".into(),
                "0:1".into(),
                "--out".into(),
                o_str.into(),
            ],
            "filter `delta`",
        ),
        (
            vec!["inspect".into(), data().join("zarr/v2_filter_delta").to_string_lossy().into()],
            "filter `delta`",
        ),
        (vec!["bench".into(), "--scenario".into(), "no-such-scenario".into()], "no-such-scenario"),
        (vec!["bench".into(), "--devices".into(), "0,1,0".into()], "device 0 twice"),
        (
            vec!["bench".into(), "--devices".into(), "0".into(), "--backend".into(), "host".into()],
            "--pipelines",
        ),
    ];
    for (args, word) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = damacy(&args, dir.path());
        let lines = stderr_lines(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {lines:?}");
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(lines[0].starts_with("damacy: error: "), "{lines:?}");
        assert!(lines[0].contains(word), "{args:?}: `{word}` not in {lines:?}");
        // No cause is repeated in the line.
        let parts: Vec<&str> = lines[0].split(": ").collect();
        let mut seen = std::collections::HashSet::new();
        assert!(
            parts.iter().all(|p| p.len() < 12 || seen.insert(*p)),
            "repeated cause in {lines:?}"
        );
    }
    assert!(!out.exists(), "no output file on failure");
}

#[test]
fn inspect_reports_shape_dtype_and_shards() {
    let dir = tempfile::tempdir().unwrap();
    let o = damacy(
        &["inspect", data().join("zarr/shard_missing_u16").to_str().unwrap(), "--json"],
        dir.path(),
    );
    assert!(o.status.success(), "{:?}", stderr_lines(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["shape"], serde_json::json!([40, 40]));
    assert_eq!(v["dtype"], "uint16");
    assert_eq!(v["sharded"], true);
    let total = v["shards_total"].as_u64().unwrap();
    let present = v["shards_present"].as_u64().unwrap();
    assert!(present < total, "the fixture has missing shards: {present} of {total}");
}

/// `inspect` on a zarr v2 array prints what it prints for a v3 array (the same fields),
/// and says which format it read.
#[test]
fn inspect_describes_a_v2_array_as_a_v3_one() {
    let dir = tempfile::tempdir().unwrap();
    let inspect = |name: &str, json: bool| {
        let path = data().join("zarr").join(name);
        let mut args = vec!["inspect", path.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let o = damacy(&args, dir.path());
        assert!(o.status.success(), "{name}: {:?}", stderr_lines(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let v2: serde_json::Value = serde_json::from_str(&inspect("v2_fill_null_i16", true)).unwrap();
    let v3: serde_json::Value =
        serde_json::from_str(&inspect("missing_chunks_f32_fill", true)).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&v2), keys(&v3));
    assert_eq!((v2["zarr_format"].as_u64(), v3["zarr_format"].as_u64()), (Some(2), Some(3)));
    assert_eq!(v2["shape"], serde_json::json!([10, 12]));
    assert_eq!(v2["dtype"], "int16");
    assert_eq!(v2["chunk_shape"], serde_json::json!([4, 5]));
    assert_eq!(v2["sharded"], false);
    // Only the first chunk row (3 of 9 chunks) was written.
    assert_eq!((v2["shards_present"].as_u64(), v2["shards_total"].as_u64()), (Some(3), Some(9)));
    assert_eq!(v2["codecs"], "bytes(little) -> zstd(level=1, checksum=false)");
    let f = inspect("v2_blosc_zstd_f_be_i16", false);
    assert!(f.contains("(zarr v2)"), "{f}");
    assert!(f.contains("transpose[2, 1, 0] -> bytes(big) -> blosc(Zstd"), "{f}");
}

#[test]
fn bench_smoke_runs_and_reports_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let o = damacy(
        &[
            "bench",
            "--scenario",
            "smoke",
            "--data",
            "d",
            "--threads",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{:?}", stderr_lines(&o));
    assert!(stdout.contains("Gvox/s"), "{stdout}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["scenario"], "smoke");
    assert!(r["gvox_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["decode_amplification"].as_f64().unwrap() >= 1.0);
    assert_eq!(r["samples"].as_u64().unwrap(), 4 * 4);
}

/// `--pipelines N`: after the run, N pipelines at once, each with its share of the threads,
/// reported beside the one-pipeline run (on screen and in the JSON).
#[test]
fn bench_pipelines_side_by_side_are_reported_against_one() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let args = ["bench", "--scenario", "smoke", "--data", "d", "--threads", "2", "--backend"];
    let rest = ["host", "--no-ceiling", "--pipelines", "2", "--json", json.to_str().unwrap()];
    let o = damacy(&[&args[..], &rest[..]].concat(), dir.path());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{:?}", stderr_lines(&o));
    assert!(stdout.contains("side by side  2 pipelines at once"), "{stdout}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let s = &r["side_by_side"];
    let lanes = s["pipelines"].as_array().unwrap();
    assert_eq!(lanes.len(), 2);
    for w in lanes {
        assert_eq!((w["backend"].as_str(), w["threads"].as_u64()), (Some("host"), Some(1)));
        assert_eq!(w["samples"].as_u64(), Some(4 * 4));
    }
    let speedup = s["gvox_per_s"].as_f64().unwrap() / r["gvox_per_s"].as_f64().unwrap();
    assert!((s["speedup"].as_f64().unwrap() - speedup).abs() < 1e-9, "{s}");
}

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["bench", "read", "inspect", "gen", "serve-s3"] {
        let o = damacy(&[sub, "--help"], dir.path());
        assert!(o.status.success(), "{sub}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage"), "{sub}");
    }
}

/// `read` and `inspect` take `s3://` and `http://` uris: the crop equals the reference,
/// the description equals the one of the directory.
#[test]
fn read_and_inspect_accept_object_store_uris() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = loopback::S3Server::serve(&data()).unwrap();
    let http = loopback::HttpServer::serve(&data()).unwrap();
    let mut s3_args: Vec<String> = Vec::new();
    for (k, v) in s3.client_options() {
        s3_args.extend(["--object-option".into(), format!("s3.{k}={v}")]);
    }
    let manifest = tests::manifest::Manifest::load().unwrap();
    let a = manifest.array("shard_end_u16_zstd").unwrap();
    let crop = &a.crops[1];
    let aabb: Vec<String> = crop.lo.iter().zip(&crop.hi).map(|(l, h)| format!("{l}:{h}")).collect();
    let aabb = aabb.join(",");
    let want = bench::npy::Npy::read(&data().join(&crop.npy)).unwrap();
    let uris = [
        (format!("s3://{}/{}", loopback::BUCKET, a.path), s3_args.clone()),
        (format!("{}/{}", http.endpoint(), a.path), Vec::new()),
    ];
    let local = damacy(&["inspect", data().join(&a.path).to_str().unwrap(), "--json"], dir.path());
    let mut local: serde_json::Value = serde_json::from_slice(&local.stdout).unwrap();
    for (uri, extra) in uris {
        let out = dir.path().join("o.npy");
        let mut args = vec!["read", &uri, "--aabb", &aabb, "--backend", "host"];
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(extra.iter().map(String::as_str));
        let o = damacy(&args, dir.path());
        assert!(o.status.success(), "{uri}: {:?}", stderr_lines(&o));
        let got = bench::npy::Npy::read(&out).unwrap();
        assert_eq!((got.shape, got.data), (want.shape.clone(), want.data.clone()), "{uri}");

        let mut args = vec!["inspect", &uri, "--json"];
        args.extend(extra.iter().map(String::as_str));
        let o = damacy(&args, dir.path());
        assert!(o.status.success(), "{uri}: {:?}", stderr_lines(&o));
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["path"], uri.as_str());
        v["path"] = serde_json::Value::Null;
        local["path"] = serde_json::Value::Null;
        assert_eq!(v, local, "{uri}");
    }
    // A missing array through s3: one line naming the uri.
    let uri = format!("s3://{}/zarr/no_such_array", loopback::BUCKET);
    let mut args = vec!["inspect", &uri];
    args.extend(s3_args.iter().map(String::as_str));
    let o = damacy(&args, dir.path());
    let lines = stderr_lines(&o);
    assert_eq!(o.status.code(), Some(1), "{lines:?}");
    assert!(
        lines.len() == 1 && lines[0].contains(&uri) && lines[0].contains("not found"),
        "{lines:?}"
    );
}

/// `serve-s3` serves a directory until its standard input closes; another `damacy`
/// reads through it with the options it printed.
#[test]
fn serve_s3_serves_until_stdin_closes() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_damacy"))
        .args(["serve-s3", "--data", data().to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn serve-s3");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut args: Vec<String> =
        vec!["inspect".into(), "s3://damacy/zarr/zstd_u16".into(), "--json".into()];
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with('#') {
            break;
        }
        let (k, v) = line.split_once('=').unwrap();
        args.extend(["--object-option".into(), format!("s3.{}={v}", k.to_ascii_lowercase())]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = damacy(&args, dir.path());
    assert!(o.status.success(), "{:?}", stderr_lines(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["shape"], serde_json::json!([20, 33, 17]));
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}
