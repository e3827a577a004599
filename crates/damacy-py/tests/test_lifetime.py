"""A tensor keeps its batch's buffer alive: after `release()` and after the batch object
is gone, the data stays correct until the tensor is dropped; only then is the buffer
reused (one buffer: `batches_in_flight=1`)."""

import gc
import itertools

import numpy as np
import pytest

import damacy
from conftest import host_config


def test_a_tensor_outlives_release_and_the_batch_then_the_slot_is_reused(smoke):
    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=4, batches_in_flight=1)
    with damacy.Pipeline(cfg) as p:
        p.push(itertools.islice(smoke.samples(), 8))
        p.finish()
        batch = p.pop()
        ptr = batch.data_ptr
        tensor = np.from_dlpack(batch)
        kept = tensor.copy()
        batch.release()
        del batch
        gc.collect()
        # The only buffer is still the tensor's: the next batch cannot be built.
        with pytest.raises(damacy.TimeoutError):
            p.pop(timeout=0.3)
        np.testing.assert_array_equal(tensor, kept)
        assert tensor.ctypes.data == ptr
        del tensor
        gc.collect()
        nxt = p.pop()  # the buffer came back: the same memory, the next samples
        assert nxt.data_ptr == ptr
        assert nxt.indices == (4, 5, 6, 7)
        assert not np.array_equal(np.from_dlpack(nxt), kept)
        nxt.release()
        assert p.pop() is None


def test_with_releases_on_exit_and_capsules_hold_the_buffer(smoke):
    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=4, batches_in_flight=1)
    with damacy.Pipeline(cfg) as p:
        p.push(itertools.islice(smoke.samples(), 12))
        p.finish()
        with p.pop() as batch:
            capsule = batch.__dlpack__(max_version=(1, 0))
        assert batch.released
        with pytest.raises(damacy.TimeoutError):
            p.pop(timeout=0.3)  # an unconsumed capsule holds the buffer too
        del capsule
        with p.pop() as batch:
            assert batch.indices == (4, 5, 6, 7)
        with p.pop() as batch:  # released by the `with` above, so this one is built
            assert batch.indices == (8, 9, 10, 11)
        assert p.pop() is None


def test_several_batches_may_be_held_up_to_batches_in_flight(smoke):
    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=2, batches_in_flight=3)
    with damacy.Pipeline(cfg) as p:
        p.push(itertools.islice(smoke.samples(), 8))
        p.finish()
        held = [p.pop() for _ in range(3)]
        assert len({b.data_ptr for b in held}) == 3
        arrays = [np.from_dlpack(b).copy() for b in held]
        with pytest.raises(damacy.TimeoutError):
            p.pop(timeout=0.3)
        held[0].release()
        last = p.pop()
        assert last.data_ptr == held[0].data_ptr and last.indices == (6, 7)
        for b, a in zip(held[1:], arrays[1:]):
            np.testing.assert_array_equal(np.from_dlpack(b), a)
