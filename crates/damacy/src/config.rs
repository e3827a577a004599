//! Pipeline configuration: a builder and serde (JSON/TOML) front, validated in one place
//! so that every error names the knob and its bound.
//!
//! Defaults are chosen so that `Config::builder().sample_shape(..).build()` passes its
//! own validation for every `samples_per_batch` (lesson 12 of the C predecessor): the
//! cache capacities that depend on the batch size are derived, not fixed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use zarr::DataType;
pub use zarr::OutDtype;

/// Which engine builds the batches.
// `Simulated` is hidden because it is for tests, not because more variants may come.
#[allow(clippy::manual_non_exhaustive)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Backend {
    /// The CUDA engine when a device and the `cuda` feature are present, else the host.
    #[default]
    Auto,
    /// CPU threads; batches in host memory.
    Host,
    /// The CUDA engine on the given device.
    Cuda { device: usize },
    /// The CUDA engine on a simulated device: host threads as streams, host memory as
    /// device memory, the kernels' and nvCOMP's host twins. Not for production: it is what
    /// the tests of the CUDA engine's orchestration and failure paths run on without a
    /// GPU. Not accepted in configuration files.
    #[doc(hidden)]
    #[serde(skip)]
    Simulated,
}

/// What to do with a sample whose data cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// `pop` returns an error for that batch; the pipeline continues with the next one.
    #[default]
    Fail,
    /// The sample is filled with its array's fill value and listed in `Batch::errors`.
    Fill,
}

/// Everything a [`crate::Pipeline`] needs; build it with [`Config::builder`] or load it
/// from JSON/TOML, then [`Config::validate`] (the builder does that for you).
///
/// ```
/// use damacy::{Config, OutDtype};
/// let cfg = Config::builder()
///     .sample_shape([64, 64, 64])
///     .samples_per_batch(8)
///     .dtype(OutDtype::Bf16)
///     .build()?;
/// assert_eq!(cfg.batch_elements()?, 8 * 64 * 64 * 64);
/// # Ok::<(), damacy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Extent of every sample, in the arrays' own axis order.
    pub sample_shape: Vec<u64>,
    /// Samples per batch (`N` of the `[N, ...sample_shape]` tensor).
    pub samples_per_batch: usize,
    pub dtype: OutDtype,
    pub backend: Backend,
    pub on_error: OnError,
    /// Hard cap on GPU memory (CUDA engine only).
    pub max_gpu_memory_bytes: u64,
    /// Cap on page-locked host memory for staging (CUDA engine only).
    pub max_pinned_host_bytes: u64,
    /// Wave slots of the CUDA engine: waves whose reads, nvCOMP decode and assembly are in
    /// flight at once. Each slot decodes on a stream of its own with a decoder of its own,
    /// so waves overlap on the device (nvCOMP's zstd decode of one chunk takes milliseconds
    /// however few chunks a call has: small batches need several calls at once). More slots
    /// split the memory budgets into smaller waves. `0` (the default): for small batches
    /// ([`Config::small_batches`]) with the automatic 8 batch buffers, 8 where the
    /// budgets allow; otherwise 3 where they allow, else 2 (measured best on the H200);
    /// 2 to 16 fixes the count.
    pub gpu_wave_slots: usize,
    /// Samples whose metadata is resolved ahead of the batch being built.
    /// `0` means `4 * samples_per_batch`.
    pub lookahead: usize,
    /// Batch buffers: those held by the caller plus those being filled (1 to 64). `0`
    /// (the default): on the CUDA engine 8 for small batches (at most
    /// [`SMALL_BATCH_BYTES`] at the widest output element), else 3; 3 on the host
    /// engine (3 also where the budgets cannot hold 8). A small batch is about one nvCOMP call of ~9 ms whatever its size, so
    /// throughput needs several in flight: on the H200 (`small-batch`, docs/PERFORMANCE.md)
    /// 8 buffers and 8 wave slots gave 5.56 Gvox/s against 4.40 with 3 and 3 (and 4.47
    /// with 3 buffers and 8 slots); `default`'s 1 GiB batches gained nothing from more.
    pub batches_in_flight: usize,
    /// Batches planned as one (1 to 16): their samples' chunks are read and decoded once
    /// for all of them (on the CUDA engine in the same waves, so in the same nvCOMP
    /// calls), into one buffer that holds them side by side; each is still popped as its
    /// own [`Batch`], in push order, and its buffer goes back once every batch of its plan
    /// is dropped (so `batches_in_flight` counts plans). Every batch gets the outcome it
    /// gets planned alone (its data, its errors). A batch only waits for samples already
    /// pushed: the first batch is planned alone, and a plan takes a further batch only
    /// where its samples are in the lookahead already (or the input is finished), so a
    /// caller pushing one batch at a time is never kept waiting. `0` (the default): as
    /// many as fill about [`PLAN_GROUP_BYTES`] of batch buffer (1 to
    /// [`MAX_BATCHES_PER_PLAN`]) with `batches_in_flight` left automatic (a set buffer
    /// count then counts batches: 1), on the CUDA engine only where its budgets still
    /// give waves of 1024 chunks or more (else fewer, down to 1). Buffers are sized for
    /// the widest output element; under `OutDtype::Native` (8 bytes reserved an element)
    /// the automatic count fills a plan's buffer with the batches of the element the
    /// arrays have ([`Config::plan_batches_of`]): `u16` batches four times as many as
    /// `f64` ones, where a set count stays what it says. On the H200, `default`'s
    /// 128-crop batches planned 3 at a time decoded 1.0 byte per byte delivered instead
    /// of 1.8 (docs/PERFORMANCE.md).
    ///
    /// [`Batch`]: crate::Batch
    pub batches_per_plan: usize,
    /// I/O threads of the file store (not capped by the core count: I/O waits).
    pub io_threads: usize,
    /// Threads that fetch metadata (array metadata, shard indexes) ahead of planning:
    /// the bound on metadata requests in flight. Each request of an object store (or a
    /// slow file system) waits tens of milliseconds, so this is well above the core
    /// count; the threads only wait. Default 256: with 50 ms per request the first batch
    /// of `latency-50ms` (64 arrays, ~250 shard indexes) waited for 4 rounds of 64
    /// requests; with 256 its requests go out in the two rounds their dependencies
    /// allow (array metadata, then shard indexes).
    pub metadata_threads: usize,
    /// CPU decode threads; `0` means the number of available cores.
    pub decode_threads: usize,
    /// Threads that prepare batches (check the samples, gather their metadata, plan the
    /// reads and decodes, probe the decoded-chunk cache), each a whole batch at a time;
    /// batches still reach the engine, and the caller, in push order. One thread bounds
    /// the CUDA engine on small batches and on cached epochs. With more than one, a chunk
    /// another batch is still decoding for the cache is decoded again rather than waited
    /// for. `0` (the default): a quarter of the cores, 1 to 4.
    pub prepare_threads: usize,
    /// A sample touching more shards than this is rejected.
    pub max_shards_per_sample: usize,
    /// Array metadata (zarr.json or .zarray) cache slots.
    pub metadata_cache_capacity: usize,
    /// Shard index cache slots; `0` means the minimum that cannot saturate.
    pub shard_index_cache_capacity: usize,
    /// A coalesced read never exceeds this (unless it is a single chunk).
    pub max_read_op_bytes: u64,
    /// Ranges separated by at most this many unneeded bytes are read as one.
    pub merge_gap_bytes: u64,
    /// Largest decompressed chunk accepted.
    pub max_chunk_decompressed_bytes: u64,
    /// Object stores (`s3://`, `gs://`, `az://`, `http(s)://` sample uris).
    pub object_store: ObjectStoreConfig,
    /// Decoded-chunk cache: bytes of decoded chunks kept for later batches (host memory
    /// for the host engine; device memory for the CUDA engine, counted inside
    /// `max_gpu_memory_bytes`). `0` (the default) turns it off. Chunks are keyed by their
    /// stored identity (object key, offset and length in it), so a chunk whose index
    /// entry changes is read again.
    pub chunk_cache_bytes: u64,
    /// Which cached chunk goes first when the cache is full.
    pub chunk_cache_policy: ChunkCachePolicy,
    /// GPUDirect Storage (CUDA engine): zstd chunks of local files read with cuFile
    /// straight into device staging, checked on the device, never seen by the host.
    pub gds: Gds,
}

/// Whether the CUDA engine reads local files with GPUDirect Storage ([`Config::gds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Gds {
    /// Every read goes through host memory.
    Off,
    /// GDS where cuFile reports native support (nvidia-fs loaded and a file system it
    /// serves natively); otherwise, and on the host engine, reads go through host memory.
    #[default]
    Auto,
    /// GDS for every local file cuFile accepts, in compat mode too (cuFile's own bounce
    /// buffer, for testing the path where nvidia-fs is absent). A pipeline fails to start
    /// when cuFile cannot be used, or on the host engine (`Error::GdsUnavailable`).
    /// libcufile keeps its own log (`cufile.log` in the working directory unless its
    /// `cufile.json`, named by `CUFILE_ENV_PATH_JSON`, says otherwise): where cuFile
    /// refuses files (in a container without a udev database, say), the reason is there.
    On,
}

/// Eviction policy of the decoded-chunk cache (see [`Config::chunk_cache_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChunkCachePolicy {
    /// Least recently used.
    Lru,
    /// CLOCK (second chance).
    #[default]
    Clock,
}

/// How sample uris with an object-store scheme are read: the clients' options per scheme
/// and the request knobs. Credentials and endpoints also come from the usual environment
/// variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION`, `AWS_ALLOW_HTTP`, `GOOGLE_*`, `AZURE_*`); options given here win.
///
/// ```
/// let cfg = damacy::Config::from_toml(
///     r#"
///     sample_shape = [64, 64, 64]
///     [object_store]
///     max_in_flight = 128
///     [object_store.options.s3]
///     aws_endpoint = "http://127.0.0.1:9000"
///     aws_region = "us-east-1"
///     aws_skip_signature = "true"   # anonymous: a public bucket
///     "#,
/// )?;
/// assert_eq!(cfg.object_store.options["s3"]["aws_endpoint"], "http://127.0.0.1:9000");
/// # Ok::<(), damacy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// Per scheme (`s3`, `gs`, `az`, `http`), options of the `object_store` crate's
    /// builders: `aws_endpoint`, `aws_access_key_id`, `aws_skip_signature` (anonymous),
    /// `google_service_account`, `azure_storage_account_name`, `allow_http`, ...
    pub options: BTreeMap<String, BTreeMap<String, String>>,
    /// Most requests in flight per bucket or host.
    pub max_in_flight: usize,
    /// Reads larger than this are split into concurrent ranged requests...
    pub max_part_bytes: u64,
    /// ...none smaller than this.
    pub min_part_bytes: u64,
    /// Chunk ranges of one object closer than this are read as one request (the
    /// planner's gap for batches with object-store samples; `merge_gap_bytes` applies to
    /// local files).
    pub merge_gap_bytes: u64,
    /// Retries of a request failing with a 5xx, throttling, a timeout or a reset.
    pub max_retries: usize,
    /// One attempt's limit, in milliseconds.
    pub request_timeout_ms: u64,
    /// Connection limit, in milliseconds.
    pub connect_timeout_ms: u64,
    /// No retry starts later than this after the first attempt, in milliseconds.
    pub retry_timeout_ms: u64,
    /// Threads of each object store's async runtime.
    pub runtime_threads: usize,
    /// Bytes of reads the engines submit ahead of their decode workers for object-store
    /// uris, so that requests in flight do not depend on the number of decode threads;
    /// submitting waits while this much is in flight or not yet decoded (a bound on that
    /// memory). A read larger than this waits until it can run alone.
    pub read_ahead_bytes: u64,
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        let d = store::RemoteConfig::default();
        let ms = |t: Duration| u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        Self {
            options: BTreeMap::new(),
            max_in_flight: d.max_in_flight,
            max_part_bytes: d.max_part as u64,
            min_part_bytes: d.min_part as u64,
            merge_gap_bytes: d.merge_gap,
            max_retries: d.max_retries,
            request_timeout_ms: ms(d.request_timeout),
            connect_timeout_ms: ms(d.connect_timeout),
            retry_timeout_ms: ms(d.retry_timeout),
            runtime_threads: d.runtime_threads,
            read_ahead_bytes: 256 << 20,
        }
    }
}

impl ObjectStoreConfig {
    /// The `store` crate's configuration.
    ///
    /// # Errors
    /// `ConfigValue` for a part size that does not fit in memory on this platform.
    pub fn to_remote(&self) -> Result<store::RemoteConfig> {
        let bytes = |knob, v: u64| {
            usize::try_from(v).map_err(|_| Error::ConfigValue {
                knob,
                value: v,
                expected: "a size that fits in memory on this platform",
            })
        };
        Ok(store::RemoteConfig {
            options: self.options.clone(),
            max_in_flight: self.max_in_flight,
            min_part: bytes("object_store.min_part_bytes", self.min_part_bytes)?,
            max_part: bytes("object_store.max_part_bytes", self.max_part_bytes)?,
            merge_gap: self.merge_gap_bytes,
            max_retries: self.max_retries,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            retry_timeout: Duration::from_millis(self.retry_timeout_ms),
            runtime_threads: self.runtime_threads,
            ..store::RemoteConfig::default()
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sample_shape: Vec::new(),
            samples_per_batch: 1,
            dtype: OutDtype::F32,
            backend: Backend::Auto,
            on_error: OnError::Fail,
            max_gpu_memory_bytes: 4 << 30,
            max_pinned_host_bytes: 1 << 30,
            gpu_wave_slots: 0,
            lookahead: 0,
            batches_in_flight: 0,
            batches_per_plan: 0,
            io_threads: 8,
            metadata_threads: 256,
            decode_threads: 0,
            prepare_threads: 0,
            max_shards_per_sample: 64,
            metadata_cache_capacity: 1024,
            shard_index_cache_capacity: 0,
            max_read_op_bytes: 8 << 20,
            merge_gap_bytes: 0,
            max_chunk_decompressed_bytes: 64 << 20,
            object_store: ObjectStoreConfig::default(),
            chunk_cache_bytes: 0,
            chunk_cache_policy: ChunkCachePolicy::Clock,
            gds: Gds::Auto,
        }
    }
}

/// Upper bound on a few knobs, to catch typos (a lookahead of 10^9 samples) early.
const MAX_SAMPLES_PER_BATCH: usize = 1 << 16;
const MAX_THREADS: usize = 1024;
/// Most batch preparers: each holds a batch's samples and plan while it waits for its
/// turn, so more only add memory.
const MAX_PREPARE_THREADS: usize = 64;
/// Most wave slots of the CUDA engine (each holds a decoder and a stream).
pub const MAX_GPU_WAVE_SLOTS: usize = 16;
/// Batches of at most this many bytes (at the widest output element) are small: the
/// CUDA engine's automatic batch buffer and wave slot counts give them
/// [`SMALL_BATCH_BUFFERS`] of each.
pub const SMALL_BATCH_BYTES: u64 = 128 << 20;
/// Batch buffers (and wave slots) the CUDA engine wants for small batches.
pub const SMALL_BATCH_BUFFERS: usize = 8;
/// Bytes of batch buffer the automatic [`Config::batches_per_plan`] fills with batches.
pub const PLAN_GROUP_BYTES: u64 = 3 << 30;
/// Most batches one plan covers.
pub const MAX_BATCHES_PER_PLAN: usize = 16;
/// Batch buffers otherwise (`batches_in_flight = 0`).
pub const DEFAULT_BATCH_BUFFERS: usize = 3;

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder { cfg: Config::default() }
    }

    /// Parses JSON and validates.
    ///
    /// # Errors
    /// `ConfigParse` naming the format and position, or any [`Config::validate`] error.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Config = serde_json::from_str(text)
            .map_err(|e| Error::ConfigParse { format: "JSON", message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML and validates.
    ///
    /// # Errors
    /// As [`Config::from_json`].
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| Error::ConfigParse { format: "TOML", message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The lookahead actually used (resolving the `0 = auto` default).
    pub fn effective_lookahead(&self) -> usize {
        if self.lookahead == 0 { 4 * self.samples_per_batch } else { self.lookahead }
    }

    /// The decode thread count actually used.
    pub fn effective_decode_threads(&self) -> usize {
        if self.decode_threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            self.decode_threads
        }
    }

    /// Whether a batch is small ([`SMALL_BATCH_BYTES`] at most, at the widest element
    /// the output dtype may take).
    pub fn small_batches(&self) -> bool {
        self.batch_elements()
            .ok()
            .and_then(|e| e.checked_mul(self.dtype.max_size() as u64))
            .is_some_and(|b| b <= SMALL_BATCH_BYTES)
    }

    /// The batch buffer count wanted on the CUDA engine (or its simulated twin) when
    /// `device`, else the count used on the host engine (see
    /// [`Config::batches_in_flight`]). Where the memory budgets do not hold the
    /// [`SMALL_BATCH_BUFFERS`] of small batches, the CUDA engine takes
    /// [`DEFAULT_BATCH_BUFFERS`] (`Stats::batches_in_flight` says which).
    pub fn effective_batches_in_flight(&self, device: bool) -> usize {
        match self.batches_in_flight {
            0 if device && self.small_batches() => SMALL_BATCH_BUFFERS,
            0 => DEFAULT_BATCH_BUFFERS,
            n => n,
        }
    }

    /// Batches planned as one (see [`Config::batches_per_plan`]; the CUDA engine may take
    /// fewer where its memory budgets do not hold them).
    pub fn effective_batches_per_plan(&self) -> usize {
        match self.batches_per_plan {
            0 if !self.automatic_plans() => 1,
            0 => {
                let batch = self
                    .batch_elements()
                    .ok()
                    .and_then(|e| e.checked_mul(self.dtype.max_size() as u64))
                    .unwrap_or(u64::MAX)
                    .max(1);
                (PLAN_GROUP_BYTES / batch).clamp(1, MAX_BATCHES_PER_PLAN as u64) as usize
            }
            n => n,
        }
    }

    /// Whether the plan size is the automatic one: neither it nor the buffer count set.
    fn automatic_plans(&self) -> bool {
        self.batches_per_plan == 0 && self.batches_in_flight == 0
    }

    /// Batches one plan may hold when the engine plans up to `engine` a plan (its
    /// `batches_per_plan`, counted at the widest output element: the buffer holds
    /// `engine` batches of [`OutDtype::max_size`] bytes an element), for batches whose
    /// output element is `element` (`None`: not known yet, so the most of any).
    ///
    /// Only the automatic count under `OutDtype::Native` depends on the element: the
    /// buffer holds `engine × 8 / size` batches of a `size`-byte element (at most
    /// [`MAX_BATCHES_PER_PLAN`]), so `u16` data plans four times as many batches as
    /// `f64` in the same bytes. A set count, a set `batches_in_flight` and the other
    /// output types plan `engine`.
    pub fn plan_batches_of(&self, engine: usize, element: Option<DataType>) -> usize {
        let engine = engine.max(1);
        if !self.automatic_plans() || self.dtype != OutDtype::Native {
            return engine;
        }
        let size = element.map_or(1, DataType::size).max(1);
        (engine * self.dtype.max_size() / size).clamp(engine, MAX_BATCHES_PER_PLAN.max(engine))
    }

    /// The batch preparer count actually used.
    pub fn effective_prepare_threads(&self) -> usize {
        if self.prepare_threads == 0 {
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            (cores / 4).clamp(1, 4)
        } else {
            self.prepare_threads
        }
    }

    /// Shard index cache slots that guarantee the cache cannot saturate in steady state:
    /// every sample in the lookahead plus the batches being built (one per preparer, and
    /// one being dispatched) may pin `max_shards_per_sample` entries.
    ///
    /// # Errors
    /// `ConfigOverflow` when the product does not fit.
    pub fn min_shard_index_cache_capacity(&self) -> Result<usize> {
        self.effective_lookahead()
            .checked_add(
                self.samples_per_batch
                    .checked_mul(self.effective_prepare_threads() + 1)
                    .ok_or(Error::ConfigOverflow { knob: "samples_per_batch" })?,
            )
            .and_then(|n| n.checked_mul(self.max_shards_per_sample))
            .ok_or(Error::ConfigOverflow { knob: "shard_index_cache_capacity" })
    }

    /// The shard index cache capacity actually used.
    ///
    /// # Errors
    /// As [`Config::min_shard_index_cache_capacity`].
    pub fn effective_shard_index_cache_capacity(&self) -> Result<usize> {
        if self.shard_index_cache_capacity == 0 {
            self.min_shard_index_cache_capacity()
        } else {
            Ok(self.shard_index_cache_capacity)
        }
    }

    /// Elements in one sample.
    ///
    /// # Errors
    /// `ConfigOverflow` when the product does not fit.
    pub fn sample_elements(&self) -> Result<u64> {
        self.sample_shape
            .iter()
            .try_fold(1u64, |a, &e| a.checked_mul(e))
            .ok_or(Error::ConfigOverflow { knob: "sample_shape" })
    }

    /// Elements in one batch.
    ///
    /// # Errors
    /// `ConfigOverflow` when the product does not fit.
    pub fn batch_elements(&self) -> Result<u64> {
        self.sample_elements()?
            .checked_mul(self.samples_per_batch as u64)
            .ok_or(Error::ConfigOverflow { knob: "samples_per_batch" })
    }

    /// Checks every knob; the error names the knob, its value and the bound.
    ///
    /// # Errors
    /// `ConfigValue` for a knob out of range, `ConfigOverflow` for sizes that overflow.
    pub fn validate(&self) -> Result<()> {
        let rank = self.sample_shape.len();
        if rank == 0 || rank > zarr::geometry::MAX_RANK {
            return Err(Error::ConfigValue {
                knob: "sample_shape",
                value: rank as u64,
                expected: "a rank between 1 and 32 (set it with .sample_shape([z, y, x]))",
            });
        }
        if let Some(axis) = self.sample_shape.iter().position(|&e| e == 0) {
            return Err(Error::ConfigValue {
                knob: "sample_shape",
                value: axis as u64,
                expected: "a non-zero extent on every axis (the value is the axis)",
            });
        }
        range("samples_per_batch", self.samples_per_batch, 1, MAX_SAMPLES_PER_BATCH)?;
        range("batches_in_flight", self.batches_in_flight, 0, 64)?;
        range("batches_per_plan", self.batches_per_plan, 0, MAX_BATCHES_PER_PLAN)?;
        if self.gpu_wave_slots == 1 || self.gpu_wave_slots > MAX_GPU_WAVE_SLOTS {
            return Err(Error::ConfigValue {
                knob: "gpu_wave_slots",
                value: self.gpu_wave_slots as u64,
                expected: "0 (auto) or 2 to 16",
            });
        }
        range("io_threads", self.io_threads, 1, MAX_THREADS)?;
        range("metadata_threads", self.metadata_threads, 1, MAX_THREADS)?;
        range("decode_threads", self.decode_threads, 0, MAX_THREADS)?;
        range("prepare_threads", self.prepare_threads, 0, MAX_PREPARE_THREADS)?;
        range("max_shards_per_sample", self.max_shards_per_sample, 1, 1 << 20)?;
        range("metadata_cache_capacity", self.metadata_cache_capacity, 1, 1 << 24)?;
        if self.lookahead != 0 && self.lookahead < self.samples_per_batch {
            return Err(Error::ConfigValue {
                knob: "lookahead",
                value: self.lookahead as u64,
                expected: "0 (auto) or at least samples_per_batch",
            });
        }
        range("lookahead", self.lookahead, 0, 1 << 24)?;
        let min_cache = self.min_shard_index_cache_capacity()?;
        if self.shard_index_cache_capacity != 0 && self.shard_index_cache_capacity < min_cache {
            return Err(Error::Budget {
                knob: "shard_index_cache_capacity",
                needed: min_cache as u64,
                limit: self.shard_index_cache_capacity as u64,
            });
        }
        nonzero_bytes("max_read_op_bytes", self.max_read_op_bytes)?;
        nonzero_bytes("max_chunk_decompressed_bytes", self.max_chunk_decompressed_bytes)?;
        range("object_store.max_in_flight", self.object_store.max_in_flight, 1, 1 << 16)?;
        range("object_store.runtime_threads", self.object_store.runtime_threads, 1, MAX_THREADS)?;
        nonzero_bytes("object_store.read_ahead_bytes", self.object_store.read_ahead_bytes)?;
        self.object_store.to_remote()?.validate()?;
        // The batch must be addressable on this machine at the widest element (8 bytes).
        self.batch_elements()?
            .checked_mul(8)
            .filter(|&b| usize::try_from(b).is_ok())
            .ok_or(Error::ConfigOverflow { knob: "sample_shape" })?;
        Ok(())
    }
}

fn nonzero_bytes(knob: &'static str, value: u64) -> Result<()> {
    if value == 0 {
        return Err(Error::ConfigValue { knob, value, expected: "at least 1 byte" });
    }
    Ok(())
}

fn range(knob: &'static str, value: usize, lo: usize, hi: usize) -> Result<()> {
    if value < lo || value > hi {
        return Err(Error::ConfigRange {
            knob,
            value: value as u64,
            min: lo as u64,
            max: hi as u64,
        });
    }
    Ok(())
}

/// Builder for [`Config`]; [`ConfigBuilder::build`] validates.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    cfg: Config,
}

macro_rules! setters {
    ($($(#[$m:meta])* $name:ident : $ty:ty),* $(,)?) => {
        $(
            $(#[$m])*
            pub fn $name(mut self, v: $ty) -> Self {
                self.cfg.$name = v;
                self
            }
        )*
    };
}

impl ConfigBuilder {
    /// Extent of every sample, in the arrays' axis order.
    pub fn sample_shape(mut self, shape: impl AsRef<[u64]>) -> Self {
        self.cfg.sample_shape = shape.as_ref().to_vec();
        self
    }

    setters! {
        /// Samples per batch.
        samples_per_batch: usize,
        /// Output element type.
        dtype: OutDtype,
        /// Engine selection.
        backend: Backend,
        /// Error policy for samples whose data fails.
        on_error: OnError,
        /// Hard cap on GPU memory.
        max_gpu_memory_bytes: u64,
        /// Cap on page-locked host memory.
        max_pinned_host_bytes: u64,
        /// CUDA engine wave slots (0 = auto, else 2 to 16).
        gpu_wave_slots: usize,
        /// Samples resolved ahead (0 = auto).
        lookahead: usize,
        /// Batch buffers held plus being filled (0 = by engine and batch size).
        batches_in_flight: usize,
        /// Batches the CUDA engine plans as one (0 = by batch size).
        batches_per_plan: usize,
        /// File store I/O threads.
        io_threads: usize,
        /// Metadata fetch threads (metadata requests in flight).
        metadata_threads: usize,
        /// CPU decode threads (0 = cores).
        decode_threads: usize,
        /// Batch preparation threads (0 = a quarter of the cores, 1 to 4).
        prepare_threads: usize,
        /// Shards one sample may touch.
        max_shards_per_sample: usize,
        /// Array metadata (zarr.json or .zarray) cache slots.
        metadata_cache_capacity: usize,
        /// Shard index cache slots (0 = derived minimum).
        shard_index_cache_capacity: usize,
        /// Coalesced read cap.
        max_read_op_bytes: u64,
        /// Gap merged between ranges.
        merge_gap_bytes: u64,
        /// Largest decompressed chunk.
        max_chunk_decompressed_bytes: u64,
        /// Object-store options and request knobs.
        object_store: ObjectStoreConfig,
        /// Decoded-chunk cache bytes (0 = off).
        chunk_cache_bytes: u64,
        /// Decoded-chunk cache eviction policy.
        chunk_cache_policy: ChunkCachePolicy,
        /// GPUDirect Storage reads (CUDA engine).
        gds: Gds,
    }

    /// Validates and returns the configuration.
    ///
    /// # Errors
    /// Any [`Config::validate`] error.
    pub fn build(self) -> Result<Config> {
        self.cfg.validate()?;
        Ok(self.cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_for_every_batch_size() {
        for n in [1usize, 2, 3, 7, 32, 128, 1000, MAX_SAMPLES_PER_BATCH] {
            let cfg = Config::builder().sample_shape([8, 8]).samples_per_batch(n).build();
            assert!(cfg.is_ok(), "samples_per_batch {n}: {cfg:?}");
            let cfg = cfg.unwrap_or_default();
            assert_eq!(cfg.effective_shard_index_cache_capacity().ok(), Some((4 * n + 2 * n) * 64));
        }
    }

    /// Issue 18: automatic batch buffers: 8 for small batches on a device engine, 3
    /// otherwise, and a set count as set.
    #[test]
    fn automatic_batch_buffers_follow_the_engine_and_the_batch_size() {
        let make = |shape: [u64; 3], n: usize, dtype, buffers| {
            Config::builder()
                .sample_shape(shape)
                .samples_per_batch(n)
                .dtype(dtype)
                .batches_in_flight(buffers)
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        // `small-batch`: 128 x 32x64x64 f32, 64 MiB.
        let small = make([32, 64, 64], 128, OutDtype::F32, 0);
        assert!(small.small_batches());
        assert_eq!(small.effective_batches_in_flight(true), 8);
        assert_eq!(small.effective_batches_in_flight(false), 3);
        // `Native` counts the widest element (8 bytes): 128 MiB, still small; twice the
        // samples are not.
        assert!(make([32, 64, 64], 128, OutDtype::Native, 0).small_batches());
        let over = make([32, 64, 64], 256, OutDtype::Native, 0);
        assert!(!over.small_batches());
        assert_eq!(over.effective_batches_in_flight(true), 3);
        // `default`: 128 x 128^3 f32, 1 GiB.
        let big = make([128, 128, 128], 128, OutDtype::F32, 0);
        assert_eq!((big.effective_batches_in_flight(true), big.small_batches()), (3, false));
        for set in [1, 5, 64] {
            let c = make([32, 64, 64], 128, OutDtype::F32, set);
            assert_eq!(c.effective_batches_in_flight(true), set);
            assert_eq!(c.effective_batches_in_flight(false), set);
        }
        let e = Config::builder().sample_shape([4]).batches_in_flight(65).build().unwrap_err();
        assert!(matches!(e, Error::ConfigRange { knob: "batches_in_flight", value: 65, .. }));
    }

    /// Issue 18: under `Native`, the automatic plan size fills the buffer (sized for
    /// 8-byte elements) with batches of the arrays' own element, never more bytes than
    /// the buffer holds and never more than `MAX_BATCHES_PER_PLAN`; a set count, a set
    /// buffer count and the other output types plan what the engine plans.
    #[test]
    fn native_plans_fill_the_buffer_with_batches_of_their_element() {
        let make = |shape: [u64; 3], dtype, plan, buffers| {
            Config::builder()
                .sample_shape(shape)
                .samples_per_batch(128)
                .dtype(dtype)
                .batches_per_plan(plan)
                .batches_in_flight(buffers)
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        // `default` native: 2 GiB a batch at 8 bytes, so the engine plans 1.
        let native = make([128, 128, 128], OutDtype::Native, 0, 0);
        assert_eq!(native.effective_batches_per_plan(), 1);
        let of = |c: &Config, k, t| c.plan_batches_of(k, t);
        assert_eq!(of(&native, 1, Some(DataType::UInt16)), 4);
        assert_eq!(of(&native, 1, Some(DataType::UInt8)), 8);
        assert_eq!(of(&native, 1, Some(DataType::Float32)), 2);
        assert_eq!(of(&native, 1, Some(DataType::Float64)), 1);
        assert_eq!(of(&native, 1, None), 8, "not known yet: the most of any element");
        assert_eq!(of(&native, 3, Some(DataType::UInt16)), 12);
        assert_eq!(of(&native, 3, Some(DataType::UInt8)), 16, "at most 16");
        assert_eq!(of(&native, 16, Some(DataType::Float64)), 16);
        // Never more bytes than the buffer: engine batches of 8-byte elements.
        let dtypes = [DataType::Bool, DataType::UInt8, DataType::Int16, DataType::BFloat16]
            .into_iter()
            .chain([DataType::UInt32, DataType::Float32, DataType::Int64, DataType::Float64]);
        for t in dtypes {
            for k in 1..=16 {
                let n = of(&native, k, Some(t));
                assert!(n >= k && n <= 16 && n * t.size() <= k * 8, "{t:?} k={k}: {n}");
            }
        }
        // What the engine plans: a set count, a set buffer count, another output type.
        for c in [
            make([128, 128, 128], OutDtype::Native, 2, 0),
            make([128, 128, 128], OutDtype::Native, 0, 4),
            make([128, 128, 128], OutDtype::F32, 0, 0),
            make([128, 128, 128], OutDtype::Bf16, 0, 0),
        ] {
            assert_eq!(of(&c, 2, Some(DataType::UInt8)), 2, "{c:?}");
            assert_eq!(of(&c, 3, None), 3, "{c:?}");
        }
    }

    #[test]
    fn errors_name_the_knob_and_bound() {
        let e = Config::builder().samples_per_batch(4).build().unwrap_err();
        assert!(matches!(e, Error::ConfigValue { knob: "sample_shape", value: 0, .. }));
        let e = Config::builder().sample_shape([4, 0]).build().unwrap_err();
        assert!(matches!(e, Error::ConfigValue { knob: "sample_shape", value: 1, .. }));
        let e = Config::builder().sample_shape([4]).samples_per_batch(0).build().unwrap_err();
        assert!(matches!(
            e,
            Error::ConfigRange { knob: "samples_per_batch", value: 0, min: 1, max }
                if max == MAX_SAMPLES_PER_BATCH as u64
        ));
        assert!(e.to_string().contains("samples_per_batch"));
        let e = Config::builder()
            .sample_shape([4])
            .samples_per_batch(2)
            .shard_index_cache_capacity(10)
            .build()
            .unwrap_err();
        assert!(matches!(
            e,
            Error::Budget { knob: "shard_index_cache_capacity", needed: 768, limit: 10 }
        ));
        let e = Config::builder()
            .sample_shape([4])
            .samples_per_batch(8)
            .lookahead(3)
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::ConfigValue { knob: "lookahead", value: 3, .. }));
        let mut cfg = Config::builder().sample_shape([4]).build().unwrap();
        cfg.object_store.read_ahead_bytes = 0;
        let e = cfg.validate().unwrap_err();
        assert!(matches!(
            e,
            Error::ConfigValue { knob: "object_store.read_ahead_bytes", value: 0, .. }
        ));
    }

    #[test]
    fn json_and_toml_round_trip_and_reject_unknown_knobs() {
        let cfg = Config::builder()
            .sample_shape([16, 32])
            .samples_per_batch(4)
            .dtype(OutDtype::F16)
            .backend(Backend::Cuda { device: 1 })
            .on_error(OnError::Fill)
            .build()
            .unwrap();
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(Config::from_json(&json).unwrap(), cfg);
        let toml_text = toml::to_string(&cfg).unwrap();
        assert_eq!(Config::from_toml(&toml_text).unwrap(), cfg);
        let e = Config::from_json(r#"{"sample_shape":[4],"sampels_per_batch":3}"#).unwrap_err();
        assert!(matches!(e, Error::ConfigParse { format: "JSON", .. }));
        assert!(e.to_string().contains("sampels_per_batch"));
        let mut remote = cfg.clone();
        remote.object_store.max_in_flight = 7;
        remote
            .object_store
            .options
            .entry("s3".into())
            .or_default()
            .insert("aws_endpoint".into(), "http://127.0.0.1:1".into());
        let json = serde_json::to_string(&remote).unwrap();
        assert_eq!(Config::from_json(&json).unwrap(), remote);
        assert_eq!(Config::from_toml(&toml::to_string(&remote).unwrap()).unwrap(), remote);
        let e = Config::from_json(
            r#"{"sample_shape":[4],"object_store":{"options":{"s3":{"aws_endpoitn":"x"}}}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("aws_endpoitn"), "{e}");
        let partial = Config::from_toml("sample_shape = [2, 2]\nsamples_per_batch = 5\n").unwrap();
        assert_eq!(partial.samples_per_batch, 5);
        assert_eq!(partial.dtype, OutDtype::F32);
    }
}
