"""Writes the zarr conformance fixtures in tests/data with zarr-python 3.x: zarr v3
arrays, and zarr v2 arrays (`zarr_format=2`, numcodecs compressors) whose names start
with `v2_`.

Every array is written by zarr-python itself (never by hand), read back through
zarr-python, and its reference crops are saved as .npy files. manifest.json lists each
array with its dtype, shape, a codec summary and the crops ({lo, hi, npy}), so the Rust
tests can compare value for value. The data are ramps plus seeded noise so a misplaced
element or a byte-order slip shows up as a wrong value rather than a lucky match.

Run through make_fixtures.sh (which pins the environment); argv[1] is tests/data.
Reruns reproduce every file byte for byte except gzip streams, whose header records the
time of writing (the decoded values are identical).
"""

import json
import os
import shutil
import sys

import numcodecs
import numpy as np
import zarr
from numcodecs import BZ2, GZip, LZ4, Blosc, Delta, Zlib, Zstd
from numcodecs.zarr3 import LZ4 as NumcodecsLZ4
from numcodecs.zarr3 import Zlib as NumcodecsZlib
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    ShardingCodec,
    TransposeCodec,
    ZstdCodec,
)

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))
ZARR_DIR = os.path.join(ROOT, "zarr")
NPY_DIR = os.path.join(ROOT, "npy")

MANIFEST = {
    "generator": (f"zarr-python {zarr.__version__}, numcodecs {numcodecs.__version__}, "
                  f"numpy {np.__version__}"),
    "arrays": [],
    "rejects": [],
}


def ramp(shape, dtype, seed):
    """Smooth ramp along every axis plus small seeded noise, in `dtype`."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    grids = np.indices(shape, dtype=np.int64)
    # Distinct, co-prime-ish slopes per axis make a transposed or shifted read visibly wrong.
    slopes = [7, 3, 11, 5, 13, 2, 17][: len(shape)]
    base = sum(s * g for s, g in zip(slopes, grids))
    noise = rng.integers(0, 4, size=shape)
    if dt == np.bool_:
        return ((base + noise) % 3 == 0).astype(np.bool_)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        v = base + noise
        if dt.itemsize >= 4:
            # Exercise the high bytes too, so a wrong byte order cannot hide.
            v = v * (0x01010101 if dt.itemsize == 4 else 0x0101010101) + noise
        if dt.kind == "i":
            v = v - (int(v.max()) // 2 if v.max() > 0 else 0)
        # Wrap into range the way a C cast would (two's complement), deliberately.
        bits = dt.itemsize * 8
        v = np.mod(v.astype(object) if bits == 64 else v, 1 << bits)
        if dt.kind == "i":
            v = np.where(v > info.max, v - (1 << bits), v)
        return np.asarray(v).astype(dt)
    # Floats: a ramp with fractional parts, signs, and a few special values.
    v = base.astype(np.float64) * 0.37 - 10.0 + rng.normal(0.0, 0.01, size=shape)
    out = v.astype(dt)
    flat = out.reshape(-1)
    if flat.size > 10:
        flat[3] = np.nan
        flat[5] = -0.0
        flat[7] = np.inf
        flat[9] = -np.inf
    return out


def summary(arr):
    """A short human-readable codec summary for the manifest."""
    meta = arr.metadata.to_dict()
    def one(c):
        name = c["name"]
        cfg = c.get("configuration", {}) or {}
        if name == "sharding_indexed":
            inner = "+".join(one(x) for x in cfg["codecs"])
            index = "+".join(one(x) for x in cfg["index_codecs"])
            return (f"sharding[{cfg['chunk_shape']}, index={cfg['index_location']}"
                    f"({index}), inner={inner}]")
        if name == "bytes":
            return f"bytes({cfg.get('endian', '-')})"
        if name == "blosc":
            return f"blosc({cfg['cname']},{cfg['shuffle']},ts={cfg.get('typesize')},bs={cfg['blocksize']})"
        if name == "transpose":
            return f"transpose({cfg['order']})"
        if name == "zstd":
            return f"zstd(checksum={cfg.get('checksum', False)})"
        return name
    return " -> ".join(one(c) for c in meta["codecs"])


def summary_v2(arr):
    """The v2 counterpart of `summary`: dtype, order, separator and compressor."""
    meta = arr.metadata.to_dict()
    comp = meta["compressor"]
    if comp is None:
        comp_s = "none"
    else:
        cfg = ",".join(f"{k}={v}" for k, v in comp.items() if k != "id")
        comp_s = f"{comp['id']}({cfg})"
    return (f"v2 {meta['dtype']} order={meta['order']} "
            f"sep={meta['dimension_separator']!r} -> {comp_s}")


def default_crops(shape, grid):
    """Full array, a box straddling grid lines, the ragged far corner, one element."""
    rank = len(shape)
    crops = [([0] * rank, list(shape))]
    lo = [min(g // 2, s - 1) for g, s in zip(grid, shape)]
    hi = [min(s, l + g + max(1, g // 3)) for l, g, s in zip(lo, grid, shape)]
    crops.append((lo, hi))
    crops.append(([max(0, s - g - 2) for s, g in zip(shape, grid)], list(shape)))
    crops.append(([min(1, s - 1) for s in shape], [min(2, s) for s in shape]))
    return crops


def save_npy(path, value, version=None, big_endian=False):
    if big_endian and value.dtype.itemsize > 1:
        value = value.astype(value.dtype.newbyteorder(">"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(value), version=version)


def add(name, *, data, chunks, write=None, extra_crops=(), npy_version=None,
        npy_big_endian=False, checks=None, **create_kw):
    """Creates array `name`, writes `data` (or calls `write`), records reference crops."""
    path = os.path.join(ZARR_DIR, name)
    arr = zarr.create_array(
        store=path,
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        config={"write_empty_chunks": False},
        **create_kw,
    )
    if write is None:
        arr[...] = data
    else:
        write(arr, data)
    # The reference is what zarr-python reads back, so unwritten regions hold the fill.
    back = zarr.open_array(path, mode="r")
    ref = back[...]
    if write is None:
        same = np.array_equal(ref, data, equal_nan=data.dtype.kind == "f")
        assert same, f"{name}: zarr-python did not read back what it wrote"
    if checks is not None:
        checks(path, back)
    grid = list(chunks)
    crops = []
    for i, (lo, hi) in enumerate(default_crops(data.shape, grid) + list(extra_crops)):
        sl = tuple(slice(l, h) for l, h in zip(lo, hi))
        rel = os.path.join("npy", name, f"crop{i}.npy")
        save_npy(os.path.join(ROOT, rel), ref[sl], version=npy_version,
                 big_endian=npy_big_endian)
        crops.append({"lo": [int(x) for x in lo], "hi": [int(x) for x in hi], "npy": rel})
    v2 = back.metadata.zarr_format == 2
    dtype = back.metadata.dtype if v2 else back.metadata.data_type
    MANIFEST["arrays"].append({
        "name": name,
        "path": os.path.join("zarr", name),
        "zarr_format": back.metadata.zarr_format,
        "dtype": str(dtype.to_json(zarr_format=3)),
        "shape": [int(s) for s in data.shape],
        "chunk_grid": [int(c) for c in chunks],
        "fill_value": repr(back.metadata.fill_value),
        "chunk_key_encoding": (
            {"name": "v2", "configuration": {"separator": back.metadata.dimension_separator}}
            if v2 else back.metadata.chunk_key_encoding.to_dict()),
        "codecs": summary_v2(back) if v2 else summary(back),
        "crops": crops,
    })


def add_v2(name, *, data, chunks, compressor, order="C", sep=".", fill_value=0, **kw):
    """A zarr v2 array: numcodecs `compressor` (or None), no filters."""
    add(name, data=data, chunks=chunks, zarr_format=2, compressors=compressor, filters=None,
        order=order, chunk_key_encoding={"name": "v2", "separator": sep},
        fill_value=fill_value, **kw)


def zarray(path):
    with open(os.path.join(path, ".zarray")) as f:
        return json.load(f)


def first_chunk_is_stored_in(order):
    """A check that chunk 0 (a full chunk) holds the reference values in `order` (C or F)
    after the array's compressor: zarr-python's bytes, not just its values."""
    def check(path, back):
        meta = zarray(path)
        sep = meta["dimension_separator"]
        raw = open(os.path.join(path, sep.join("0" * len(meta["chunks"]))), "rb").read()
        comp = meta["compressor"]
        decoded = raw if comp is None else numcodecs.get_codec(comp).decode(raw)
        sl = tuple(slice(0, c) for c in meta["chunks"])
        want = np.asarray(back[sl]).astype(np.dtype(meta["dtype"])).tobytes(order=order)
        assert bytes(decoded) == want, f"{path}: chunk 0 is not stored in {order} order"
    return check


def v2_keys_missing(*absent):
    """A check that the chunk objects `absent` were never written (they read as fill)."""
    def check(path, back):
        present = keys(path)
        assert present, path
        for k in absent:
            assert k not in present, (k, present)
    return check


def shard(inner_chunks, codecs, index_location="end", index_codecs=None):
    kw = {"chunk_shape": inner_chunks, "codecs": codecs, "index_location": index_location}
    if index_codecs is not None:
        kw["index_codecs"] = index_codecs
    return ShardingCodec(**kw)


def keys(path):
    """Relative paths of every stored object below `path` except metadata."""
    out = []
    for d, _, files in os.walk(path):
        for f in files:
            if f not in ("zarr.json", ".zarray", ".zattrs"):
                out.append(os.path.relpath(os.path.join(d, f), path))
    return sorted(out)


def shard_index_entries(path, key, n_chunks, location, crc=True):
    """(offset, nbytes) pairs of a little-endian shard index, read from the raw shard."""
    raw = open(os.path.join(path, key), "rb").read()
    n = n_chunks * 16
    body = raw[:n] if location == "start" else raw[len(raw) - n - (4 if crc else 0):][:n]
    vals = np.frombuffer(body, dtype="<u8").reshape(-1, 2)
    return [tuple(int(x) for x in v) for v in vals]


EMPTY = (2**64 - 1, 2**64 - 1)
LE = BytesCodec(endian="little")
BE = BytesCodec(endian="big")


def add_zarr_v2():
    """zarr v2 arrays (`zarr_format=2`): every numcodecs compressor the crate reads, each
    dtype family in both byte orders, C and F order, both dimension separators, fill
    values (NaN, infinities, null) over missing chunks, ranks 1 to 5. Small shapes with
    few chunks keep the files few."""
    s = (11, 17, 9)
    c = (6, 9, 9)  # a 2x2x1 grid, ragged on the first two axes
    def blosc(cname, shuffle, **kw):
        return Blosc(cname=cname, clevel=5, shuffle=shuffle, **kw)

    # Compressors (C order, little-endian, "." keys). 128-byte blocks make several blosc
    # blocks per frame.
    add_v2("v2_blosc_zstd_shuffle_u16", data=ramp(s, "<u2", 200), chunks=c,
           compressor=blosc("zstd", Blosc.SHUFFLE))
    add_v2("v2_blosc_zstd_bitshuffle_f32", data=ramp(s, "<f4", 201), chunks=c,
           compressor=blosc("zstd", Blosc.BITSHUFFLE))
    add_v2("v2_blosc_zstd_noshuffle_i16_blocks", data=ramp(s, "<i2", 202), chunks=c,
           compressor=blosc("zstd", Blosc.NOSHUFFLE, blocksize=128))
    add_v2("v2_blosc_lz4_shuffle_i32", data=ramp(s, "<i4", 203), chunks=c,
           compressor=blosc("lz4", Blosc.SHUFFLE))
    add_v2("v2_blosc_lz4hc_bitshuffle_u32", data=ramp(s, "<u4", 204), chunks=c,
           compressor=blosc("lz4hc", Blosc.BITSHUFFLE))
    add_v2("v2_blosc_zlib_shuffle_f64", data=ramp(s, "<f8", 205), chunks=c,
           compressor=blosc("zlib", Blosc.SHUFFLE))
    add_v2("v2_blosc_blosclz_noshuffle_u16", data=ramp(s, "<u2", 206), chunks=c,
           compressor=blosc("blosclz", Blosc.NOSHUFFLE))
    def autoshuffled_bits(path, back):
        raw = open(os.path.join(path, "0.0.0"), "rb").read()
        assert raw[2] & 0x04 and not raw[2] & 0x01, f"AUTOSHUFFLE of u8: flags {raw[2]:#x}"
    add_v2("v2_blosc_lz4_autoshuffle_u8", data=ramp(s, "|u1", 207), chunks=c,
           compressor=blosc("lz4", Blosc.AUTOSHUFFLE), checks=autoshuffled_bits)
    add_v2("v2_zstd_u16", data=ramp(s, "<u2", 208), chunks=c, compressor=Zstd(level=3),
           checks=first_chunk_is_stored_in("C"))
    add_v2("v2_zstd_checksum_i64", data=ramp(s, "<i8", 209), chunks=c,
           compressor=Zstd(level=1, checksum=True))
    add_v2("v2_gzip_i16", data=ramp(s, "<i2", 210), chunks=c, compressor=GZip(level=5))
    add_v2("v2_zlib_u32", data=ramp(s, "<u4", 211), chunks=c, compressor=Zlib(level=6))
    add_v2("v2_lz4_f32", data=ramp(s, "<f4", 212), chunks=c, compressor=LZ4())
    add_v2("v2_none_u8", data=ramp(s, "|u1", 213), chunks=c, compressor=None)

    # Byte order and Fortran order, on the GPU codecs too (zstd, blosc-zstd).
    add_v2("v2_zstd_be_u16", data=ramp(s, ">u2", 220), chunks=c, compressor=Zstd(level=3))
    add_v2("v2_blosc_zstd_be_f32", data=ramp(s, ">f4", 221), chunks=c,
           compressor=blosc("zstd", Blosc.SHUFFLE))
    add_v2("v2_zstd_f_u16", data=ramp(s, "<u2", 222), chunks=c, compressor=Zstd(level=3),
           order="F", checks=first_chunk_is_stored_in("F"))
    add_v2("v2_blosc_zstd_f_i32", data=ramp(s, "<i4", 223), chunks=c,
           compressor=blosc("zstd", Blosc.BITSHUFFLE), order="F",
           checks=first_chunk_is_stored_in("F"))
    add_v2("v2_blosc_zstd_f_be_i16", data=ramp(s, ">i2", 224), chunks=c,
           compressor=blosc("zstd", Blosc.SHUFFLE), order="F",
           checks=first_chunk_is_stored_in("F"))
    add_v2("v2_none_f_be_f64", data=ramp(s, ">f8", 225), chunks=c, compressor=None,
           order="F", checks=first_chunk_is_stored_in("F"))

    # Dimension separator "/": nested keys.
    def nested(path, back):
        assert os.path.isfile(os.path.join(path, "0", "0", "0")), keys(path)
    add_v2("v2_slash_zstd_i16", data=ramp(s, "<i2", 230), chunks=c, compressor=Zstd(),
           sep="/", checks=nested)
    add_v2("v2_slash_f_lz4_u16", data=ramp(s, ">u2", 231), chunks=c, compressor=LZ4(),
           sep="/", order="F", checks=nested)

    # Every dtype family, alternating byte orders (2-D, four chunks).
    s2, c2 = (9, 13), (5, 7)
    dtypes = [("bool", "|b1"), ("int8", "|i1"), ("uint8", "|u1"), ("int16", ">i2"),
              ("uint16", "<u2"), ("int32", "<i4"), ("uint32", ">u4"), ("int64", ">i8"),
              ("uint64", "<u8"), ("float16", ">f2"), ("float32", "<f4"), ("float64", ">f8")]
    for i, (name, dt) in enumerate(dtypes):
        add_v2(f"v2_dtype_{name}", data=ramp(s2, dt, 240 + i), chunks=c2,
               compressor=Zstd(level=1))
    add_v2("v2_dtype_float16_le_blosc", data=ramp(s2, "<f2", 252), chunks=c2,
           compressor=blosc("zstd", Blosc.SHUFFLE))

    # Fill values over missing chunks: only the first chunk row is written.
    sf, cf = (10, 12), (4, 5)
    def write_first_rows(arr, data):
        arr[0:4, :] = data[0:4, :]
    missing = v2_keys_missing("1.0", "2.2")
    for name, dt, fill in [("nan_f32", "<f4", np.nan), ("inf_f64", ">f8", np.inf),
                           ("neginf_f16", "<f2", -np.inf), ("int_u16", "<u2", 7),
                           ("negative_i32", ">i4", -3), ("true_bool", "|b1", True),
                           ("null_i16", "<i2", None), ("null_f32", "<f4", None)]:
        add_v2(f"v2_fill_{name}", data=ramp(sf, dt, 260), chunks=cf,
               compressor=Zstd(level=1), fill_value=fill, write=write_first_rows,
               checks=missing, extra_crops=[([5, 2], [10, 12])])
    def fill_spelled(spelling):
        def check(path, back):
            got = zarray(path)["fill_value"]
            assert got == spelling, (got, spelling)
            missing(path, back)
        return check
    add_v2("v2_fill_nan_blosc_f64", data=ramp(sf, "<f8", 261), chunks=cf,
           compressor=blosc("zstd", Blosc.SHUFFLE), fill_value=np.nan,
           write=write_first_rows, checks=fill_spelled("NaN"))

    # Ranks 1, 4 and 5 (2 and 3 are above).
    add_v2("v2_rank1_zstd_u16", data=ramp((300,), "<u2", 270), chunks=(64,),
           compressor=Zstd())
    add_v2("v2_rank4_gzip_f_u8", data=ramp((3, 4, 5, 6), "|u1", 271), chunks=(2, 3, 3, 4),
           compressor=GZip(), order="F")
    add_v2("v2_rank5_blosc_zstd_f_i16", data=ramp((3, 4, 5, 6, 7), "<i2", 272),
           chunks=(2, 3, 3, 4, 5), compressor=blosc("zstd", Blosc.SHUFFLE), order="F",
           checks=first_chunk_is_stored_in("F"))


def main():
    shutil.rmtree(ZARR_DIR, ignore_errors=True)
    shutil.rmtree(NPY_DIR, ignore_errors=True)
    os.makedirs(ZARR_DIR)

    s3 = (20, 33, 17)
    c3 = (8, 8, 8)

    # ---- bytes->bytes compressors, unsharded, default `/` keys ----
    add("zstd_u16", data=ramp(s3, "u2", 1), chunks=c3, serializer=LE,
        compressors=[ZstdCodec(level=3)])
    add("zstd_checksum_i32", data=ramp(s3, "i4", 2), chunks=c3, serializer=LE,
        compressors=[ZstdCodec(level=1, checksum=True)])
    add("blosc_zstd_shuffle_f32", data=ramp(s3, "f4", 3), chunks=c3, serializer=LE,
        compressors=[BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")])
    add("blosc_zstd_bitshuffle_u16", data=ramp(s3, "u2", 4), chunks=c3, serializer=LE,
        compressors=[BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")])
    add("blosc_lz4_shuffle_i32", data=ramp(s3, "i4", 5), chunks=c3, serializer=LE,
        compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")])
    add("blosc_lz4_bitshuffle_f64", data=ramp(s3, "f8", 6), chunks=c3, serializer=LE,
        compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")])
    add("blosc_blosclz_shuffle_u32", data=ramp(s3, "u4", 7), chunks=c3, serializer=LE,
        compressors=[BloscCodec(cname="blosclz", clevel=5, shuffle="shuffle")])
    add("blosc_lz4_noshuffle_u8", data=ramp(s3, "u1", 8), chunks=c3, serializer=LE,
        compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle")])
    # A small explicit blocksize gives several blocks per frame and a short last block
    # (8*8*8*2 = 1024 bytes per chunk, 384-byte blocks).
    add("blosc_zstd_shuffle_blocks_i16", data=ramp(s3, "i2", 9), chunks=c3, serializer=LE,
        compressors=[BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", blocksize=384)])
    add("blosc_lz4_bitshuffle_blocks_u16", data=ramp(s3, "u2", 10), chunks=(16, 16, 8),
        serializer=LE,
        compressors=[BloscCodec(cname="lz4", clevel=3, shuffle="bitshuffle", blocksize=1536)])
    # Pure noise does not compress, so blosc stores the frame memcpyed (flag 0x02).
    noise = np.random.default_rng(21).integers(0, 256, size=s3, dtype=np.uint8)
    def check_memcpyed(path, back):
        raw = open(os.path.join(path, "c", "0", "0", "0"), "rb").read()
        assert raw[2] & 0x02, f"expected a memcpyed blosc frame, flags {raw[2]:#x}"
    add("blosc_lz4_memcpyed_u8", data=noise, chunks=c3, serializer=LE, checks=check_memcpyed,
        compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle")])
    add("gzip_i16", data=ramp(s3, "i2", 11), chunks=c3, serializer=LE,
        compressors=[GzipCodec(level=6)])

    # ---- byte order, checksums, transpose ----
    add("bytes_be_u32", data=ramp(s3, "u4", 12), chunks=c3, serializer=BE, compressors=[],
        npy_big_endian=True)
    add("bytes_be_f64_zstd", data=ramp(s3, "f8", 13), chunks=c3, serializer=BE,
        compressors=[ZstdCodec(level=3)], npy_version=(2, 0))
    add("zstd_crc32c_f32", data=ramp(s3, "f4", 14), chunks=c3, serializer=LE,
        compressors=[ZstdCodec(level=3), Crc32cCodec()])
    add("gzip_crc32c_u8", data=ramp(s3, "u1", 15), chunks=c3, serializer=LE,
        compressors=[GzipCodec(level=1), Crc32cCodec()])
    add("transpose_u16_zstd", data=ramp(s3, "u2", 16), chunks=(8, 11, 5), serializer=LE,
        filters=[TransposeCodec(order=(2, 0, 1))], compressors=[ZstdCodec(level=3)])
    add("transpose_be_i32", data=ramp(s3, "i4", 17), chunks=(8, 11, 5), serializer=BE,
        filters=[TransposeCodec(order=(1, 2, 0))], compressors=[])

    # ---- chunk key encodings ----
    add("keys_dot_u16", data=ramp(s3, "u2", 18), chunks=c3, serializer=LE,
        compressors=[ZstdCodec()], chunk_key_encoding={"name": "default", "separator": "."})
    add("keys_v2_dot_i16", data=ramp(s3, "i2", 19), chunks=c3, serializer=LE,
        compressors=[ZstdCodec()], chunk_key_encoding={"name": "v2", "separator": "."})
    add("keys_v2_slash_u8", data=ramp(s3, "u1", 20), chunks=c3, serializer=LE,
        compressors=[ZstdCodec()], chunk_key_encoding={"name": "v2", "separator": "/"})

    # ---- data types (2-D, ragged 8x8 chunks) ----
    s2 = (17, 23)
    dtypes = [("bool", "b1"), ("int8", "i1"), ("uint8", "u1"), ("int16", "i2"),
              ("uint16", "u2"), ("int32", "i4"), ("uint32", "u4"), ("int64", "i8"),
              ("uint64", "u8"), ("float16", "f2"), ("float32", "f4"), ("float64", "f8")]
    for i, (name, dt) in enumerate(dtypes):
        add(f"dtype_{name}", data=ramp(s2, dt, 100 + i), chunks=(8, 8), serializer=LE,
            compressors=[ZstdCodec(level=1)])

    # ---- ranks 1, 2 and 5 (3 is everywhere above) ----
    add("rank1_u16_zstd", data=ramp((1000,), "u2", 30), chunks=(128,), serializer=LE,
        compressors=[ZstdCodec()])
    add("rank2_f32_blosc", data=ramp((45, 31), "f4", 31), chunks=(16, 16), serializer=LE,
        compressors=[BloscCodec(cname="lz4", shuffle="shuffle")])
    add("rank5_i16_zstd", data=ramp((3, 4, 5, 6, 7), "i2", 32), chunks=(2, 3, 2, 4, 3),
        serializer=LE, compressors=[ZstdCodec()])
    add("rank5_u8_sharded", data=ramp((3, 4, 5, 6, 7), "u1", 33), chunks=(2, 4, 4, 4, 6),
        serializer=shard((1, 2, 2, 4, 3), [LE, ZstdCodec()]), compressors=[])

    # ---- sharding ----
    shard_shape = (16, 16, 16)
    inner = (8, 8, 8)
    add("shard_end_u16_zstd", data=ramp(s3, "u2", 40), chunks=shard_shape,
        serializer=shard(inner, [LE, ZstdCodec()]), compressors=[])
    add("shard_start_f32_blosc", data=ramp(s3, "f4", 41), chunks=shard_shape,
        serializer=shard(inner, [LE, BloscCodec(cname="zstd", shuffle="shuffle")],
                         index_location="start"), compressors=[])
    add("shard_start_index_nocrc_i32", data=ramp(s3, "i4", 42), chunks=shard_shape,
        serializer=shard(inner, [LE, GzipCodec()], index_location="start",
                         index_codecs=[LE]), compressors=[])
    add("shard_index_be_u32", data=ramp(s3, "u4", 43), chunks=shard_shape,
        serializer=shard(inner, [BE, ZstdCodec()], index_codecs=[BE, Crc32cCodec()]),
        compressors=[])
    add("shard_transpose_inner_u16", data=ramp(s3, "u2", 44), chunks=shard_shape,
        serializer=shard(inner, [TransposeCodec(order=(2, 1, 0)), LE, ZstdCodec()]),
        compressors=[])
    add("shard_outer_zstd_crc_i16", data=ramp(s3, "i2", 45), chunks=shard_shape,
        serializer=shard(inner, [LE, ZstdCodec()]),
        compressors=[ZstdCodec(), Crc32cCodec()])
    add("shard_nested_u16", data=ramp((20, 33, 17), "u2", 46), chunks=shard_shape,
        serializer=shard(inner, [shard((4, 4, 4), [LE, ZstdCodec()])]), compressors=[])

    # Missing shards: only the first shard row is written, the rest never exist.
    big = (40, 40)
    def write_first_row(arr, data):
        arr[0:16, 0:40] = data[0:16, 0:40]
    def check_missing(path, back):
        present = keys(path)
        assert "c/0/0" in present and "c/2/2" not in present and "c/1/0" not in present, present
    add("shard_missing_u16", data=ramp(big, "u2", 50), chunks=(16, 16),
        serializer=shard((8, 8), [LE, ZstdCodec()]), compressors=[], fill_value=0,
        write=write_first_row, checks=check_missing,
        extra_crops=[([20, 5], [40, 30]), ([10, 10], [30, 30])])

    # Empty inner chunks in a present shard, with a non-default fill value: inner chunks
    # that equal the fill everywhere are not written and the index marks them empty.
    def with_fill_holes(fill):
        def write(arr, data):
            d = data.copy()
            d[0:8, 0:8] = fill      # inner chunk (0,0) of shard (0,0): all fill
            d[8:16, 8:16] = fill    # inner chunk (1,1) of shard (0,0): all fill
            d[16:24, 16:24] = fill  # inner chunk (0,0) of shard (1,1)
            arr[...] = d
        return write
    def check_empty_inner(path, back):
        entries = shard_index_entries(path, "c/0/0", 4, "end")
        assert entries[0] == EMPTY and entries[3] == EMPTY, entries
        assert entries[1] != EMPTY and entries[2] != EMPTY, entries
    add("shard_empty_inner_i32_fill", data=ramp(big, "i4", 51), chunks=(16, 16),
        serializer=shard((8, 8), [LE, ZstdCodec()]), compressors=[], fill_value=-7,
        write=with_fill_holes(-7), checks=check_empty_inner,
        extra_crops=[([0, 0], [8, 8]), ([4, 4], [20, 20])])
    def check_empty_inner_start(path, back):
        entries = shard_index_entries(path, "c/0/0", 4, "start")
        assert entries[0] == EMPTY and entries[3] == EMPTY, entries
    add("shard_start_empty_inner_f64_nan", data=ramp(big, "f8", 52), chunks=(16, 16),
        serializer=shard((8, 8), [LE, BloscCodec(cname="lz4", shuffle="shuffle")],
                         index_location="start"),
        compressors=[], fill_value=np.nan, write=with_fill_holes(np.nan),
        checks=check_empty_inner_start, extra_crops=[([0, 0], [8, 8])])

    # Unsharded missing chunks with a non-default fill value.
    def write_corner(arr, data):
        arr[0:8, 0:8] = data[0:8, 0:8]
    def check_one_chunk(path, back):
        assert keys(path) == ["c/0/0"], keys(path)
    add("missing_chunks_f32_fill", data=ramp((20, 20), "f4", 53), chunks=(8, 8),
        serializer=LE, compressors=[ZstdCodec()], fill_value=-1.5, write=write_corner,
        checks=check_one_chunk, extra_crops=[([9, 9], [20, 20])])
    add("missing_chunks_u64_fill", data=ramp((20, 20), "u8", 54), chunks=(8, 8),
        serializer=LE, compressors=[ZstdCodec()], fill_value=2**63 + 12345,
        write=write_corner, checks=check_one_chunk, extra_crops=[([9, 9], [20, 20])])

    # ---- numcodecs compressors in zarr v3 (zarr-python's `numcodecs.*` names) ----
    add("numcodecs_zlib_u16", data=ramp((11, 17, 9), "u2", 55), chunks=(6, 9, 9),
        serializer=LE, compressors=[NumcodecsZlib(level=5)])
    add("numcodecs_lz4_i32", data=ramp((11, 17, 9), "i4", 56), chunks=(6, 9, 9),
        serializer=LE, compressors=[NumcodecsLZ4()])

    add_zarr_v2()

    # ---- things the Rust crate must reject ----
    def reject_v2(name, error, **kw):
        path = os.path.join(ZARR_DIR, name)
        a = zarr.create_array(store=path, shape=(10, 10), chunks=(5, 5), dtype="<u2",
                              zarr_format=2, **kw)
        a[...] = ramp((10, 10), "u2", 60)
        MANIFEST["rejects"].append({"name": name, "metadata": f"zarr/{name}/.zarray",
                                    "error": error})
    reject_v2("v2_filter_delta", "UnsupportedFilter", filters=[Delta(dtype="<u2")],
              compressors=Zstd())
    reject_v2("v2_compressor_bz2", "Unsupported", compressors=BZ2())
    grp = os.path.join(ZARR_DIR, "group")
    g = zarr.open_group(grp, mode="w", zarr_format=3, attributes={"purpose": "fixture"})
    assert g is not None
    MANIFEST["rejects"].append({"name": "group", "metadata": "zarr/group/zarr.json",
                                "error": "NotAnArray"})

    with open(os.path.join(ROOT, "manifest.json"), "w") as f:
        json.dump(MANIFEST, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"{len(MANIFEST['arrays'])} arrays, {len(MANIFEST['rejects'])} rejects")


if __name__ == "__main__":
    main()
