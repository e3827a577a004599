"""Writes the OME-NGFF image fixtures in tests/data/ngff with ome-zarr-py.

Four images, each written by ome-zarr-py itself (never by hand), in OME-NGFF 0.4 (zarr
v2 group, `.zattrs`) and 0.5 (zarr v3 group, `zarr.json` `attributes.ome`):

- `v04/image3d.zarr`, `v05/image3d.zarr`: z, y, x (uint16) through `write_image` with a
  physical pixel size and units; ome-zarr-py builds the pyramid (y and x halved per
  level) and its coordinate transformations (scale, and the half-voxel translations of
  the pixel-centre convention).
- `v04/image5d.zarr`, `v05/image5d.zarr`: t, c, z, y, x (int16) through
  `write_multiscale` with a pyramid built here and explicit coordinate transformations
  whose translation is non-zero at every level.

Each has a `labels` group with one label image (`cells`). manifest.json lists every image
with the metadata written (levels: path, shape, dtype, chunks, scale, translation; axes;
labels) and crops of every level read back through zarr-python, saved as .npy; both
versions of an image hold the same values, so their crops share the .npy files.

Run through make_ngff_fixtures.sh (which pins the environment); argv[1] is this folder.
"""

import json
import os
import sys
import warnings

import numpy as np
import ome_zarr
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_image, write_labels, write_multiscale

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))
FORMATS = {"v04": (FormatV04(), 2), "v05": (FormatV05(), 3)}


def ramp(shape, dtype, seed):
    """Distinct slopes per axis plus seeded noise: a misplaced element shows."""
    rng = np.random.default_rng(seed)
    grids = np.indices(shape, dtype=np.int64)
    slopes = [7, 3, 11, 5, 13][: len(shape)]
    base = sum(s * g for s, g in zip(slopes, grids))
    return (base + rng.integers(0, 4, size=shape)).astype(dtype)


def blocks(shape, dtype):
    """A label image: a few constant blocks (labels compress to almost nothing)."""
    grids = np.indices(shape, dtype=np.int64)
    return (sum(g // 4 for g in grids[-3:]) % 4).astype(dtype)


def image3d(group, fmt):
    data = ramp((16, 32, 28), np.uint16, 1)
    write_image(
        data,
        group,
        scale_factors=[2, 4],
        axes="zyx",
        fmt=fmt,
        scale={"z": 2.0, "y": 0.5, "x": 0.5},
        axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
        storage_options=dict(chunks=(8, 16, 16)),
    )
    write_labels(
        blocks(data.shape, np.uint8),
        group,
        name="cells",
        scale_factors=[2, 4],
        axes="zyx",
        fmt=fmt,
        scale={"z": 2.0, "y": 0.5, "x": 0.5},
        storage_options=dict(chunks=(8, 16, 16)),
    )


# The 5-D pyramid: level i keeps every factor[i]-th voxel of z, y and x.
FACTORS_5D = [(1, 1, 1), (1, 2, 2), (2, 4, 4)]


def image5d(group, fmt):
    data = ramp((2, 2, 4, 16, 12), np.int16, 2)
    pyramid = [data[:, :, ::fz, ::fy, ::fx] for fz, fy, fx in FACTORS_5D]
    transforms = [
        [
            {"type": "scale", "scale": [30.0, 1.0, 0.8 * fz, 0.25 * fy, 0.25 * fx]},
            {
                "type": "translation",
                "translation": [-60.0, 0.0, 4.0 + 0.4 * (fz - 1), -1.5 + 0.125 * (fy - 1), 2.25 + 0.125 * (fx - 1)],
            },
        ]
        for fz, fy, fx in FACTORS_5D
    ]
    axes = [
        {"name": "t", "type": "time", "unit": "second"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    with warnings.catch_warnings():
        # coordinate_transformations is deprecated in favour of `scale`, which cannot
        # express a translation; the explicit form is the one under test here.
        warnings.simplefilter("ignore", DeprecationWarning)
        write_multiscale(
            pyramid,
            group,
            fmt=fmt,
            axes=axes,
            coordinate_transformations=transforms,
            storage_options=dict(chunks=(1, 2, 4, 8, 8)),
            name="tczyx",
        )
    write_labels(
        blocks((2, 1, 4, 16, 12), np.uint16),
        group,
        name="cells",
        scale_factors=[2, 4],
        axes="tczyx",
        fmt=fmt,
        storage_options=dict(chunks=(1, 1, 4, 16, 12)),
    )


def crops_of(shape):
    """The whole level, an interior box, and a one-voxel box at the far corner."""
    whole = ([0] * len(shape), list(shape))
    inner = ([s // 4 for s in shape], [max(s // 4 + 1, (3 * s) // 4) for s in shape])
    corner = ([s - 1 for s in shape], list(shape))
    return [whole, inner, corner]


def describe(path, version, name, npy_dir):
    """The manifest entry of one image: the metadata as written, and crops of each level."""
    group = zarr.open_group(path, mode="r")
    attrs = group.attrs.asdict()
    meta = attrs["ome"] if version == "v05" else attrs
    ms = meta["multiscales"][0]
    levels = []
    for i, ds in enumerate(ms["datasets"]):
        arr = zarr.open_array(os.path.join(path, ds["path"]), mode="r")
        values = arr[...]
        scale = next(t["scale"] for t in ds["coordinateTransformations"] if t["type"] == "scale")
        translation = next(
            (t["translation"] for t in ds["coordinateTransformations"] if t["type"] == "translation"),
            [0.0] * len(scale),
        )
        crops = []
        for k, (lo, hi) in enumerate(crops_of(arr.shape)):
            rel = f"npy/{name}/level{i}_crop{k}.npy"
            box = tuple(slice(l, h) for l, h in zip(lo, hi))
            target = os.path.join(ROOT, rel)
            if os.path.exists(target):
                # The other version wrote it: the writer must have produced the same values.
                assert np.array_equal(np.load(target), values[box]), f"{path} level {i} crop {k}"
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                np.save(target, values[box])
            crops.append({"lo": lo, "hi": hi, "npy": rel})
        levels.append(
            {
                "path": ds["path"],
                "shape": list(arr.shape),
                "dtype": str(arr.dtype),
                "chunks": list(arr.chunks),
                "scale": scale,
                "translation": translation,
                "crops": crops,
            }
        )
    labels_group = zarr.open_group(os.path.join(path, "labels"), mode="r").attrs.asdict()
    labels = (labels_group["ome"] if version == "v05" else labels_group)["labels"]
    return {
        "name": name,
        "version": "0.4" if version == "v04" else "0.5",
        "path": os.path.relpath(path, ROOT),
        "multiscale_name": ms.get("name"),
        "axes": ms["axes"],
        "levels": levels,
        "labels": labels,
    }


def main():
    manifest = {
        "generator": f"ome-zarr-py {ome_zarr.__version__}, zarr-python {zarr.__version__}, numpy {np.__version__}",
        "images": [],
    }
    for name, write in [("image3d", image3d), ("image5d", image5d)]:
        for version, (fmt, zarr_format) in FORMATS.items():
            path = os.path.join(ROOT, version, f"{name}.zarr")
            group = zarr.open_group(path, mode="w", zarr_format=zarr_format)
            write(group, fmt)
            manifest["images"].append(describe(path, version, name, ROOT))
    with open(os.path.join(ROOT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
