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
    #[error(
        "sample {index} ({uri}): box extent {got:?} differs from the configured sample_shape {expected:?}"
    )]
    SampleShape { index: u64, uri: PathBuf, expected: Box<[u64]>, got: Box<[u64]> },
    /// `OutDtype::Native` with arrays of different data types in one pipeline.
    #[error(
        "sample {index} ({uri}): data type {got} differs from {expected}; OutDtype::Native needs one data type per pipeline (use F32/Bf16/F16)"
    )]
    NativeDtypeMismatch { index: u64, uri: PathBuf, expected: zarr::DataType, got: zarr::DataType },
    /// A sample's data could not be read; the batch holding it fails (or, with
    /// `OnError::Fill`, the sample is filled and listed in `Batch::errors`).
    #[error("sample {index} ({uri}): {source}")]
    Sample {
        index: u64,
        uri: PathBuf,
        #[source]
        source: Box<SampleError>,
    },
    /// The byte store could not be created (bad configuration, threads).
    #[error("store: {0}")]
    Store(#[from] Box<store::Error>),
    /// The requested backend cannot be used here.
    #[error("backend: {reason}")]
    BackendUnavailable { reason: Unavailable },
    /// The metadata prefetcher could not be set up (its configuration or its threads).
    #[error("metadata prefetcher: {0}")]
    Prefetch(Box<prefetch_cache::Error>),
    /// A worker thread could not be started (a failure of the machine).
    #[error("could not start thread `{name}`: {kind:?}")]
    Spawn { name: &'static str, kind: std::io::ErrorKind },
    /// An iterator given to `push` panicked while producing sample `index`; the samples
    /// before it were delivered, nothing after it is taken.
    #[error("the sample iterator passed to push panicked while producing sample {index}")]
    SourcePanicked { index: u64 },
    /// A sample could not be built (`Sample::new`).
    #[error("invalid sample {uri}: {source}")]
    InvalidSample {
        uri: PathBuf,
        #[source]
        source: Box<SampleError>,
    },
    /// `pop_timeout` found no batch ready in time; nothing was lost.
    #[error("no batch was ready within {waited:?}")]
    Timeout { waited: std::time::Duration },
    /// The pipeline is shutting down or a worker died; no further batches come.
    #[error("the pipeline is closed")]
    Closed,
    /// A CUDA driver, kernel or nvCOMP call failed.
    #[error("gpu: {what} failed: {detail}")]
    Gpu { what: &'static str, detail: String },
}

/// Why an engine cannot run on this machine or in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The build has no CUDA engine.
    #[error("this build of damacy has no CUDA engine (build with the `cuda` feature)")]
    NotBuilt,
    /// No CUDA driver library could be loaded.
    #[error("no CUDA driver on this machine (libcuda could not be loaded)")]
    NoDriver,
    /// The driver is there but the device cannot be opened.
    #[error("CUDA device {device} could not be opened (no such device index, or it is busy)")]
    NoDevice { device: usize },
    /// The kernels do not compile for the device.
    #[error("the CUDA kernels could not be compiled for device {device} (is libnvrtc installed?)")]
    KernelsDidNotCompile { device: usize },
    /// The batch buffer pool could not be set up.
    #[error("the batch buffer pool could not be created")]
    BufferPool,
}

impl Unavailable {
    /// Whether `Backend::Auto` may run the host engine instead: only when this machine
    /// has no CUDA at all (no engine built, no driver, no device). Every other failure of
    /// a CUDA engine that could run (kernels, budgets, allocations) is the caller's to see.
    pub fn allows_fallback(self) -> bool {
        matches!(self, Unavailable::NotBuilt | Unavailable::NoDriver | Unavailable::NoDevice { .. })
    }
}

/// Why one sample's data could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// The array's `zarr.json` is missing.
    #[error("array not found: no zarr.json at {path} (check the sample's uri)")]
    ArrayNotFound { path: PathBuf },
    /// The box is out of bounds or does not match the array's rank.
    #[error("{0}")]
    Format(#[from] zarr::Error),
    /// Reading a file failed (the store error names the path and the OS error).
    #[error("{0}")]
    Store(#[from] store::Error),
    /// A `zarr.json` or shard index is invalid.
    #[error("{path}: {source}")]
    Metadata {
        path: PathBuf,
        #[source]
        source: zarr::Error,
    },
    /// The batch could not be planned (a budget knob too small, mixed dtypes with Native).
    #[error("{0}")]
    Plan(Box<planner::Error>),
    /// A chunk failed to decode.
    #[error("decode of chunk {chunk:?} in {path}: {source}")]
    Decode {
        path: PathBuf,
        chunk: Vec<u64>,
        #[source]
        source: zarr::Error,
    },
    /// The array is valid zarr but uses a layout this loader does not read.
    #[error("{path}: unsupported: {what}")]
    Unsupported { path: PathBuf, what: &'static str },
    /// Resolving the sample's metadata failed in a way not listed above (for example a
    /// blosc compressor the engine cannot decode, or an empty shard).
    #[error("{0}")]
    Prefetch(Box<prefetch_cache::Error>),
    /// The sample's path is not valid UTF-8 (store keys are UTF-8).
    #[error("the path is not valid UTF-8; rename the array or use a UTF-8 path to it")]
    NonUtf8Path,
    /// A worker failed in a way that is a bug in damacy (it panicked, or a plan was
    /// inconsistent); the sample's data was not produced.
    #[error("internal error in the {stage} stage (a bug: please report it)")]
    Internal { stage: &'static str },
    /// The sample touches more shards than `max_shards_per_sample`.
    #[error(
        "touches {shards} shards, more than max_shards_per_sample = {limit}; raise it or use smaller samples"
    )]
    TooManyShards { shards: u64, limit: u64 },
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::Unavailable;

    /// `Backend::Auto` may run the host engine only where there is no CUDA at all.
    #[test]
    fn only_a_missing_cuda_allows_the_auto_fallback() {
        assert!(Unavailable::NotBuilt.allows_fallback());
        assert!(Unavailable::NoDriver.allows_fallback());
        assert!(Unavailable::NoDevice { device: 3 }.allows_fallback());
        assert!(!Unavailable::KernelsDidNotCompile { device: 0 }.allows_fallback());
        assert!(!Unavailable::BufferPool.allows_fallback());
        assert!(Unavailable::NoDevice { device: 3 }.to_string().contains("device 3"));
    }

    /// Keeps `Result<T, Error>` cheap to return (clippy's `result_large_err` bound).
    #[test]
    fn error_stays_small() {
        assert!(
            std::mem::size_of::<super::Error>() <= 128,
            "{}",
            std::mem::size_of::<super::Error>()
        );
    }
}
