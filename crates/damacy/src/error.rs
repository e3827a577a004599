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
    /// `Config::gds` is `on`, and GPUDirect Storage cannot be used.
    #[error("gds = on, but GPUDirect Storage cannot be used: {reason} (set gds to auto or off)")]
    GdsUnavailable { reason: GdsUnavailable },
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
    /// An OME-NGFF image group could not be opened ([`crate::Image::open`]); the source
    /// names the file at fault.
    #[error("image {uri}: {source}")]
    Image {
        uri: PathBuf,
        #[source]
        source: Box<SampleError>,
    },
    /// A physical box could not be mapped to voxels of an image level (empty, or outside
    /// the level).
    #[error("image {uri} level {level}: {source}")]
    PhysicalBox {
        uri: PathBuf,
        level: usize,
        #[source]
        source: Box<zarr::ngff::NgffError>,
    },
    /// `pop_timeout` found no batch ready in time; nothing was lost.
    #[error("no batch was ready within {waited:?}")]
    Timeout { waited: std::time::Duration },
    /// The pipeline is shutting down or a worker died; no further batches come.
    #[error("the pipeline is closed")]
    Closed,
    /// Batch `batch` was planned, read and decoded together with batch `with`
    /// (`Config::batches_per_plan`), and the engine failed them both: `with`'s error
    /// (returned by the `pop` before) names the cause.
    #[error(
        "batch {batch} was planned with batch {with}, and the engine failed both (batch {with}'s error names the cause)"
    )]
    PlannedWith { batch: u64, with: u64 },
    /// A CUDA driver, kernel or nvCOMP call failed outside the work of any one batch: at
    /// construction, or on a delivered batch (its download, fills or release). A failure of
    /// a batch's own device work is a [`SampleError::Gpu`] naming the batch's first sample.
    #[error("gpu: {call} failed: {source}")]
    Gpu {
        /// The engine's step or the driver call that failed.
        call: &'static str,
        #[source]
        source: Box<GpuError>,
    },
    /// The GPU is unusable: after a device failure the engine could not even wait for its
    /// own work to finish. Every later batch of this pipeline fails with this error at once
    /// (instead of waiting for buffers that may never come back); drop the pipeline and
    /// create a new one, or use the host backend.
    #[error(
        "gpu: the device is unusable since {call} failed: {source}; no batch of this pipeline can succeed, create a new one"
    )]
    DeviceBroken {
        /// The call that found the device unusable.
        call: &'static str,
        #[source]
        source: Box<GpuError>,
    },
    /// A thread of the pipeline panicked (a bug in damacy: please report it). The batches
    /// returned before this error are complete and correct; no further batch comes, and
    /// every later `pop` returns this error again.
    #[error(
        "the pipeline's thread `{thread}` panicked: {message} (a bug in damacy: please report it)"
    )]
    EnginePanicked {
        /// The thread's name (`damacy-coordinator`, `damacy-gpu-submit`, ...).
        thread: &'static str,
        /// The panic's message (`<not a string>` for another payload).
        message: String,
    },
}

/// What failed on the GPU, typed by the layer that reported it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// A driver call, stream, event, pool or copy (`gpu-schedule`; the error names the
    /// CUDA call and its error code).
    #[error(transparent)]
    Schedule(#[from] gpu_schedule::Error),
    /// A kernel, its descriptors, or nvCOMP (`kernels`).
    #[error(transparent)]
    Kernels(#[from] kernels::Error),
    /// nvCOMP could not decode a chunk whose zstd frame passed the host check.
    #[error("nvCOMP status {status}, decoded {decoded} of {expected} bytes")]
    ChunkDecode {
        /// nvCOMP's per-chunk status (0 is success).
        status: i32,
        /// Bytes nvCOMP reported decoded.
        decoded: u64,
        /// Bytes the chunk decodes to.
        expected: u64,
    },
    /// nvCOMP failed on a chunk (the [`SampleError::Gpu`] names it where nvCOMP's report
    /// does) of the device wave that also held this sample's data; nvCOMP can write past
    /// a corrupt frame's output, so that data may be overwritten and is not delivered.
    #[error(
        "it shared a device wave with this sample's data, which nvCOMP may have overwritten past the corrupt frame's output"
    )]
    WaveOverrun,
    /// A wave needs more nvCOMP streams or raw blosc blocks than its slot was sized for.
    #[error(
        "a wave of {streams} zstd streams and {raws} raw blosc blocks exceeds the {limit} of each the engine was sized for"
    )]
    WaveTooLarge {
        /// zstd streams of the wave.
        streams: u64,
        /// Raw (uncompressed) blosc blocks of the wave.
        raws: u64,
        /// Streams (and raw blocks) per wave the buffers hold.
        limit: u64,
    },
    /// A wave's nvCOMP metadata does not fit its slot's buffer.
    #[error("a wave's metadata needs {needed} bytes but its buffer holds {len}")]
    MetadataTooLarge {
        /// Bytes needed.
        needed: u64,
        /// Bytes of the buffer.
        len: u64,
    },
}

/// How a batch plan contradicted itself (indices are into the plan's own tables).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanFault {
    /// A read op a wave lists, or its group of chunks, is not in the plan.
    #[error("read op {read} is not in the plan")]
    Read { read: usize },
    /// A read op names a file the plan does not have.
    #[error("read op {read} names file {file}, which is not in the plan")]
    File { read: usize, file: usize },
    /// A chunk names an array the batch does not have.
    #[error("chunk {chunk} names array {array}, which the batch does not have")]
    Array { chunk: usize, array: usize },
    /// A placement names a plan sample the batch does not have.
    #[error("chunk {chunk} names plan sample {sample}, which the batch does not have")]
    Sample { chunk: usize, sample: usize },
    /// A chunk's bytes lie outside the read op that holds it.
    #[error("the bytes of chunk {chunk} lie outside its read op {read}")]
    ChunkBytes { chunk: usize, read: usize },
    /// A fill chunk (stored nowhere) is in a read op's group.
    #[error("chunk {chunk} in the group of read op {read} is a fill chunk")]
    FillInRead { chunk: usize, read: usize },
    /// A read op's chunk lies outside the wave the read op belongs to.
    #[error("chunk {chunk} of read op {read} lies outside the read op's wave")]
    OutsideWave { chunk: usize, read: usize },
    /// A chunk of a wave was neither decoded nor reported by the read ops of its wave.
    #[error("chunk {chunk} was neither decoded nor reported by the read ops of its wave")]
    Unreported { chunk: usize },
    /// A range of chunks (a wave's, or the fills) is not in the plan.
    #[error("chunks {start}..{end} are not in the plan")]
    Chunks { start: usize, end: usize },
    /// A wave is not in the plan.
    #[error("wave {wave} is not in the plan")]
    Wave { wave: usize },
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

/// Why GPUDirect Storage cannot be used ([`Error::GdsUnavailable`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GdsUnavailable {
    /// The host engine runs (as configured, or as `Backend::Auto`'s fallback): it reads
    /// through host memory.
    #[error("the host engine runs, and only the CUDA engine reads with GDS")]
    HostEngine,
    /// libcufile could not be loaded, or its driver not opened (without nvidia-fs, compat
    /// mode must be allowed: `CUFILE_FORCE_COMPAT_MODE=true`, or `allow_compat_mode` in
    /// cufile.json).
    #[error("cuFile: {0}")]
    Cufile(#[source] kernels::Error),
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
    /// The array has neither a `zarr.json` (v3) nor a `.zarray` (v2); `path` is the
    /// `zarr.json` looked for.
    #[error(
        "array not found: no zarr.json at {path}, nor a zarr v2 .zarray beside it (check the sample's uri)"
    )]
    ArrayNotFound { path: PathBuf },
    /// The decoded-chunk cache had this chunk being read and decoded for an earlier batch
    /// in flight, and that batch failed to (its own error names the cause).
    #[error(
        "chunk {chunk:?} of {path}: an earlier batch was decoding it for the chunk cache and failed (see that batch's error)"
    )]
    SharedDecodeFailed { path: PathBuf, chunk: Vec<u64> },
    /// The sample names an OME-NGFF image group whose level could not be resolved: a level
    /// out of range (the error says how many there are), a level path holding no array,
    /// malformed `multiscales`, a group that is neither an array nor an image, or a level
    /// given for an array. The error names the metadata file.
    #[error(transparent)]
    Image(prefetch_cache::ImageError),
    /// The box is out of bounds or does not match the array's rank.
    #[error("{0}")]
    Format(#[from] zarr::Error),
    /// Reading a file failed (the store error names the path and the OS error).
    #[error("{0}")]
    Store(#[from] store::Error),
    /// A metadata document (`zarr.json`, `.zarray`, `.zattrs`) or shard index is invalid;
    /// `path` names it.
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
    /// The batch plan contradicted itself (a bug in damacy: please report it), so the
    /// sample's data was not produced; it is reported, never delivered as whatever the
    /// batch buffer held before.
    #[error("internal error in the {stage} stage: {fault} (a bug in damacy: please report it)")]
    PlanInconsistent {
        /// The engine stage that found it.
        stage: &'static str,
        /// What was inconsistent.
        fault: PlanFault,
    },
    /// The GPU failed on this sample's data. With a chunk and its file: nvCOMP's failure on
    /// that chunk (or on a chunk of the same device wave). Without: a device call of the
    /// sample's batch failed, which fails the whole batch; it is reported for the batch's
    /// first sample.
    #[error("gpu: {call} failed{}: {source}", on_chunk(.chunk.as_deref(), .path.as_deref()))]
    Gpu {
        /// The engine's step or the driver call that failed.
        call: &'static str,
        /// The chunk concerned (grid coordinates), if the failure was one chunk's.
        chunk: Option<Vec<u64>>,
        /// The file holding that chunk.
        path: Option<PathBuf>,
        #[source]
        source: Box<GpuError>,
    },
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

/// " on chunk [..] in <path>" for [`SampleError::Gpu`]'s message, or nothing.
fn on_chunk(chunk: Option<&[u64]>, path: Option<&std::path::Path>) -> String {
    match (chunk, path) {
        (Some(c), Some(p)) => format!(" on chunk {c:?} in {}", p.display()),
        (Some(c), None) => format!(" on chunk {c:?}"),
        (None, Some(p)) => format!(" in {}", p.display()),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::path::PathBuf;

    use super::{Error, GpuError, PlanFault, SampleError, Unavailable};

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

    /// GPU failures keep the lower crates' typed errors (no text), and a sample's names
    /// the call, the chunk and the file.
    #[test]
    fn gpu_errors_are_structured_and_name_what_failed() {
        let driver = gpu_schedule::Error::CudaDriver {
            call: "cuEventSynchronize",
            code: "CUDA_ERROR_LAUNCH_FAILED".into(),
        };
        assert_eq!(GpuError::from(driver.clone()), GpuError::Schedule(driver.clone()));
        let status =
            kernels::Error::Nvcomp { call: "nvcompBatchedZstdDecompressAsync", status: 10 };
        assert_eq!(GpuError::from(status.clone()), GpuError::Kernels(status));

        let e = Error::Gpu { call: "waiting for a wave", source: Box::new(driver.clone().into()) };
        let shown = e.to_string();
        assert!(shown.contains("waiting for a wave") && shown.contains("cuEventSynchronize"));
        assert!(shown.contains("CUDA_ERROR_LAUNCH_FAILED"), "{shown}");
        let source = e.source().map(ToString::to_string);
        assert_eq!(source, Some(GpuError::Schedule(driver).to_string()), "the source chain");

        let chunk = SampleError::Gpu {
            call: "nvCOMP decode",
            chunk: Some(vec![0, 1, 2]),
            path: Some(PathBuf::from("/d/a.zarr/c/0/0/0")),
            source: Box::new(GpuError::ChunkDecode { status: 1, decoded: 0, expected: 1024 }),
        };
        assert_eq!(
            chunk.to_string(),
            "gpu: nvCOMP decode failed on chunk [0, 1, 2] in /d/a.zarr/c/0/0/0: nvCOMP status 1, \
             decoded 0 of 1024 bytes"
        );
        let batch = SampleError::Gpu {
            call: "cuEventRecord",
            chunk: None,
            path: None,
            source: Box::new(GpuError::WaveTooLarge { streams: 9, raws: 0, limit: 8 }),
        };
        assert!(batch.to_string().starts_with("gpu: cuEventRecord failed: a wave of 9 zstd"));
    }

    #[test]
    fn plan_and_thread_failures_name_what_was_inconsistent_or_died() {
        let e = SampleError::PlanInconsistent {
            stage: "CUDA staging",
            fault: PlanFault::File { read: 3, file: 9 },
        };
        assert_eq!(
            e.to_string(),
            "internal error in the CUDA staging stage: read op 3 names file 9, which is not in \
             the plan (a bug in damacy: please report it)"
        );
        let e = Error::EnginePanicked { thread: "damacy-gpu-harvest", message: "boom".into() };
        assert!(e.to_string().contains("`damacy-gpu-harvest` panicked: boom"), "{e}");
        let lost = gpu_schedule::Error::CudaDriver { call: "cuEventSynchronize", code: "X".into() };
        let e = Error::DeviceBroken { call: "cuEventSynchronize", source: Box::new(lost.into()) };
        assert!(e.to_string().contains("device is unusable since cuEventSynchronize failed"));
    }
}
