#!/usr/bin/env python3
"""damacy.torch under torch.distributed: aggregate throughput of one rank per GPU.

Run with torchrun, once per world size, on the same dataset, e.g.

    damacy gen --scenario default --out /tmp/d-default
    torchrun --standalone --nproc_per_node 1 bench/peers/torch_ranks_bench.py \
        --scenario default --data /tmp/d-default --threads 32 --json one.json
    torchrun --standalone --nproc_per_node 2 bench/peers/torch_ranks_bench.py \
        --scenario default --data /tmp/d-default --threads 32 --json two.json

Each rank iterates a ``damacy.torch.DamacyDataset`` over the scenario's crop sequence
(every world_size-th crop from its rank, the adapter's split) on its own GPU
(``LOCAL_RANK``; the host engine where there is none, with the ``gloo`` process group),
with ``--threads / world_size`` decode threads. It takes ``--warmup`` batches, waits for
every rank (a barrier), then times ``--timed`` batches; a device
batch counts once torch's stream has finished with it (``torch.cuda.synchronize``).
Aggregate: every rank's timed voxels over the longest rank's window, from the common
start. Rank 0 prints one JSON object (and writes it with ``--json``). This is the Python
twin of ``damacy bench --devices 0,1``; the ratio of the two runs' aggregates is the
scaling figure.

Run on the dev machine (no GPU) with PyPI's torch 2.15.0 in its own venv (CI installs
no torch: 5.4 GiB with its CUDA libraries), the wheel of ``cargo xtask wheel``, gloo and
the host engine: ``torchrun --standalone --nproc_per_node 1|2 ... --scenario default
--data /tmp/bd/default --threads 2 --warmup 2 --timed 8`` gave 0.337 Gvox/s for one rank
of 2 threads and 0.336 for two of 1 thread (each rank 8 batches, checksums printed);
on the GPU host it runs on NCCL, one GPU a rank.
"""

import argparse
import json
import math
import os
import time

import torch
import torch.distributed as dist

import damacy
from damacy.torch import DamacyDataset


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", required=True, help="built-in scenario name or JSON file")
    ap.add_argument("--data", required=True, help="the scenario's dataset (generated if absent)")
    ap.add_argument("--threads", type=int, default=0, help="decode threads in all (0 = all cores)")
    ap.add_argument("--warmup", type=int, default=4, help="warm-up batches per rank")
    ap.add_argument("--timed", type=int, default=60, help="timed batches per rank")
    ap.add_argument("--json", help="rank 0 writes the report here too")
    args = ap.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    threads = args.threads or os.cpu_count() or 1
    each = max(1, threads // world)

    # Rank 0 generates the dataset if absent; the others wait, then find it in place.
    if rank == 0:
        data = damacy.gen_scenario(args.scenario, args.data, threads)
    dist.barrier()
    if rank != 0:
        data = damacy.gen_scenario(args.scenario, args.data, each)
    cfg = data.config(decode_threads=each)
    dataset = DamacyDataset(cfg, data.samples)
    warm, timed = args.warmup, args.timed

    voxels_per_batch = data.samples_per_batch * math.prod(data.sample_shape)
    batches = iter(dataset)
    t0 = time.perf_counter()
    first = None
    for _ in range(warm):
        next(batches)
        first = first if first is not None else time.perf_counter() - t0
    if cuda:
        torch.cuda.synchronize()
    dist.barrier()
    start = time.perf_counter()
    checksum = 0.0
    for b in range(timed):
        t = next(batches)
        first = first if first is not None else time.perf_counter() - t0
        if b == timed - 1:
            # One value of the last batch, so the data is seen to arrive.
            checksum = float(t.reshape(-1)[0].item())
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    del batches

    mine = {
        "rank": rank,
        "backend": dataset.backend,
        "threads": each,
        "batches": timed,
        "voxels": timed * voxels_per_batch,
        "seconds": seconds,
        "gvox_per_s": timed * voxels_per_batch / seconds / 1e9,
        "time_to_first_batch_s": first,
        "last_value": checksum,
    }
    every = [None] * world
    dist.all_gather_object(every, mine)
    if rank == 0:
        longest = max(r["seconds"] for r in every)
        total = sum(r["voxels"] for r in every)
        report = {
            "scenario": args.scenario,
            "world_size": world,
            "gvox_per_s": total / longest / 1e9,
            "seconds": longest,
            "ranks": every,
        }
        text = json.dumps(report, indent=2)
        print(text)
        if args.json:
            with open(args.json, "w") as f:
                f.write(text)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
