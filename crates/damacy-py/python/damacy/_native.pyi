"""Type stubs of the native module `damacy._native` (PyO3)."""

from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal

CUDA_BUILT: bool

class Error(Exception):
    """The base of every error damacy raises."""

class ConfigError(Error):
    """A configuration knob is invalid."""

    knob: str | None
    value: int
    min: int
    max: int
    expected: str

class BudgetError(Error):
    """A resource budget is too small."""

    knob: str
    needed: int
    limit: int

class SampleError(Error):
    """A sample could not be read or is invalid."""

    index: int | None
    uri: str
    chunk: tuple[int, ...] | None

class StoreError(Error):
    """The byte store could not be set up."""

class GpuError(Error):
    """A CUDA failure, or a CUDA backend that cannot run here (also a batch planned with
    an earlier one whose device work the engine failed: that batch's error names the
    cause)."""

class SourceError(Error):
    """The iterable given to `push` raised while producing sample `index`."""

    index: int

class ClosedError(Error):
    """The pipeline is closed."""

class TimeoutError(Error):
    """`pop(timeout=...)` found no batch ready in time."""

class InternalError(Error):
    """A thread of the pipeline panicked, or the machine refused a thread."""

class DlpackError(Error):
    """A batch cannot be exported as asked."""

class ImageError(Error):
    """An OME-NGFF image group could not be opened, or a physical box does not map into a
    level."""

    uri: str
    level: int | None

Knob = int | str | Sequence[int] | dict[str, Any]

class Config:
    """A validated pipeline configuration: every knob of the Rust `Config`."""

    sample_shape: list[int]
    samples_per_batch: int
    dtype: Literal["f32", "bf16", "f16", "native"]
    backend: dict[str, Any]
    on_error: Literal["fail", "fill"]
    max_gpu_memory_bytes: int
    max_pinned_host_bytes: int
    gpu_wave_slots: int
    """CUDA engine: waves in flight at once, each decoding on its own stream (2 to 16;
    0 = 8 for batches of at most 128 MiB with the automatic 8 batch buffers, else 3,
    where the memory budgets allow, else fewer)."""
    lookahead: int
    batches_in_flight: int
    """Batch buffers, held by the caller or being filled (1 to 64; 0 = on the CUDA engine
    8 for batches of at most 128 MiB where the budgets allow, else 3; 3 on the host
    engine). `Pipeline.stats()["batches_in_flight"]` reports the count in use."""
    batches_per_plan: int
    """Batches planned, read and decoded as one (1 to 16; chunks they share are decoded
    once, on the CUDA engine in larger nvCOMP calls), each still popped on its own, in
    order, with the outcome it gets planned alone; their buffer goes back once all of
    them are released. 0 = as many as fill about 3 GiB of batch buffer when
    `batches_in_flight` is 0 (on the CUDA engine where its budgets allow), else 1;
    with ``dtype="native"`` (buffers sized for 8-byte elements) as many as the buffer
    holds of the arrays' own type (a ``uint16`` plan 4 times the count).
    `Pipeline.stats()["batches_per_plan"]` reports the count in use."""
    io_threads: int
    metadata_threads: int
    decode_threads: int
    prepare_threads: int
    """Threads preparing batches (planning, cache probes), each a whole batch; batches stay
    in push order (0 = a quarter of the cores, 1 to 4)."""
    max_shards_per_sample: int
    metadata_cache_capacity: int
    shard_index_cache_capacity: int
    max_read_op_bytes: int
    merge_gap_bytes: int
    max_chunk_decompressed_bytes: int
    object_store: dict[str, Any]
    """Object-store options and request knobs: `options` (per scheme), `max_in_flight`,
    `max_part_bytes`, `min_part_bytes`, `merge_gap_bytes`, `max_retries`,
    `request_timeout_ms`, `connect_timeout_ms`, `retry_timeout_ms`, `runtime_threads`,
    `read_ahead_bytes`."""
    chunk_cache_bytes: int
    """Decoded-chunk cache: host memory for the host engine, device memory (inside
    max_gpu_memory_bytes) for the CUDA engine; 0 = off."""
    chunk_cache_policy: Literal["lru", "clock"]
    gds: Literal["off", "auto", "on"]
    """CUDA engine: read zstd chunks of local files with GPUDirect Storage straight into
    device memory (auto: where nvidia-fs serves the file system natively; on: cuFile's
    compat mode too, refused by the host engine)."""
    def __init__(self, **knobs: Knob) -> None: ...
    @staticmethod
    def from_dict(d: dict[str, Knob]) -> Config: ...
    @staticmethod
    def from_json(text: str) -> Config: ...
    @staticmethod
    def from_toml(text: str) -> Config: ...
    def to_dict(self) -> dict[str, Any]: ...
    def to_json(self) -> str: ...

Box = slice | tuple[slice, ...] | tuple[Sequence[int], Sequence[int]]

class Sample:
    """One crop: an array's absolute path and a half-open box in its axis order; or an
    OME-NGFF image group's path, a box in a level's voxels and the level (default 0)."""

    def __init__(self, uri: str | Any, box: Box, level: int | None = None) -> None: ...
    @property
    def uri(self) -> str: ...
    @property
    def level(self) -> int | None: ...
    @property
    def lo(self) -> tuple[int, ...]: ...
    @property
    def hi(self) -> tuple[int, ...]: ...
    @property
    def box(self) -> tuple[slice, ...]: ...

class Axis:
    """One axis of an image: its name, type and unit (None when not given)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str | None: ...
    @property
    def unit(self) -> str | None: ...

class ImageLevel:
    """One resolution level of an image: a zarr array and its voxel -> physical mapping
    (voxel centres at `index * scale + translation`)."""

    @property
    def index(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def uri(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def chunks(self) -> tuple[int, ...]: ...
    @property
    def shard_shape(self) -> tuple[int, ...] | None: ...
    @property
    def scale(self) -> tuple[float, ...]: ...
    @property
    def translation(self) -> tuple[float, ...]: ...
    def voxel_box(self, lo: Sequence[float], hi: Sequence[float]) -> tuple[slice, ...]: ...
    def physical_box(self, box: Box) -> tuple[tuple[float, ...], tuple[float, ...]]: ...

class Image:
    """An OME-NGFF image group (0.4 or 0.5): its levels, axes and labels."""

    def __init__(self, uri: str | Any, config: Config | None = None) -> None: ...
    @property
    def uri(self) -> str: ...
    @property
    def version(self) -> Literal["0.4", "0.5"]: ...
    @property
    def name(self) -> str | None: ...
    @property
    def metadata_file(self) -> str: ...
    @property
    def axes(self) -> list[Axis]: ...
    @property
    def levels(self) -> list[ImageLevel]: ...
    @property
    def labels(self) -> list[str]: ...
    def label_uri(self, name: str) -> str: ...
    def sample(self, level: int, box: Box) -> Sample: ...

class Batch:
    """A `[n, *sample_shape]` row-major batch in host or device memory."""

    def __dlpack__(
        self,
        *,
        stream: int | None = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any:  # a PyCapsule (`dltensor` or `dltensor_versioned`)
        ...
    def __dlpack_device__(self) -> tuple[int, int]: ...
    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Any: ...
    def release(self, stream: int | None = None) -> None: ...
    def __enter__(self) -> Batch: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    def __len__(self) -> int: ...
    @property
    def released(self) -> bool: ...
    @property
    def id(self) -> int: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def indices(self) -> tuple[int, ...]: ...
    @property
    def errors(self) -> list[tuple[int, str, str]]: ...
    @property
    def data_ptr(self) -> int: ...
    @property
    def device(self) -> str: ...

class Pipeline:
    """Streams batches of crops, in push order."""

    def __init__(self, config: Config | None = None, **knobs: Knob) -> None: ...
    def push(self, samples: Iterable[Sample]) -> None: ...
    def finish(self) -> None: ...
    def pop(self, timeout: float | None = None) -> Batch | None: ...
    def __iter__(self) -> Iterator[Batch]: ...
    def __next__(self) -> Batch: ...
    def __enter__(self) -> Pipeline: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def stats(self) -> dict[str, Any]:
        """The Rust `Stats` as a dict: counters (int), and `chunk_cache`, a dict of the
        decoded-chunk cache's counters (`capacity_bytes`, `hits`, `misses`, `inserts`,
        `evictions`, `rejected`, `joined`, `abandoned`, `bytes`, `entries`)."""
    def reset_stats(self) -> None: ...
    def start_trace(self) -> None:
        """Starts recording a timeline of the pipeline's threads (each one's steps per
        batch: `feed`, `prepare`, `dispatch`, `pop`, and on the CUDA engine `acquire`, `reads`,
        `wave`, `end`, `wave done`, `ready`, `settle`, `release`), from an empty one."""
    def take_trace(self) -> str:
        """Stops recording; the timeline as Chrome trace-event JSON (open it in Perfetto
        or chrome://tracing). Empty (no events) if no trace was started."""
    @property
    def backend(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def config(self) -> Config: ...

class SampleStream(Iterator[Sample]):
    """A scenario's infinite, deterministic crop sequence."""

    def __next__(self) -> Sample: ...

class Dataset:
    """A generated scenario dataset."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def arrays(self) -> list[tuple[str, list[int]]]: ...
    @property
    def sample_shape(self) -> list[int]: ...
    @property
    def samples_per_batch(self) -> int: ...
    def report(self) -> dict[str, Any]: ...
    def samples(self) -> SampleStream: ...
    def config(self, **knobs: Knob) -> Config: ...

def gen_scenario(name: str, path: str | Any, threads: int = 0) -> Dataset: ...
