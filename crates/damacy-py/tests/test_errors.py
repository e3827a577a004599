"""Every exception type, with its fields: the `damacy.Error` hierarchy mirrors the Rust
error kinds."""

import itertools
import pathlib
import shutil
import subprocess
import sys

import pytest

import damacy
from conftest import host_config


def test_the_hierarchy():
    for cls in (
        damacy.ConfigError,
        damacy.BudgetError,
        damacy.SampleError,
        damacy.StoreError,
        damacy.GpuError,
        damacy.SourceError,
        damacy.ClosedError,
        damacy.TimeoutError,
        damacy.InternalError,
        damacy.DlpackError,
    ):
        assert issubclass(cls, damacy.Error) and cls.__module__ == "damacy"
    assert issubclass(damacy.Error, Exception)


def test_config_error_names_the_knob_and_its_bound():
    with pytest.raises(damacy.ConfigError) as e:
        damacy.Config(sample_shape=[4], samples_per_batch=0)
    assert (e.value.knob, e.value.value, e.value.min, e.value.max) == ("samples_per_batch", 0, 1, 65536)
    assert "samples_per_batch" in str(e.value) and "1..=65536" in str(e.value)

    with pytest.raises(damacy.ConfigError) as e:
        damacy.Config(sample_shape=[4, 0])
    assert (e.value.knob, e.value.value) == ("sample_shape", 1)
    assert "non-zero" in e.value.expected

    with pytest.raises(damacy.ConfigError) as e:
        damacy.Config(sample_shape=[4], samples_per_bach=3)
    assert e.value.knob == "samples_per_bach" and "unknown knob" in str(e.value)

    with pytest.raises(damacy.ConfigError) as e:
        damacy.Config(sample_shape=[4], io_threads=-1)
    assert e.value.knob == "io_threads"

    with pytest.raises(damacy.ConfigError) as e:
        damacy.Config(sample_shape=[4], backend="tpu")
    assert e.value.knob == "backend"

    with pytest.raises(damacy.ConfigError) as e:
        damacy.Config.from_json('{"sample_shape": [4], "lookahead": 2, "samples_per_batch": 3}')
    assert (e.value.knob, e.value.value) == ("lookahead", 2)


def test_budget_error_names_the_knob_needed_and_limit():
    with pytest.raises(damacy.BudgetError) as e:
        damacy.Config(sample_shape=[4], samples_per_batch=2, shard_index_cache_capacity=10)
    assert (e.value.knob, e.value.needed, e.value.limit) == ("shard_index_cache_capacity", 768, 10)
    assert not isinstance(e.value, damacy.ConfigError)


def test_sample_error_for_a_missing_array_names_index_and_uri(smoke, tmp_path):
    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=2)
    good = list(itertools.islice(smoke.samples(), 3))
    missing = str(tmp_path / "nope.zarr")
    with damacy.Pipeline(cfg) as p:
        p.push(good[:2] + [good[2], damacy.Sample(missing, ((0, 0, 0), (16, 16, 16)))])
        p.finish()
        assert p.pop().indices == (0, 1)
        with pytest.raises(damacy.SampleError) as e:
            p.pop()
        assert (e.value.index, e.value.uri, e.value.chunk) == (3, missing, None)
        assert "zarr.json" in str(e.value)
        assert p.pop() is None  # the pipeline went on after the failed batch


def test_sample_error_for_a_corrupt_chunk_names_the_chunk(smoke, tmp_path):
    # A copy of one array whose first shard's leading bytes (its first chunk's zstd frame;
    # the index is at the end) are overwritten.
    src = pathlib.Path(smoke.arrays[0][0])
    dst = tmp_path / "corrupt.zarr"
    shutil.copytree(src, dst)
    shard = dst / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[0:8] = b"\xff" * 8
    shard.write_bytes(bytes(data))
    cfg = host_config(sample_shape=[16, 16, 16], samples_per_batch=1)
    with damacy.Pipeline(cfg) as p:
        p.push([damacy.Sample(str(dst), np_s(0, 16))])
        p.finish()
        with pytest.raises(damacy.SampleError) as e:
            p.pop()
    assert (e.value.index, e.value.uri, e.value.chunk) == (0, str(dst), (0, 0, 0))


def np_s(lo, hi):
    return (slice(lo, hi), slice(lo, hi), slice(lo, hi))


def test_sample_error_for_an_invalid_box():
    with pytest.raises(damacy.SampleError) as e:
        damacy.Sample("/data/a.zarr", ((4, 0), (4, 8)))
    assert (e.value.index, e.value.uri, e.value.chunk) == (None, "/data/a.zarr", None)
    with pytest.raises(damacy.SampleError, match="step"):
        damacy.Sample("/data/a.zarr", np_s(0, 8)[:2] + (slice(0, 8, 2),))
    with pytest.raises(damacy.SampleError, match="start and stop"):
        damacy.Sample("/data/a.zarr", (slice(None, 8),))
    with pytest.raises(damacy.SampleError, match="tuple of slices"):
        damacy.Sample("/data/a.zarr", 3)


def test_gpu_error_when_cuda_is_asked_for_without_it():
    cfg = damacy.Config(sample_shape=[4], backend="cuda:0")
    if damacy.CUDA_BUILT:
        pytest.fail("the CPU suite runs a build without the cuda feature")
    with pytest.raises(damacy.GpuError, match="no CUDA engine"):
        damacy.Pipeline(cfg)


def test_closed_and_timeout_errors():
    p = damacy.Pipeline(host_config(sample_shape=[4]))
    with pytest.raises(damacy.TimeoutError, match="within"):
        p.pop(timeout=0.05)
    p.close()
    assert p.closed
    with pytest.raises(damacy.ClosedError):
        p.push([])
    with pytest.raises(damacy.ClosedError):
        p.pop()
    p.close()  # idempotent


def test_a_panic_of_a_pipeline_thread_is_an_internal_error_not_an_abort(smoke):
    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=2)
    with damacy.Pipeline(cfg) as p:
        p._inject_fault("coordinator_panic", 1)
        p.push(itertools.islice(smoke.samples(), 4))
        p.finish()
        with pytest.raises(damacy.InternalError, match="damacy-coordinator"):
            p.pop()
        with pytest.raises(damacy.InternalError):
            p.pop()  # and at every later pop


STORE_CHILD = """
import resource, damacy
def vm():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
cfg = damacy.Config(sample_shape=[4], backend="host", io_threads=1024, decode_threads=1)
limit = vm() + (64 << 20)  # room for a few dozen thread stacks, not 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    damacy.Pipeline(cfg)
    print("no error")
except damacy.Error as e:
    print(type(e).__name__, e)
"""


def test_store_error_when_the_store_cannot_start_its_threads():
    # The store's I/O threads are the first a pipeline starts: with the address space
    # capped (in a child process) they cannot all get a stack.
    out = subprocess.run(
        [sys.executable, "-c", STORE_CHILD], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("StoreError store: could not start I/O thread"), out.stdout
