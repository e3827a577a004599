#!/usr/bin/env python3
"""Summarizes a `damacy bench --trace FILE` timeline (Chrome trace-event JSON).

Prints, per thread, the time each step took in all (ms) and its count; then, for a few
batches from the middle of the trace, every span in start order, so that the thread a
batch waits on can be read off. Standard library only.

    python3 bench/peers/trace_summary.py TRACE.json [--batches 4]
"""

import argparse
import collections
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--batches", type=int, default=4, help="batches to list span by span")
    args = ap.parse_args()
    with open(args.trace) as f:
        doc = json.load(f)
    events = doc["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("ph") == "M"}
    spans = [e for e in events if e.get("ph") == "X"]
    if not spans:
        print("no spans")
        return
    t_end = max(e["ts"] + e["dur"] for e in spans)
    t_start = min(e["ts"] for e in spans)
    wall_ms = (t_end - t_start) / 1e3
    print(f"{len(spans)} spans over {wall_ms:.1f} ms, dropped {doc.get('dropped', 0)}")
    per = collections.defaultdict(lambda: [0.0, 0])
    for e in spans:
        k = (names.get(e["tid"], str(e["tid"])), e["cat"])
        per[k][0] += e["dur"] / 1e3
        per[k][1] += 1
    # Threads of one kind (decode workers, preparers) are summed under one name.
    print(f"{'thread':<22} {'step':<10} {'ms':>9} {'count':>6} {'ms each':>8} {'% wall':>7}")
    for (thread, step), (ms, n) in sorted(per.items()):
        print(f"{thread:<22} {step:<10} {ms:9.1f} {n:6d} {ms / n:8.3f} {100 * ms / wall_ms:6.1f}%")
    batches = sorted({e["args"]["batch"] for e in spans if e["args"].get("batch") is not None})
    if not batches:
        return
    mid = batches[len(batches) // 2]
    pick = set(range(mid, mid + args.batches))
    lo = min(e["ts"] for e in spans if e["args"].get("batch") in pick)
    hi = max(e["ts"] + e["dur"] for e in spans if e["args"].get("batch") in pick)
    print(f"\nspans from batch {mid} to {mid + args.batches - 1} (ms from the first):")
    for e in sorted(spans, key=lambda e: e["ts"]):
        if e["ts"] + e["dur"] < lo or e["ts"] > hi:
            continue
        b = e["args"].get("batch")
        if b is not None and b not in pick:
            continue
        thread = names.get(e["tid"], str(e["tid"]))
        print(f"{(e['ts'] - lo) / 1e3:9.3f} +{e['dur'] / 1e3:8.3f}  {thread:<20} {e['name']}")


if __name__ == "__main__":
    main()
