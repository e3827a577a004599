"""What the Python layer adds per batch: a scenario's batches popped, exported with
``numpy.from_dlpack`` (or ``torch.from_dlpack`` on a GPU) and released, timed against
the time spent inside the Rust ``pop`` (``stats()["pop_wait_ns"]``).

    python examples/python_overhead.py [--scenario quickstart] [--batches 200] [--backend auto]

Prints the pipeline's throughput and the Python time per batch outside ``pop``.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import numpy as np

import damacy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="quickstart")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--data", type=pathlib.Path, default=None)
    args = ap.parse_args()
    data_dir = args.data or pathlib.Path(tempfile.gettempdir()) / f"damacy-{args.scenario}"
    data = damacy.gen_scenario(args.scenario, data_dir)
    cfg = data.config(backend=args.backend)
    with damacy.Pipeline(cfg) as p:
        export = np.from_dlpack
        if p.device != "cpu":
            import torch

            export = torch.from_dlpack
        p.push(data.samples())
        for _ in range(args.warmup):
            p.pop().release()
        p.reset_stats()
        start = time.perf_counter()
        for _ in range(args.batches):
            with p.pop() as batch:
                export(batch)
        wall = time.perf_counter() - start
        stats = p.stats()
    voxels = stats["voxels_delivered"]
    in_pop = stats["pop_wait_ns"] / 1e9
    per_batch_ms = (wall - in_pop) / args.batches * 1e3
    print(f"{p.backend}: {args.batches} batches of {data.samples_per_batch} x {data.sample_shape}")
    print(f"throughput {voxels / wall / 1e9:.3f} Gvox/s, {wall / args.batches * 1e3:.2f} ms per batch")
    print(f"python outside pop: {per_batch_ms:.4f} ms per batch")


if __name__ == "__main__":
    main()
