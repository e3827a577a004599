#!/usr/bin/env python3
"""tensorstore peer of `damacy bench`: the same arrays, the same crop sequence, counted the same way.

Reads a scenario file (bench/scenarios/*.json, format documented in
crates/bench/src/scenario.rs), replays its crop sequence with the splitmix64 Rng of
crates/splitmix/src/lib.rs, and reads the crops with tensorstore (zarr3 or zarr driver,
file kvstore), batch by batch: one batch is `samples_per_batch` reads issued
concurrently as futures, then awaited. Warm-up batches first, then timed batches. Each
thread count N of the sweep and each configuration uses a fresh context with
data_copy_concurrency = file_io_concurrency = N and restarts the crop sequence from the
seed, like a fresh `damacy bench --threads N`.

Configurations (`--configs`, any subset, in the order given):
- `naive`: each crop read in the array's dtype and copied into one batch array of the
  scenario's output dtype by numpy (the cast runs in that single-threaded copy; with
  `--cast tensorstore` it runs on tensorstore's threads): what a plain training loop's
  collate step does. No chunk cache.
- `best`: each crop read in the array's native dtype, every read awaited, the arrays kept
  as tensorstore returns them (no Python-side copy or cast): the upper bound of any
  loader built on tensorstore. No chunk cache (damacy keeps none either).
- `best-cache`: as `best` with a chunk cache pool of `--cache-bytes` (default 8 GiB) and
  `recheck_cached_data: "open"` (cached chunks trusted after open), so chunks shared by
  crops decode once.
Ratios must be stated against the best figure of these in the same run.

Counting matches bench::run (crates/bench/src/throughput.rs): voxels = samples ×
prod(sample_shape); source bytes = voxels × the element size of each sample's array.

Output: one JSON object per thread count on stdout (JSON lines) and, with --json, a JSON
list of them in that file. Progress goes to stderr.
"""

import argparse
import json
import math
import os
import sys
import time

# numpy and tensorstore are imported in main() after --print-crops, so that the crop
# sequence can be checked with a bare python3.
np = None
ts = None

M64 = (1 << 64) - 1


class Rng:
    """splitmix64, exactly as crates/splitmix/src/lib.rs documents it."""

    def __init__(self, seed):
        self.s = seed & M64

    def next_u64(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def below(self, n):
        """Uniform in 0..n by rejection; 0 (and no draw) when n == 0."""
        if n == 0:
            return 0
        t = (1 << 64) % n
        while True:
            x = self.next_u64()
            if x >= t:
                return x % n


# Zarr dtype spellings of the scenario format -> numpy dtypes (little endian on disk).
def _np_dtype(name):
    if name == "bfloat16":
        import ml_dtypes  # shipped as a tensorstore dependency

        return np.dtype(ml_dtypes.bfloat16)
    table = {
        "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
        "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
        "float16": np.float16, "float32": np.float32, "float64": np.float64,
    }
    if name not in table:
        raise SystemExit(f"tensorstore_bench: unsupported dtype {name!r}")
    return np.dtype(table[name])


def _out_dtype(scenario, arrays):
    out = scenario["output_dtype"]
    if out == "f32":
        return np.dtype(np.float32)
    if out == "f16":
        return np.dtype(np.float16)
    if out == "bf16":
        return _np_dtype("bfloat16")
    if out == "native":
        return _np_dtype(arrays[0]["dtype"])
    raise SystemExit(f"tensorstore_bench: unknown output_dtype {out!r}")


def array_list(scenario):
    """Every array in scenario order: (name, shape, dtype name)."""
    out = []
    for g in scenario["arrays"]:
        for i in range(g["count"]):
            out.append({"name": f"{g['name_prefix']}{i:04d}", "shape": g["shape"], "dtype": g["dtype"]})
    return out


def samples(scenario, arrays):
    """The infinite crop sequence: (array index, lo list, hi list)."""
    rng = Rng(scenario["seed"])
    sample = scenario["sample_shape"]
    n = len(arrays)
    while True:
        g = rng.below(n)
        shape = arrays[g]["shape"]
        lo = [rng.below(shape[a] - sample[a] + 1) for a in range(len(sample))]
        yield g, lo, [l + s for l, s in zip(lo, sample)]


def time_batches(batch, scenario, label):
    """Runs the scenario's warm-up batches, then times its timed ones; `batch()` returns
    (batch, source bytes read). Returns (wall seconds, source bytes of the timed ones)."""
    warm, timed = scenario["warmup_batches"], scenario["timed_batches"]
    for b in range(warm):
        batch()
        print(f"\r{label}: warm-up {b + 1}/{warm}", end="", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    src_bytes = 0
    for b in range(timed):
        _, src = batch()
        src_bytes += src
        print(f"\r{label}: timed {b + 1}/{timed}   ", end="", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    print(file=sys.stderr)
    return wall, src_bytes


CONFIGS = ("naive", "best", "best-cache")


def _driver(array_dir):
    """zarr3 for a zarr.json array, zarr (v2) for a .zarray one."""
    return "zarr" if os.path.exists(os.path.join(array_dir, ".zarray")) else "zarr3"


def run_threads(scenario, arrays, data_dir, threads, label, cast, config="naive", cache_bytes=8 << 30, epochs=1):
    cached = config == "best-cache"
    ctx = ts.Context(
        {
            "data_copy_concurrency": {"limit": threads},
            "file_io_concurrency": {"limit": threads},
            "cache_pool": {"total_bytes_limit": cache_bytes if cached else 0},
        }
    )
    out_dtype = _out_dtype(scenario, arrays)
    sizes = [_np_dtype(a["dtype"]).itemsize for a in arrays]
    handles = {}

    def handle(g):
        # Opened on first use, like damacy's lazy metadata resolution; the warm-up
        # batches absorb most opens.
        h = handles.get(g)
        if h is None:
            path = os.path.join(data_dir, arrays[g]["name"])
            spec = {"driver": _driver(path), "kvstore": {"driver": "file", "path": path}}
            if cached:
                spec["recheck_cached_data"] = "open"
            h = ts.open(spec, context=ctx, read=True).result()
            handles[g] = h
        return h

    spb = scenario["samples_per_batch"]
    sample = scenario["sample_shape"]
    vox_per_sample = math.prod(sample)
    # With epochs > 1 the crop sequence is the scenario's warm-up + timed batches,
    # replayed from the seed each epoch (as `damacy bench --epochs`).
    per_epoch = (scenario["warmup_batches"] + scenario["timed_batches"]) * spb

    def crop_seq():
        if epochs == 1:
            yield from samples(scenario, arrays)
            return
        for _ in range(epochs):
            it = samples(scenario, arrays)
            for _ in range(per_epoch):
                yield next(it)

    seq = crop_seq()

    def batch_best():
        # Native dtype, every read awaited, no copy: the arrays stay as tensorstore made them.
        crops = [next(seq) for _ in range(spb)]
        futures = [handle(g)[tuple(slice(l, h) for l, h in zip(lo, hi))].read() for g, lo, hi in crops]
        out = [f.result() for f in futures]
        return out, sum(vox_per_sample * sizes[g] for g, _, _ in crops)

    def batch():
        crops = [next(seq) for _ in range(spb)]
        views = [handle(g)[tuple(slice(l, h) for l, h in zip(lo, hi))] for g, lo, hi in crops]
        if cast == "tensorstore":
            # The element conversion runs on tensorstore's data-copy threads.
            views = [ts.cast(v, ts.dtype(out_dtype.name)) for v in views]
        futures = [v.read() for v in views]
        out = np.empty((spb, *sample), dtype=out_dtype)
        src = 0
        for k, (fut, (g, _, _)) in enumerate(zip(futures, crops)):
            out[k] = fut.result()  # with --cast numpy, the conversion happens in this copy
            src += vox_per_sample * sizes[g]
        return out, src

    timed = scenario["timed_batches"]
    run_batch = batch if config == "naive" else batch_best
    if epochs == 1:
        wall, src_bytes = time_batches(run_batch, scenario, f"{label} {config}")
    else:
        # Earlier epochs untimed; the last epoch timed whole (like damacy's epoch N).
        per = scenario["warmup_batches"] + scenario["timed_batches"]
        for e in range(epochs - 1):
            for b in range(per):
                run_batch()
                print(f"\r{label} {config}: epoch {e + 1} {b + 1}/{per}", end="", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        src_bytes = sum(run_batch()[1] for _ in range(per))
        wall = time.perf_counter() - t0
        print(file=sys.stderr)
        timed = per
    n = timed * spb
    return {
        "engine": "tensorstore",
        "scenario": scenario["name"],
        "threads": threads,
        "batches": timed,
        "samples": n,
        "seconds": wall,
        "gvox_per_s": n * vox_per_sample / wall / 1e9,
        "source_gb_per_s": src_bytes / wall / 1e9,
        "config": config,
        "output_dtype": scenario["output_dtype"] if config == "naive" else "native",
        "cast": cast if config == "naive" else None,
        "cache_pool_bytes": cache_bytes if cached else 0,
        "epochs": epochs,
        "tensorstore_version": _version("tensorstore"),
        "numpy_version": np.__version__,
    }


def _version(pkg):
    try:
        from importlib.metadata import version

        return version(pkg)
    except Exception:  # metadata is informative only
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario-json", required=True, help="scenario file (bench/scenarios/NAME.json)")
    p.add_argument("--data", help="dataset directory written by `damacy gen`")
    p.add_argument("--threads", default="1", help="comma-separated thread counts, e.g. 1,2,4")
    p.add_argument("--json", help="also write the results as a JSON list here")
    p.add_argument(
        "--cast",
        choices=["numpy", "tensorstore"],
        default="numpy",
        help="where the conversion to the output dtype runs: numpy, in the collate copy "
        "(default, what a training loop does), or tensorstore (ts.cast, on its threads)",
    )
    p.add_argument(
        "--configs",
        default="naive",
        help="comma-separated configurations to run per thread count: " + ", ".join(CONFIGS),
    )
    p.add_argument("--cache-bytes", type=int, default=8 << 30, help="cache pool of best-cache (bytes)")
    p.add_argument(
        "--epochs",
        type=int,
        default=1,
        help="replay the warm-up + timed crops this many times and time the last epoch whole "
        "(as `damacy bench --epochs`)",
    )
    # Prints the first N crops as JSON lines and exits: checks the sequence against damacy.
    p.add_argument("--print-crops", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()

    with open(args.scenario_json) as f:
        scenario = json.load(f)
    arrays = array_list(scenario)
    if args.print_crops is not None:
        seq = samples(scenario, arrays)
        for _ in range(args.print_crops):
            g, lo, hi = next(seq)
            print(json.dumps({"array": arrays[g]["name"], "lo": lo, "hi": hi}))
        return
    if not args.data:
        p.error("--data is required")
    global np, ts
    import numpy as np
    import tensorstore as ts
    if scenario.get("latency"):
        print("tensorstore_bench: note: the scenario's added store latency is not simulated", file=sys.stderr)
    try:
        thread_list = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if not thread_list or min(thread_list) < 1:
        p.error("--threads needs at least one count, each >= 1")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in configs if c not in CONFIGS]
    if not configs or bad:
        p.error(f"--configs takes a comma-separated subset of {', '.join(CONFIGS)}; got {args.configs!r}")
    results = []
    for n in thread_list:
        for c in configs:
            r = run_threads(scenario, arrays, os.path.abspath(args.data), n,
                            f"tensorstore {scenario['name']} threads={n}", args.cast, c, args.cache_bytes,
                            max(1, args.epochs))
            print(json.dumps(r), flush=True)
            results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
