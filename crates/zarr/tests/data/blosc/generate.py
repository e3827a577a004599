"""Writes the blosc1 conformance frames in this folder with real c-blosc.

Pinned: numcodecs==0.15.1 (bundles c-blosc 1.21.6), numpy<2.3, Python 3.11.
    python3 -m venv /tmp/bv && /tmp/bv/bin/pip install numcodecs==0.15.1 "numpy<2.3"
    /tmp/bv/bin/python crates/zarr/tests/data/blosc/generate.py

For every case NAME it writes NAME.blosc (the frame) and NAME.bin.gz (the decoded bytes, gzipped, for
cases up to MAX_BIN bytes),
and cases.json listing name, cname, clevel, shuffle, typesize, forced blocksize and the
header fields c-blosc chose, and the decoded length and CRC-32. The data is deterministic (seeded).
"""
import gzip
import json
import zlib
import os

import numpy as np
import numcodecs
from numcodecs import blosc

HERE = os.path.dirname(os.path.abspath(__file__))
assert numcodecs.__version__ == "0.15.1", numcodecs.__version__
assert blosc.VERSION_STRING == "1.21.6", blosc.VERSION_STRING
# numcodecs releases the GIL and may use threads; one thread keeps block order simple
# (the format does not depend on it).
blosc.set_nthreads(1)

rng = np.random.default_rng(20240601)


def smooth_u16(n, noise=40):
    x = np.arange(n)
    v = 20000 + 8000 * np.sin(x / 300.0) + rng.normal(0, noise, n)
    return v.astype("<u2")


def smooth_f32(n):
    x = np.arange(n)
    return (np.cos(x / 50.0) * 1000 + rng.normal(0, 1, n)).astype("<f4")


def ramp_u64(n):
    return (np.arange(n, dtype="<u8") * 3 + 1_000_000_000_000) ^ rng.integers(0, 4, n, dtype="<u8")


def void(arr, size):
    """Reinterprets bytes as a numpy void dtype so numcodecs uses typesize `size`."""
    raw = arr.tobytes()
    raw = raw[: len(raw) // size * size]
    return np.frombuffer(raw, dtype=f"V{size}")


MAX_BIN = 30000

SHUF = {"none": blosc.NOSHUFFLE, "byte": blosc.SHUFFLE, "bit": blosc.BITSHUFFLE}

cases = [
    # name, data, cname, clevel, shuffle, forced blocksize (0 = automatic)
    ("zstd_byte_u16", smooth_u16(12000), "zstd", 5, "byte", 0),
    ("zstd_bit_u16", smooth_u16(12000), "zstd", 5, "bit", 0),
    ("zstd_byte_u16_blocks", smooth_u16(20000, 4), "zstd", 3, "byte", 8192),
    # Split codecs enlarge any block to at least 64 KiB, so multi-block split frames
    # need more than 64 KiB of data.
    ("lz4_byte_u16_split_blocks", smooth_u16(36000, 4), "lz4", 5, "byte", 4096),
    ("lz4_bit_u16_leftover_not_multiple_of_8", smooth_u16(36003, 4), "lz4", 5, "bit", 4096),
    ("lz4hc_byte_f32", smooth_f32(6000), "lz4hc", 6, "byte", 0),
    ("blosclz_byte_f32_split", smooth_f32(6000), "blosclz", 5, "byte", 0),
    ("blosclz_bit_v32_blocks_leftover", void(ramp_u64(2500), 32), "blosclz", 9, "bit", 4096),
    ("blosclz_none_u8_runs", (np.arange(17001) // 50 % 256).astype("u1"), "blosclz", 4, "none", 0),
    ("zlib_byte_u16", smooth_u16(8000), "zlib", 5, "byte", 0),
    ("zstd_byte_v3", void(smooth_u16(6000), 3), "zstd", 5, "byte", 0),
    ("lz4_byte_v16_split", void(smooth_f32(8192), 16), "lz4", 5, "byte", 0),
    ("lz4_bit_v32_nosplit", void(smooth_f32(8192), 32), "lz4", 5, "bit", 0),
    ("lz4_bit_u16_short", smooth_u16(1000), "lz4", 5, "bit", 1024),
    ("memcpyed_clevel0", smooth_u16(3000), "zstd", 0, "byte", 0),
    ("memcpyed_tiny", smooth_u16(40), "zstd", 5, "byte", 0),
    ("noise_u8", rng.integers(0, 256, 3000, dtype="u1"), "lz4", 5, "byte", 0),
    ("noise_zstd_u32", rng.integers(0, 2**32, 1000, dtype="<u4"), "zstd", 1, "none", 0),
]

meta = []
for name, data, cname, clevel, shuffle, blocksize in cases:
    codec = numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=SHUF[shuffle], blocksize=blocksize)
    frame = codec.encode(data)
    raw = data.tobytes()
    assert bytes(codec.decode(frame)) == raw
    with open(os.path.join(HERE, name + ".blosc"), "wb") as f:
        f.write(frame)
    # The decoded bytes are stored gzipped (mtime 0, so reruns are byte-identical) for
    # the smaller cases; every case also records the length and CRC-32 of its bytes.
    if len(raw) <= MAX_BIN:
        with open(os.path.join(HERE, name + ".bin.gz"), "wb") as f:
            f.write(gzip.compress(raw, mtime=0))
    hdr = frame[:16]
    meta.append(
        {
            "name": name,
            "cname": cname,
            "clevel": clevel,
            "shuffle": shuffle,
            "typesize": data.dtype.itemsize,
            "forced_blocksize": blocksize,
            "flags": hdr[2],
            "nbytes": int.from_bytes(hdr[4:8], "little"),
            "blocksize": int.from_bytes(hdr[8:12], "little"),
            "cbytes": int.from_bytes(hdr[12:16], "little"),
            "decoded_len": len(raw),
            "decoded_crc32": zlib.crc32(raw),
            "has_bin": len(raw) <= MAX_BIN,
        }
    )

with open(os.path.join(HERE, "cases.json"), "w") as f:
    json.dump(meta, f, indent=1)
    f.write("\n")
print("\n".join(f"{m['name']}: flags={m['flags']:#04x} ts={m['typesize']} nbytes={m['nbytes']} bs={m['blocksize']} cbytes={m['cbytes']}" for m in meta))
