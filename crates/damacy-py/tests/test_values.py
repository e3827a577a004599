"""Host batches carry the values zarr-python wrote: every conformance crop, through
`numpy.from_dlpack`, bit for bit in the source dtype, and cast to float32."""

import numpy as np
import pytest

import damacy
from conftest import FIXTURES, host_config


def crops(manifest):
    for array in manifest["arrays"]:
        for crop in array["crops"]:
            yield array, crop


def read_one(path, lo, hi, dtype):
    """One crop through a pipeline of batch size 1: a copy of its tensor."""
    cfg = host_config(
        sample_shape=[h - l for l, h in zip(lo, hi)],
        samples_per_batch=1,
        dtype=dtype,
        max_shards_per_sample=4096,
    )
    with damacy.Pipeline(cfg) as p:
        p.push([damacy.Sample(str(path), (lo, hi))])
        p.finish()
        with p.pop() as batch:
            assert batch.shape == (1, *[h - l for l, h in zip(lo, hi)])
            got = np.from_dlpack(batch)[0].copy()
        assert p.pop() is None
    return got


# Arrays the pipeline refuses by design (README: a compressor around sharding_indexed),
# with what the refusal says.
REFUSED = {"shard_outer_zstd_crc_i16": "unsupported: codecs around sharding_indexed"}


def test_every_conformance_crop_equals_zarr_python_in_the_native_dtype(manifest):
    checked = 0
    for array, crop in crops(manifest):
        if array["name"] in REFUSED:
            with pytest.raises(damacy.SampleError, match=REFUSED[array["name"]]) as e:
                read_one(FIXTURES / array["path"], crop["lo"], crop["hi"], "native")
            assert e.value.index == 0 and e.value.uri == str(FIXTURES / array["path"])
            checked += 1
            continue
        ref = np.load(FIXTURES / crop["npy"])
        ref = ref.astype(ref.dtype.newbyteorder("="))
        got = read_one(FIXTURES / array["path"], crop["lo"], crop["hi"], "native")
        assert got.dtype == ref.dtype, array["name"]
        # Bit equality (NaN payloads included): compare the bytes.
        assert got.tobytes() == ref.tobytes(), (array["name"], crop["lo"], crop["hi"])
        checked += 1
    assert checked == sum(len(a["crops"]) for a in manifest["arrays"]) > 100


@pytest.mark.parametrize("name", ["zstd_u16", "zstd_checksum_i32"])
def test_f32_output_is_the_cast_of_the_source(manifest, name):
    array = next(a for a in manifest["arrays"] if a["name"] == name)
    for crop in array["crops"]:
        ref = np.load(FIXTURES / crop["npy"]).astype(np.float32)
        got = read_one(FIXTURES / array["path"], crop["lo"], crop["hi"], "f32")
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, ref)


def test_a_batch_stacks_its_samples_in_push_order(manifest):
    array = next(a for a in manifest["arrays"] if a["name"] == "zstd_u16")
    boxes = [((0, 0, 0), (4, 5, 6)), ((10, 20, 3), (14, 25, 9)), ((16, 28, 11), (20, 33, 17))]
    whole = np.load(FIXTURES / array["crops"][0]["npy"])  # crop 0 is the whole array
    assert whole.shape == tuple(array["shape"])
    cfg = host_config(sample_shape=[4, 5, 6], samples_per_batch=3, dtype="native")
    with damacy.Pipeline(cfg) as p:
        p.push(damacy.Sample(str(FIXTURES / array["path"]), b) for b in boxes)
        p.finish()
        batch = p.pop()
        assert batch.indices == (0, 1, 2)
        assert batch.dtype == "uint16" and batch.errors == []
        got = np.from_dlpack(batch)
        for i, (lo, hi) in enumerate(boxes):
            want = whole[tuple(slice(l, h) for l, h in zip(lo, hi))]
            np.testing.assert_array_equal(got[i], want)
        batch.release()
