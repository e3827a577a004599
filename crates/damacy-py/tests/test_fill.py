"""`on_error="fill"`: a failing sample is filled and listed in `batch.errors` as
`(index, uri, message)`; the other samples carry their data."""

import itertools

import numpy as np

import damacy
from conftest import host_config


def test_a_filled_sample_is_listed_with_index_uri_and_message(smoke, tmp_path):
    good = list(itertools.islice(smoke.samples(), 3))
    missing = str(tmp_path / "missing.zarr")
    pushed = [good[0], damacy.Sample(missing, ((0, 0, 0), (16, 16, 16))), good[1], good[2]]
    with damacy.Pipeline(host_config(sample_shape=[16, 16, 16], samples_per_batch=1)) as p:
        p.push(good)
        p.finish()
        want = [np.from_dlpack(b)[0].copy() for b in p]
    cfg = host_config(sample_shape=[16, 16, 16], samples_per_batch=4, on_error="fill")
    with damacy.Pipeline(cfg) as p:
        p.push(pushed)
        p.finish()
        with p.pop() as batch:
            assert batch.indices == (0, 1, 2, 3)
            [(index, uri, message)] = batch.errors
            assert (index, uri) == (1, missing)
            assert "array not found" in message and "zarr.json" in message
            got = np.from_dlpack(batch)
            np.testing.assert_array_equal(got[1], 0)  # no array, no fill value: zeros
            for g, w in zip(got[[0, 2, 3]], want, strict=True):
                np.testing.assert_array_equal(g, w)
        assert p.pop() is None
