#!/usr/bin/env python3
"""tensorstore peer of `damacy bench --store s3`: the same arrays and crops, read through tensorstore's `s3` kvstore from the same loopback S3 server.

Written for the GPU host (not run in CI). Start the server that `damacy bench --store s3`
uses, serving the scenario's dataset, then point this script at it:

    damacy gen --scenario default --out bench-data/default
    damacy serve-s3 --data bench-data/default --latency-ms 20 &   # prints its endpoint
    python3 bench/peers/tensorstore_s3_bench.py \
        --scenario-json bench/scenarios/default.json \
        --endpoint http://127.0.0.1:PORT --threads 16

and compare with

    damacy bench --scenario default --store s3 --latency-ms 20 --threads 16

The crop sequence, the batches and the counting are those of tensorstore_bench.py (the
file peer; imported from beside this file). This is tensorstore's best configuration,
not the numpy-cast loop: each crop is read in the array's native dtype (no cast), every
read of a batch is issued before any is awaited, and the awaited arrays are kept as
tensorstore returned them (no Python-side copy into a batch array). The context gives
`s3_request_concurrency` and `data_copy_concurrency` the thread count and a zero-byte
cache pool (damacy keeps no chunk cache either).

Credentials: the server's fixed loopback pair (crates/loopback/src/s3.rs), passed through
the environment as tensorstore's `environment` credentials read them.
"""

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensorstore_bench as peer  # noqa: E402  (the crop sequence and dtype table)

# crates/loopback/src/s3.rs
BUCKET = "damacy"
ACCESS_KEY_ID = "damacy-loopback"
SECRET_ACCESS_KEY = "damacy-loopback-secret"
REGION = "us-east-1"


def run_threads(scenario, arrays, endpoint, threads, label):
    ts, np = peer.ts, peer.np
    ctx = ts.Context(
        {
            "s3_request_concurrency": {"limit": threads},
            "data_copy_concurrency": {"limit": threads},
            "cache_pool": {"total_bytes_limit": 0},
        }
    )
    sizes = [peer._np_dtype(a["dtype"]).itemsize for a in arrays]
    handles = {}

    def handle(g):
        h = handles.get(g)
        if h is None:
            spec = {
                "driver": "zarr3",
                "kvstore": {
                    "driver": "s3",
                    "bucket": BUCKET,
                    "path": arrays[g]["name"] + "/",
                    "endpoint": endpoint,
                    "aws_region": REGION,
                    "aws_credentials": {"type": "environment"},
                },
            }
            h = ts.open(spec, context=ctx, read=True).result()
            handles[g] = h
        return h

    spb = scenario["samples_per_batch"]
    sample = scenario["sample_shape"]
    vox_per_sample = math.prod(sample)
    seq = peer.samples(scenario, arrays)

    def batch():
        crops = [next(seq) for _ in range(spb)]
        futures = [handle(g)[tuple(slice(l, h) for l, h in zip(lo, hi))].read() for g, lo, hi in crops]
        # Awaited, kept as returned: native dtype, no copy.
        out = [f.result() for f in futures]
        return out, sum(vox_per_sample * sizes[g] for g, _, _ in crops)

    timed = scenario["timed_batches"]
    wall, src_bytes = peer.time_batches(batch, scenario, label)
    n = timed * spb
    return {
        "engine": "tensorstore",
        "store": f"s3 ({endpoint})",
        "scenario": scenario["name"],
        "threads": threads,
        "batches": timed,
        "samples": n,
        "seconds": wall,
        "gvox_per_s": n * vox_per_sample / wall / 1e9,
        "source_gb_per_s": src_bytes / wall / 1e9,
        "output_dtype": "native",
        "configuration": "best: native dtype, reads awaited, no Python-side copy",
        "tensorstore_version": peer._version("tensorstore"),
        "numpy_version": np.__version__,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario-json", required=True, help="scenario file (bench/scenarios/NAME.json)")
    p.add_argument("--endpoint", required=True, help="the loopback server, http://127.0.0.1:PORT")
    p.add_argument("--threads", default="16", help="comma-separated request concurrencies, e.g. 8,16,64")
    p.add_argument("--json", help="also write the results as a JSON list here")
    args = p.parse_args()
    with open(args.scenario_json) as f:
        scenario = json.load(f)
    arrays = peer.array_list(scenario)
    import numpy
    import tensorstore

    peer.np, peer.ts = numpy, tensorstore
    os.environ.setdefault("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    os.environ.setdefault("AWS_REGION", REGION)
    try:
        thread_list = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if not thread_list or min(thread_list) < 1:
        p.error("--threads needs at least one count, each >= 1")
    results = []
    for n in thread_list:
        label = f"tensorstore s3 {scenario['name']} threads={n}"
        r = run_threads(scenario, arrays, args.endpoint, n, label)
        print(json.dumps(r), flush=True)
        results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
