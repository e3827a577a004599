"""`damacy.torch` without torch installed (CI installs no torch): a minimal stand-in
module provides the few names the adapter uses, so its rank split, its pipeline per
iteration and its release of host batches are tested here; the GPU suite runs it on real
torch."""

import importlib
import itertools
import sys
import types

import numpy as np
import pytest

import damacy
from conftest import host_config


class FakeTensor(np.ndarray):
    is_cuda = False


def fake_torch(rank=None, world=None):
    torch = types.ModuleType("torch")
    torch.from_dlpack = lambda x: np.from_dlpack(x).view(FakeTensor)
    dist = types.SimpleNamespace(
        is_available=lambda: True,
        is_initialized=lambda: rank is not None,
        get_rank=lambda: rank,
        get_world_size=lambda: world,
    )
    torch.distributed = dist
    torch.cuda = types.SimpleNamespace(is_available=lambda: False)
    utils = types.ModuleType("torch.utils")
    data = types.ModuleType("torch.utils.data")
    data.IterableDataset = type("IterableDataset", (), {"__init__": lambda self: None})
    data.get_worker_info = lambda: None
    utils.data = data
    torch.utils = utils
    return {"torch": torch, "torch.utils": utils, "torch.utils.data": data}


@pytest.fixture
def adapter(monkeypatch):
    def load(**kw):
        for name, mod in fake_torch(**kw).items():
            monkeypatch.setitem(sys.modules, name, mod)
        monkeypatch.delitem(sys.modules, "damacy.torch", raising=False)
        return importlib.import_module("damacy.torch")

    yield load
    sys.modules.pop("damacy.torch", None)


def test_each_rank_reads_every_world_size_th_sample(adapter, smoke):
    samples = list(itertools.islice(smoke.samples(), 12))
    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=2)
    with damacy.Pipeline(host_config(sample_shape=smoke.sample_shape, samples_per_batch=1)) as p:
        p.push(samples)
        p.finish()
        each = [np.from_dlpack(b)[0].copy() for b in p]
    for rank in range(3):
        dt = adapter(rank=rank, world=3)
        ds = dt.DamacyDataset(cfg, lambda: iter(samples))
        assert (ds.rank, ds.world_size) == (rank, 3)
        for epoch in range(2):  # a callable source gives each epoch its own stream
            got = [np.asarray(t) for t in ds]
            assert [g.shape[0] for g in got] == [2, 2]
            flat = [s for g in got for s in g]
            for g, w in zip(flat, each[rank::3], strict=True):
                np.testing.assert_array_equal(g, w)
        assert ds.backend == "host engine"


def test_environment_ranks_and_a_tensor_outliving_its_batch(adapter, smoke, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    dt = adapter()
    assert dt.rank_and_world() == (1, 2, 1)
    samples = list(itertools.islice(smoke.samples(), 8))
    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=2, batches_in_flight=2)
    ds = dt.DamacyDataset(cfg, samples)
    # Both batches' tensors are kept after the dataset released the batches (and closed
    # its pipeline): each keeps its buffer, up to batches_in_flight of them.
    kept = list(ds)
    assert len(kept) == 2
    with damacy.Pipeline(host_config(sample_shape=smoke.sample_shape, samples_per_batch=2)) as p:
        p.push(samples[1::2])
        p.finish()
        for t, b in zip(kept, p, strict=True):
            np.testing.assert_array_equal(np.asarray(t), np.from_dlpack(b))
    with pytest.raises(ValueError, match="outside world_size"):
        dt.DamacyDataset(cfg, samples, rank=2, world_size=2)
