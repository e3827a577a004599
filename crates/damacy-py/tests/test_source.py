"""`push` consumes Python iterables lazily, with backpressure; a generator that raises
surfaces as `SourceError` after the batches of the samples before it."""

import itertools

import pytest

import damacy
from conftest import host_config


def test_a_generator_that_raises_surfaces_at_the_right_batch(smoke):
    samples = list(itertools.islice(smoke.samples(), 6))

    def gen():
        yield from samples
        raise ValueError("the source broke")

    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=4)
    with damacy.Pipeline(cfg) as p:
        p.push(gen())
        assert p.pop().indices == (0, 1, 2, 3)
        assert p.pop().indices == (4, 5)  # the samples before the failure, as a partial batch
        with pytest.raises(damacy.SourceError) as e:
            p.pop()
        assert e.value.index == 6
        assert isinstance(e.value.__cause__, ValueError)
        assert str(e.value.__cause__) == "the source broke"
        assert "sample 6" in str(e.value)


def test_an_item_that_is_not_a_sample_is_a_source_error(smoke):
    sample = next(iter(smoke.samples()))
    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=1)
    with damacy.Pipeline(cfg) as p:
        p.push([sample, "not a sample"])
        assert p.pop().indices == (0,)
        with pytest.raises(damacy.SourceError) as e:
            p.pop()
        assert e.value.index == 1
        assert isinstance(e.value.__cause__, TypeError)
        assert "expected damacy.Sample" in str(e.value.__cause__)


def test_an_infinite_generator_is_consumed_lazily(smoke):
    drawn = 0
    source = smoke.samples()

    def endless():
        nonlocal drawn
        while True:
            drawn += 1
            yield next(source)

    n, in_flight = 4, 2
    cfg = host_config(
        sample_shape=smoke.sample_shape, samples_per_batch=n, batches_in_flight=in_flight
    )
    with damacy.Pipeline(cfg) as p:
        p.push(endless())
        for i in range(5):
            batch = p.pop()
            assert batch.indices == tuple(range(i * n, (i + 1) * n))
            batch.release()
            # Bounded by what was popped plus the lookahead (4n), the batch being
            # gathered and the buffers being filled: never the whole (endless) source.
            assert drawn <= (i + 1) * n + 4 * n + n + in_flight * n + 2, drawn


def test_pushes_are_taken_in_order_and_plain_iterables_work(smoke):
    s = list(itertools.islice(smoke.samples(), 6))
    cfg = host_config(sample_shape=smoke.sample_shape, samples_per_batch=3)
    with damacy.Pipeline(cfg) as p:
        p.push(s[:2])
        p.push(tuple(s[2:4]))
        p.push(x for x in s[4:])
        p.finish()
        got = [b.indices for b in p]
    assert got == [(0, 1, 2), (3, 4, 5)]
