"""Config and Sample: construction, round trips, box forms; gen_scenario; stats and
backend."""

import itertools
import json

import numpy as np
import pytest

import damacy
from conftest import host_config


def test_config_round_trips_and_matches_the_rust_defaults():
    cfg = damacy.Config(sample_shape=(8, 16), samples_per_batch=3, dtype="bf16", on_error="fill")
    d = cfg.to_dict()
    assert d["sample_shape"] == [8, 16] and d["samples_per_batch"] == 3
    assert d["dtype"] == "bf16" and d["on_error"] == "fill"
    # The Rust defaults (0 buffers: chosen by engine and batch size).
    assert d["batches_in_flight"] == 0 and d["io_threads"] == 8
    assert d["backend"] == {"kind": "auto"}
    assert cfg.samples_per_batch == 3 and cfg.dtype == "bf16"
    assert damacy.Config.from_dict(d) == cfg
    assert damacy.Config.from_json(cfg.to_json()) == cfg
    toml = 'sample_shape = [8, 16]\nsamples_per_batch = 3\ndtype = "bf16"\non_error = "fill"\n'
    assert damacy.Config.from_toml(toml) == cfg
    assert damacy.Config(sample_shape=[4], backend="cuda:1").backend == {"kind": "cuda", "device": 1}
    assert damacy.Config(sample_shape=[4], backend="host").backend == {"kind": "host"}
    assert eval(repr(cfg), {"damacy": damacy}) == cfg
    # numpy integers are integers; other objects are not knob values.
    shape = np.array([8, 16])
    assert damacy.Config(sample_shape=list(shape), samples_per_batch=np.int64(3)).sample_shape == [8, 16]
    with pytest.raises(damacy.ConfigError, match="not plain data"):
        damacy.Config(sample_shape=[4], lookahead=object())


def test_batches_per_plan_knob():
    cfg = host_config(sample_shape=[4], batches_per_plan=4)
    assert cfg.batches_per_plan == 4
    with pytest.raises(damacy.ConfigError, match="batches_per_plan"):
        damacy.Config(sample_shape=[4], batches_per_plan=17)


def test_gds_and_prepare_threads_knobs():
    cfg = host_config(sample_shape=[4], gds="off", prepare_threads=3)
    assert cfg.gds == "off" and cfg.prepare_threads == 3
    assert damacy.Config(sample_shape=[4]).gds == "auto"
    # GPUDirect Storage needs the CUDA engine: the host engine refuses `on`, naming the knob.
    with pytest.raises(damacy.GpuError, match="gds = on"):
        damacy.Pipeline(host_config(sample_shape=[4], gds="on"))
    with pytest.raises(damacy.ConfigError, match="prepare_threads"):
        damacy.Config(sample_shape=[4], prepare_threads=65)


def test_sample_boxes():
    a = damacy.Sample("/d/a.zarr", np.s_[0:16, 4:20, 8:24])
    b = damacy.Sample("/d/x/../a.zarr", ((0, 4, 8), [16, 20, 24]))
    assert a == b and a.uri == "/d/a.zarr"
    assert a.lo == (0, 4, 8) and a.hi == (16, 20, 24)
    assert a.box == (slice(0, 16, 1), slice(4, 20, 1), slice(8, 24, 1))
    assert damacy.Sample("/d/r1.zarr", np.s_[3:9]).hi == (9,)
    assert "np.s_[0:16, 4:20, 8:24]" in repr(a)


def test_gen_scenario_and_its_sample_stream(smoke, tmp_path):
    assert smoke.name == "smoke" and smoke.sample_shape == [16, 16, 16]
    assert smoke.samples_per_batch == 4
    assert [shape for _, shape in smoke.arrays] == [[64, 64, 64], [64, 64, 64]]
    report = smoke.report()
    assert report["arrays"] == 2 and report["scenario"] == "smoke"
    first = list(itertools.islice(smoke.samples(), 5))
    assert first == list(itertools.islice(smoke.samples(), 5))  # deterministic
    assert all(s.uri in [a for a, _ in smoke.arrays] for s in first)
    again = damacy.gen_scenario("smoke", smoke.path)
    assert again.report()["cached"] is True


def test_a_trace_records_each_batchs_steps(smoke):
    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=4)
    with damacy.Pipeline(cfg) as p:
        assert json.loads(p.take_trace())["traceEvents"] == []
        p.start_trace()
        p.push(itertools.islice(smoke.samples(), 8))
        p.finish()
        for b in p:
            b.release()
        doc = json.loads(p.take_trace())
        spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
        assert {"prepare", "dispatch", "pop"} <= {e["cat"] for e in spans}
        assert {e["args"]["batch"] for e in spans if e["cat"] == "prepare"} == {0, 1}
        assert all(e["dur"] >= 0 for e in spans)
        assert json.loads(p.take_trace())["traceEvents"] == []


def test_stats_and_backend(smoke):
    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=4)
    with damacy.Pipeline(cfg) as p:
        assert p.backend == "host engine" and p.device == "cpu"
        assert p.config == cfg
        p.push(itertools.islice(smoke.samples(), 8))
        p.finish()
        for b in p:
            b.release()
        s = p.stats()
        assert s["batches"] == 2 and s["samples"] == 8
        assert s["voxels_delivered"] == 8 * 16**3
        assert s["bytes_delivered"] == 8 * 16**3 * 4
        assert s["read_amplification"] > 0
        p.reset_stats()
        assert p.stats()["batches"] == 0
    auto = damacy.Pipeline(damacy.Config(sample_shape=[4], io_threads=1, decode_threads=1))
    assert auto.backend.startswith("host engine (Auto: ") and "no CUDA engine" in auto.backend
    auto.close()


def test_object_store_options_reach_the_rust_config():
    """Issue 16's per-scheme options and request knobs, set from Python, are the Rust
    configuration's (a nested dict, as in JSON and TOML)."""
    opts = {"s3": {"aws_endpoint": "http://127.0.0.1:9000", "aws_allow_http": "true"}}
    knobs = {"options": opts, "max_in_flight": 16, "read_ahead_bytes": 1 << 20}
    cfg = damacy.Config(sample_shape=[4], object_store=knobs)
    got = json.loads(cfg.to_json())["object_store"]
    assert got["options"] == opts
    assert got["max_in_flight"] == 16
    assert got["read_ahead_bytes"] == 1 << 20
    assert cfg.object_store["max_in_flight"] == 16
    assert damacy.Config.from_json(cfg.to_json()) == cfg


def test_the_decoded_chunk_cache_serves_later_epochs_with_the_same_values(smoke):
    epoch = list(itertools.islice(smoke.samples(), 40))

    def run(epochs, **knobs):
        cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=4, **knobs)
        out = []
        with damacy.Pipeline(cfg) as p:
            for _ in range(epochs):
                p.reset_stats()
                p.push(epoch)
                out.append([np.array(p.pop()).copy() for _ in range(10)])
            return out, p.stats()

    (plain,), s0 = run(1)
    assert s0["chunk_cache"]["capacity_bytes"] == 0
    epochs, s = run(3, chunk_cache_bytes=4 << 20, chunk_cache_policy="lru")
    assert host_config(sample_shape=[4], chunk_cache_policy="clock").chunk_cache_policy == "clock"
    for e in epochs:
        for got, want in zip(e, plain):
            np.testing.assert_array_equal(got, want)
    # The third epoch's chunks were all decoded in earlier epochs.
    c = s["chunk_cache"]
    assert c["misses"] == 0 and c["hits"] > 0 and s["chunks_decoded"] == 0, c
    assert c["capacity_bytes"] == 4 << 20 and 0 < c["bytes"] <= 4 << 20
