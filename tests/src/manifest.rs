//! `tests/data/manifest.json`, written by `tests/data/make_fixtures.py`: the fixture
//! arrays, their reference crops, and the metadata files the crate must reject.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The whole manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Which zarr-python and numpy wrote the fixtures.
    pub generator: String,
    pub arrays: Vec<FixtureArray>,
    pub rejects: Vec<Reject>,
}

/// One array written by zarr-python.
#[derive(Debug, Clone, Deserialize)]
pub struct FixtureArray {
    pub name: String,
    /// Directory relative to `tests/data`.
    pub path: String,
    /// 3 (`zarr.json`) or 2 (`.zarray`).
    pub zarr_format: u8,
    /// The zarr v3 data type name (`uint16`, ...).
    pub dtype: String,
    pub shape: Vec<u64>,
    /// A human-readable summary of the codec chain, for failure messages.
    pub codecs: String,
    pub crops: Vec<Crop>,
}

/// A box `[lo, hi)` and the `.npy` file (relative to `tests/data`) holding its values.
#[derive(Debug, Clone, Deserialize)]
pub struct Crop {
    pub lo: Vec<u64>,
    pub hi: Vec<u64>,
    pub npy: String,
}

/// A metadata document the crate must reject, and the `zarr::Error` variant expected.
#[derive(Debug, Clone, Deserialize)]
pub struct Reject {
    pub name: String,
    /// Metadata file relative to `tests/data`.
    pub metadata: String,
    pub error: String,
}

/// `tests/data`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

impl Manifest {
    /// Loads `tests/data/manifest.json`.
    ///
    /// # Errors
    /// I/O and JSON errors.
    pub fn load() -> Result<Self> {
        let path = data_dir().join("manifest.json");
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The array named `name`.
    ///
    /// # Errors
    /// When the manifest has no such array (the fixtures and the tests disagree).
    pub fn array(&self, name: &str) -> Result<&FixtureArray> {
        self.arrays.iter().find(|a| a.name == name).with_context(|| {
            format!("manifest.json has no array `{name}`; rerun `cargo xtask fixtures`")
        })
    }
}
