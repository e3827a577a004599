//! Shared helpers: the zarr-python fixtures of `tests/data` and their `.npy` references.

use std::path::{Path, PathBuf};

use damacy::DataType;
use zarr::odometer::{advance, c_strides};

pub fn data_dir() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
    // A bundled test binary runs on another machine, from the repository root there.
    if built.is_dir() { built } else { PathBuf::from("tests/data") }
}

#[derive(Debug, Clone)]
pub struct Crop {
    pub lo: Vec<u64>,
    pub hi: Vec<u64>,
    pub npy: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub path: PathBuf,
    /// 3 (`zarr.json`) or 2 (`.zarray`).
    pub zarr_format: u64,
    pub dtype: DataType,
    pub shape: Vec<u64>,
    pub crops: Vec<Crop>,
}

fn u64s(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default()
}

pub fn fixtures() -> Vec<Fixture> {
    let dir = data_dir();
    let text =
        std::fs::read_to_string(dir.join("manifest.json")).expect("tests/data/manifest.json");
    let m: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    m["arrays"]
        .as_array()
        .expect("arrays")
        .iter()
        .map(|a| Fixture {
            name: a["name"].as_str().unwrap_or_default().to_owned(),
            path: dir.join(a["path"].as_str().unwrap_or_default()),
            zarr_format: a["zarr_format"].as_u64().expect("zarr_format"),
            dtype: DataType::parse(a["dtype"].as_str().unwrap_or_default()).expect("dtype"),
            shape: u64s(&a["shape"]),
            crops: a["crops"]
                .as_array()
                .expect("crops")
                .iter()
                .map(|c| Crop {
                    lo: u64s(&c["lo"]),
                    hi: u64s(&c["hi"]),
                    npy: dir.join(c["npy"].as_str().unwrap_or_default()),
                })
                .collect(),
        })
        .collect()
}

/// A `.npy` file's elements as native-endian bytes (`bench::npy` swaps big-endian
/// files).
pub fn npy_native(path: &Path) -> (String, Vec<u64>, Vec<u8>) {
    let npy = bench::npy::Npy::read(path).unwrap_or_else(|e| panic!("{e}"));
    (npy.data_type.name().to_owned(), npy.shape.clone(), npy.data)
}

/// Extracts the box `lo..hi` from a C-order array of `shape` with `size`-byte elements.
pub fn sub_box(data: &[u8], shape: &[u64], size: usize, lo: &[u64], hi: &[u64]) -> Vec<u8> {
    let rank = shape.len();
    let strides = c_strides(shape);
    let extent: Vec<u64> = lo.iter().zip(hi).map(|(l, h)| h - l).collect();
    let row = extent[rank - 1] as usize;
    let mut out = Vec::new();
    // Every row of the box (all axes but the last), in C order.
    let mut pos = vec![0u64; rank];
    loop {
        let lin: u64 = (0..rank).map(|a| (lo[a] + pos[a]) * strides[a]).sum();
        let start = lin as usize * size;
        out.extend_from_slice(&data[start..start + row * size]);
        if !advance(&mut pos[..rank - 1], &extent[..rank - 1]) {
            return out;
        }
    }
}

/// Copies a fixture array into a fresh temporary directory (for corruption tests).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read_dir") {
        let e = e.expect("entry");
        let to = dst.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).expect("copy");
        }
    }
}
