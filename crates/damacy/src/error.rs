//! The facade's error type: configuration problems, budgets, per-sample data failures
//! (with the sample's uri and push index), and failures of the machine.

use std::path::PathBuf;

/// Result alias for the facade.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the facade can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration knob is out of its range.
    #[error("config: `{knob}` is {value}, expected {min}..={max}")]
    ConfigRange { knob: &'static str, value: u64, min: u64, max: u64 },
    /// A configuration knob has an invalid value.
    #[error("config: `{knob}` is {value}, expected {expected}")]
    ConfigValue { knob: &'static str, value: u64, expected: &'static str },
    /// A size derived from the configuration overflows.
    #[error("config: `{knob}` makes the batch size overflow; use smaller samples or batches")]
    ConfigOverflow { knob: &'static str },
    /// A configuration file does not parse.
    #[error("config: {format} does not parse: {message}")]
    ConfigParse { format: &'static str, message: String },
    /// A resource budget is too small for the configuration.
    #[error("budget: `{knob}` is {limit}, but at least {needed} is needed; raise it")]
    Budget { knob: &'static str, needed: u64, limit: u64 },
    /// A sample's box does not have the configured sample shape.
    #[error("sample {index} ({uri}): box extent {got:?} differs from the configured sample_shape {expected:?}")]
    SampleShape { index: u64, uri: PathBuf, expected: Vec<u64>, got: Vec<u64> },
    /// `OutDtype::Native` with arrays of different data types in one pipeline.
    #[error("sample {index} ({uri}): data type {got} differs from {expected}; OutDtype::Native needs one data type per pipeline (use F32/Bf16/F16)")]
    NativeDtypeMismatch { index: u64, uri: PathBuf, expected: zarr::DataType, got: zarr::DataType },
    /// A sample's data could not be read; the batch holding it fails (or, with
    /// `OnError::Fill`, the sample is filled and listed in `Batch::errors`).
    #[error("sample {index} ({uri}): {source}")]
    Sample {
        index: u64,
        uri: PathBuf,
        #[source]
        source: SampleError,
    },
    /// The requested backend cannot be used here.
    #[error("backend: {reason}")]
    BackendUnavailable { reason: &'static str },
    /// A worker thread could not be started (a failure of the machine).
    #[error("could not start thread `{name}`: {kind:?}")]
    Spawn { name: &'static str, kind: std::io::ErrorKind },
    /// The pipeline is shutting down or a worker died; no further batches come.
    #[error("the pipeline is closed")]
    Closed,
}

/// Why one sample's data could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// The array's `zarr.json` is missing.
    #[error("array not found: no zarr.json at {path}")]
    ArrayNotFound { path: PathBuf },
    /// The array's metadata, shard index or a chunk is invalid, or the box is out of bounds.
    #[error("{0}")]
    Format(#[from] zarr::Error),
    /// Reading a file failed.
    #[error("reading {path}: {kind:?} (os error {os:?})")]
    Io { path: PathBuf, kind: std::io::ErrorKind, os: Option<i32> },
    /// A chunk failed to decode.
    #[error("decode of chunk {chunk:?} in {path}: {source}")]
    Decode {
        path: PathBuf,
        chunk: Vec<u64>,
        #[source]
        source: zarr::Error,
    },
    /// The sample touches more shards than `max_shards_per_sample`.
    #[error("touches {shards} shards, more than max_shards_per_sample = {limit}; raise it or use smaller samples")]
    TooManyShards { shards: u64, limit: u64 },
}
