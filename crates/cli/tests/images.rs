//! `damacy read` and `inspect` on OME-NGFF image groups (ome-zarr-py's, in
//! `tests/data/ngff`): a level's crop equals the writer's values, the listing equals the
//! metadata written, failures are one line naming the file. (0.4 images, whose levels
//! are zarr v2, are in `images_v04.rs`.)

use std::path::PathBuf;

use serde_json::Value;

use super::{damacy, data, stderr_lines};

pub fn ngff() -> PathBuf {
    data().join("ngff")
}

pub fn manifest_image(version: &str, name: &str) -> Value {
    let text = std::fs::read_to_string(ngff().join("manifest.json")).unwrap();
    let m: Value = serde_json::from_str(&text).unwrap();
    m["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["version"] == version && i["name"] == name)
        .cloned()
        .unwrap()
}

/// `damacy read GROUP --level N` writes each level's crop as the writer stored it.
pub fn read_every_level(version: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let image = manifest_image(version, name);
    let group = ngff().join(image["path"].as_str().unwrap());
    for (level, l) in image["levels"].as_array().unwrap().iter().enumerate() {
        let crop = &l["crops"][1];
        let (lo, hi) = (crop["lo"].as_array().unwrap(), crop["hi"].as_array().unwrap());
        let aabb: Vec<String> = lo.iter().zip(hi).map(|(l, h)| format!("{l}:{h}")).collect();
        let out = dir.path().join(format!("{level}.npy"));
        let level_arg = level.to_string();
        let o = damacy(
            &[
                "read",
                group.to_str().unwrap(),
                "--level",
                &level_arg,
                "--aabb",
                &aabb.join(","),
                "--backend",
                "host",
                "--out",
                out.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert!(o.status.success(), "level {level}: {:?}", stderr_lines(&o));
        let got = bench::npy::Npy::read(&out).unwrap();
        let want = bench::npy::Npy::read(&ngff().join(crop["npy"].as_str().unwrap())).unwrap();
        assert_eq!((got.shape, got.data_type), (want.shape, want.data_type), "level {level}");
        assert!(got.data == want.data, "{name} level {level}: values differ from the writer's");
    }
}

/// `damacy inspect GROUP --json` lists the levels, axes and labels written.
pub fn inspect_lists_the_metadata_written(version: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let image = manifest_image(version, name);
    let group = ngff().join(image["path"].as_str().unwrap());
    let o = damacy(&["inspect", group.to_str().unwrap(), "--json"], dir.path());
    assert!(o.status.success(), "{:?}", stderr_lines(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], version);
    assert_eq!(v["labels"], image["labels"]);
    let axes = image["axes"].as_array().unwrap();
    for (got, want) in v["axes"].as_array().unwrap().iter().zip(axes) {
        assert_eq!(got["name"], want["name"]);
        assert_eq!(got["type"], want["type"]);
        assert_eq!(got["unit"], want.get("unit").cloned().unwrap_or(Value::Null));
    }
    let levels = v["levels"].as_array().unwrap();
    assert_eq!(levels.len(), image["levels"].as_array().unwrap().len());
    for (got, want) in levels.iter().zip(image["levels"].as_array().unwrap()) {
        for key in ["path", "shape", "dtype", "chunks", "scale", "translation"] {
            assert_eq!(got[key], want[key], "{name} {key}");
        }
    }
}

#[test]
fn read_writes_each_level_of_a_0_5_image() {
    read_every_level("0.5", "image5d");
}

#[test]
fn inspect_lists_a_0_5_image() {
    inspect_lists_the_metadata_written("0.5", "image3d");
    inspect_lists_the_metadata_written("0.5", "image5d");
    let dir = tempfile::tempdir().unwrap();
    let group = ngff().join("v05/image5d.zarr");
    let o = damacy(&["inspect", group.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{:?}", stderr_lines(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("(OME-NGFF 0.5)"), "{text}");
    assert!(text.contains("t (time, second), c (channel), z (space, micrometer)"), "{text}");
    assert!(
        text.contains(
            "level 2     s2: shape [2, 2, 2, 4, 3] int16 chunks [1, 2, 4, 8, 8] scale [30.0, 1.0, 1.6, 1.0, 1.0] translation [-60.0, 0.0, 4.4, -1.125, 2.625]"
        ),
        "{text}"
    );
    assert!(text.contains("labels      cells"), "{text}");
}

/// `damacy read PATH --level LEVEL` of one voxel: its stderr lines (it must fail) and
/// that it wrote nothing.
fn failed_read(path: &std::path::Path, level: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.npy");
    let path = path.to_str().unwrap();
    let args = ["read", path, "--level", level, "--aabb", "0:1,0:1,0:1", "--out"];
    let o = damacy(&[&args[..], &[out.to_str().unwrap()]].concat(), dir.path());
    let lines = stderr_lines(&o);
    assert_eq!(o.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(!out.exists());
    lines
}

#[test]
fn image_failures_are_one_line_naming_the_file() {
    let group = ngff().join("v05/image3d.zarr");
    let lines = failed_read(&group, "7");
    assert!(
        lines[0].contains("zarr.json: level 7 does not exist: the image has 3 levels"),
        "{lines:?}"
    );
    let lines = failed_read(&group.join("s0"), "0");
    assert!(lines[0].contains("is an array, not an image group"), "{lines:?}");
}
