"""OME-NGFF images from Python: `damacy.Image` lists the levels, axes, scale, translation
and labels ome-zarr-py wrote (tests/data/ngff); `damacy.Sample(uri, box, level=...)`
reads each level's values as written; failures raise typed errors naming the file.

The 0.4 images' levels are zarr v2 arrays: their reads are in
`test_images_v04.py`."""

import json

import numpy as np
import pytest

import damacy
from conftest import FIXTURES, host_config

NGFF = (FIXTURES / "ngff").resolve()


def written(version):
    """The images of one version as the manifest records them."""
    m = json.loads((NGFF / "manifest.json").read_text())
    return [i for i in m["images"] if i["version"] == version]


def read(samples):
    """Samples of one shape as one batch: a copy of its tensor."""
    lo, hi = samples[0].lo, samples[0].hi
    cfg = host_config(
        sample_shape=[h - l for l, h in zip(lo, hi)],
        samples_per_batch=len(samples),
        dtype="native",
        max_shards_per_sample=4096,
    )
    with damacy.Pipeline(cfg) as p:
        p.push(samples)
        p.finish()
        with p.pop() as batch:
            got = np.from_dlpack(batch).copy()
        assert p.pop() is None
    return got


def check_every_level_crop(version):
    checked = 0
    for image in written(version):
        uri = str(NGFF / image["path"])
        for level, l in enumerate(image["levels"]):
            for crop in l["crops"]:
                s = damacy.Sample(uri, (crop["lo"], crop["hi"]), level=level)
                want = np.load(NGFF / crop["npy"])
                got = read([s])[0]
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want, err_msg=f"{uri} level {level}")
                checked += 1
    assert checked == 18


def check_listing(version):
    for w in written(version):
        image = damacy.Image(str(NGFF / w["path"]))
        assert image.version == version
        assert image.name == w["multiscale_name"]
        assert [(a.name, a.type, a.unit) for a in image.axes] == [
            (a["name"], a.get("type"), a.get("unit")) for a in w["axes"]
        ]
        assert len(image.levels) == len(w["levels"]) >= 3
        for i, (got, want) in enumerate(zip(image.levels, w["levels"])):
            assert got.index == i
            assert got.path == want["path"]
            assert got.uri == str(NGFF / w["path"] / want["path"])
            assert got.shape == tuple(want["shape"])
            assert np.dtype(got.dtype) == np.dtype(want["dtype"])
            assert got.chunks == tuple(want["chunks"])
            assert got.scale == tuple(want["scale"])
            assert got.translation == tuple(want["translation"])
        assert image.labels == w["labels"]
        assert image.label_uri("cells") == str(NGFF / w["path"] / "labels" / "cells")


def test_every_0_5_level_crop_equals_the_writers_values():
    check_every_level_crop("0.5")


def test_image_lists_what_ome_zarr_py_wrote_in_0_5():
    check_listing("0.5")


def test_a_sample_names_its_level_and_mixes_with_others_in_a_batch():
    image = damacy.Image(str(NGFF / "v05" / "image3d.zarr"))
    box = np.s_[2:10, 1:5, 3:7]
    samples = [image.sample(level, box) for level in range(3)]
    samples.append(damacy.Sample(image.uri, box))
    assert [s.level for s in samples] == [0, 1, 2, None]
    assert repr(samples[1]).endswith("level=1)")
    got = read(samples)
    whole = [np.load(NGFF / lv["crops"][0]["npy"]) for lv in written("0.5")[0]["levels"]]
    for i, level in enumerate([0, 1, 2, 0]):
        np.testing.assert_array_equal(got[i], whole[level][box], err_msg=f"sample {i}")


def test_a_physical_box_maps_to_each_levels_voxels():
    image = damacy.Image(str(NGFF / "v05" / "image3d.zarr"))
    fine, coarse = image.levels[0], image.levels[1]
    lo, hi = fine.physical_box(np.s_[4:12, 8:24, 4:20])
    assert (lo, hi) == ((7.0, 3.75, 1.75), (23.0, 11.75, 9.75))
    def bounds(box):
        return [(s.start, s.stop) for s in box]

    assert bounds(fine.voxel_box(lo, hi)) == [(4, 12), (8, 24), (4, 20)]
    box = coarse.voxel_box(lo, hi)
    assert bounds(box) == [(4, 12), (4, 12), (2, 10)]
    got = read([image.sample(1, box)])[0]
    whole = np.load(NGFF / written("0.5")[0]["levels"][1]["crops"][0]["npy"])
    np.testing.assert_array_equal(got, whole[box])
    with pytest.raises(damacy.ImageError) as e:
        image.levels[2].voxel_box([0.0, 0.0, 0.0], [1e4, 1.0, 1.0])
    assert (e.value.level, e.value.uri) == (2, image.uri)
    assert "outside the level's 0..16" in str(e.value)


def test_image_failures_raise_typed_errors_naming_the_file():
    uri = str(NGFF / "v05" / "image3d.zarr")
    with pytest.raises(damacy.SampleError) as e:
        read([damacy.Sample(uri, np.s_[0:1, 0:1, 0:1], level=3)])
    assert str(NGFF / "v05" / "image3d.zarr" / "zarr.json") in str(e.value)
    assert "the image has 3 levels (0..=2)" in str(e.value)
    assert e.value.uri == uri
    # 0.4 too: the level is checked against the metadata before any array is read.
    v04 = str(NGFF / "v04" / "image3d.zarr")
    with pytest.raises(damacy.SampleError, match=r"\.zattrs: level 9 does not exist"):
        read([damacy.Sample(v04, np.s_[0:1, 0:1, 0:1], level=9)])
    with pytest.raises(damacy.SampleError, match="is an array, not an image group"):
        read([damacy.Sample(uri + "/s0", np.s_[0:1, 0:1, 0:1], level=0)])
    with pytest.raises(damacy.ImageError, match="neither an array nor an OME-NGFF image") as e:
        damacy.Image(uri + "/labels")
    assert e.value.uri == uri + "/labels"
    with pytest.raises(damacy.ImageError, match="no image group here"):
        damacy.Image(str(NGFF / "nothing.zarr"))
    with pytest.raises(OverflowError):
        damacy.Sample(uri, np.s_[0:1, 0:1, 0:1], level=-1)
