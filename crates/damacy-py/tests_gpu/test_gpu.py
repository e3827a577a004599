"""Device batches through DLPack: values equal the host engine's, stream fencing on the
consumer's stream, release on a stream delaying reuse, and the example's training loop."""

import itertools
import pathlib
import subprocess
import sys

import cupy
import numpy as np
import pytest
import torch

import damacy

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_3d_unet.py"


def config(data, backend, **knobs):
    return data.config(backend=backend, io_threads=4, **knobs)


def host_batches(data, count, **knobs):
    """The host engine's batches of the first `count` samples, as numpy copies."""
    with damacy.Pipeline(config(data, "host", **knobs)) as p:
        p.push(itertools.islice(data.samples(), count))
        p.finish()
        out = []
        for b in p:
            with b:
                # numpy has no bfloat16: `asarray` gives a bf16 batch's raw uint16 bits
                # (numpy.from_dlpack refuses kDLBfloat, as it should).
                out.append(np.asarray(b).copy())
        return out


@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16", "native"])
def test_device_batches_equal_the_host_engines(quickstart, dtype):
    n = quickstart.samples_per_batch * 3
    want = host_batches(quickstart, n, dtype=dtype)
    with damacy.Pipeline(config(quickstart, "cuda:0", dtype=dtype)) as p:
        assert p.device == "cuda:0" and p.backend.startswith("CUDA engine on device 0")
        p.push(itertools.islice(quickstart.samples(), n))
        p.finish()
        for i, batch in enumerate(p):
            assert batch.__dlpack_device__() == (2, 0)  # kDLCUDA
            t = torch.from_dlpack(batch)
            assert t.is_cuda and t.data_ptr() == batch.data_ptr
            assert tuple(t.shape) == batch.shape
            if dtype == "bf16":
                assert t.dtype == torch.bfloat16
            if batch.dtype in ("bfloat16", "uint16"):
                # numpy has no bfloat16, and torch's uint16 converts to numpy only lately.
                got = t.view(torch.int16).cpu().numpy().view(np.uint16)
            else:
                got = t.cpu().numpy()
            np.testing.assert_array_equal(got, want[i])
            batch.release(stream=torch.cuda.current_stream().cuda_stream or 1)
            del t


def test_cupy_and_versioned_capsules(smoke):
    want = host_batches(smoke, 4)
    with damacy.Pipeline(config(smoke, "cuda:0")) as p:
        p.push(itertools.islice(smoke.samples(), 4))
        p.finish()
        batch = p.pop()
        a = cupy.from_dlpack(batch)
        assert a.data.ptr == batch.data_ptr
        np.testing.assert_array_equal(cupy.asnumpy(a), want[0])
        # A CPU copy on request (dl_device=kDLCPU) for numpy.
        c = np.from_dlpack(batch, device="cpu")
        np.testing.assert_array_equal(c, want[0])
        batch.release()


def test_a_consumer_on_another_stream_waits_for_the_batch(quickstart):
    """The consumer's stream is busy with a long kernel, then reads the batch: it must see
    the finished batch (its stream waits on the ready event), and the host never blocks
    for the batch inside `__dlpack__`."""
    n = quickstart.samples_per_batch * 4
    want = host_batches(quickstart, n)
    side = torch.cuda.Stream()
    with damacy.Pipeline(config(quickstart, "cuda:0")) as p:
        p.push(itertools.islice(quickstart.samples(), n))
        p.finish()
        copies = []
        with torch.cuda.stream(side):
            for batch in p:
                torch.cuda._sleep(50_000_000)  # a long kernel queued first on `side`
                t = torch.from_dlpack(batch)  # torch passes `side`'s handle as stream
                copies.append(t.clone())  # queued on `side` after the wait
                batch.release(stream=side.cuda_stream)
                del t
        side.synchronize()
        for got, w in zip(copies, want):
            np.testing.assert_array_equal(got.cpu().numpy(), w)


def test_release_on_a_stream_delays_reuse(quickstart):
    """With one buffer, a batch released on a stream still busy (a long kernel, then a
    read of the batch) is reused only after that stream passed the release: the read
    sees batch 0, never batch 1's data."""
    n = quickstart.samples_per_batch * 2
    want = host_batches(quickstart, n)
    side = torch.cuda.Stream()
    with damacy.Pipeline(config(quickstart, "cuda:0", batches_in_flight=1)) as p:
        p.push(itertools.islice(quickstart.samples(), n))
        p.finish()
        first = p.pop()
        with torch.cuda.stream(side):
            t = torch.from_dlpack(first)
            torch.cuda._sleep(200_000_000)
            late = t.clone()  # reads the buffer only after the long kernel
            first.release(stream=side.cuda_stream)
            del t, first
        second = p.pop()  # its buffer is the same one: built after `side` passed
        s = torch.from_dlpack(second)
        np.testing.assert_array_equal(s.cpu().numpy(), want[1])
        side.synchronize()
        np.testing.assert_array_equal(late.cpu().numpy(), want[0])
        second.release()


def test_stream_arguments_follow_the_standard(smoke):
    with damacy.Pipeline(config(smoke, "cuda:0")) as p:
        p.push(itertools.islice(smoke.samples(), 4))
        p.finish()
        batch = p.pop()
        for stream in (None, 1, 2, -1, torch.cuda.Stream().cuda_stream):
            assert batch.__dlpack__(stream=stream) is not None
        with pytest.raises(ValueError, match="ambiguous"):
            batch.__dlpack__(stream=0)
        with pytest.raises(BufferError):
            batch.__dlpack__(dl_device=(1, 0), copy=False)
        batch.release()


def test_the_torch_dataset_yields_device_tensors(smoke):
    from damacy.torch import DamacyDataset

    want = host_batches(smoke, 8)
    ds = DamacyDataset(config(smoke, "auto"), lambda: itertools.islice(smoke.samples(), 8))
    got = [t.cpu().numpy() for t in ds]
    assert ds.backend.startswith("CUDA engine")
    assert len(got) == 2
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_the_torch_dataset_splits_samples_by_rank(smoke):
    from damacy.torch import DamacyDataset

    samples = list(itertools.islice(smoke.samples(), 16))
    cfg = config(smoke, "auto", samples_per_batch=2)
    per_rank = []
    for rank in range(2):
        ds = DamacyDataset(cfg, samples, rank=rank, world_size=2, local_rank=0)
        per_rank.append([t.cpu().numpy() for t in ds])
    with damacy.Pipeline(config(smoke, "host", samples_per_batch=1)) as p:
        p.push(samples)
        p.finish()
        each = [np.from_dlpack(b)[0].copy() for b in p]
    for rank in range(2):
        mine = each[rank::2]
        flat = [s for batch in per_rank[rank] for s in batch]
        assert len(flat) == len(mine) == 8
        for g, w in zip(flat, mine):
            np.testing.assert_array_equal(g, w)


def test_the_example_trains_100_steps():
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--steps", "100", "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "done: 100 steps" in out.stdout
    assert "CUDA engine" in out.stdout
