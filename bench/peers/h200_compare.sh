#!/usr/bin/env bash
# On the GPU host: damacy (host engine, and the CUDA engine when built in) and the
# tensorstore peer on the same generated dataset and crop sequence, same thread count.
# The peer runs three configurations (bench/peers/tensorstore_bench.py: naive collate
# copy, best = native dtype/reads awaited/no copy, best-cache = best with its chunk
# cache); the summary states every damacy figure against the best of them.
# PEER_CONFIGS overrides the list; SKIP_PEER=1 skips the peer.
# Usage (from the repository root, after `cargo xtask gpu-bundle` here):
#   bash bench/peers/h200_compare.sh SCENARIO THREADS
# Writes JSON reports and logs under $OUT (default ./gpu-out). Needs python3 with
# tensorstore and numpy (the GPU host has them).
set -uo pipefail
scenario="${1:-default}"
threads="${2:-16}"
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
damacy="$root/target/gpu-bundle/bin/damacy"
data="${DATA:-/tmp/damacy-bench/$scenario}"
export DAMACY_NVCOMP_LIB="${DAMACY_NVCOMP_LIB:-$root/target/gpu-bundle/lib}"
nproc; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
start=$(date +%s)
"$damacy" gen --scenario "$scenario" --out "$data" --threads "$threads" 2>&1 | tail -1
echo "gen: $(( $(date +%s) - start )) s"
for backend in host cuda; do
    "$damacy" bench --scenario "$scenario" --data "$data" --backend "$backend" --threads "$threads" \
        --json "$OUT/damacy-$scenario-$backend.json" > "$OUT/damacy-$scenario-$backend.log" 2>&1
    echo "damacy $backend rc=$?"; grep -E "throughput|amplification|ceiling|stages|per batch|first batch" "$OUT/damacy-$scenario-$backend.log"
done
[ "${SKIP_PEER:-0}" = 1 ] && exit 0
python3 "$root/bench/peers/tensorstore_bench.py" --scenario-json "$root/bench/scenarios/$scenario.json" \
    --data "$data" --threads "$threads" --configs "${PEER_CONFIGS:-naive,best,best-cache}" \
    --json "$OUT/tensorstore-$scenario.json" > "$OUT/tensorstore-$scenario.log" 2>&1
echo "tensorstore rc=$?"
python3 - "$OUT" "$scenario" <<'PY'
import json, os, sys
out, sc = sys.argv[1], sys.argv[2]
peer = json.load(open(f"{out}/tensorstore-{sc}.json"))
best = max(p["gvox_per_s"] for p in peer)
for p in peer:
    print(f"{sc} tensorstore {p['config']:<10} {p['gvox_per_s']:.3f} Gvox/s ({p['gvox_per_s'] / best:.2f}x best)")
for b in ("host", "cuda"):
    f = f"{out}/damacy-{sc}-{b}.json"
    if os.path.exists(f):
        d = json.load(open(f))
        print(f"{sc} damacy {b:<4} {d['gvox_per_s']:.3f} Gvox/s = {d['gvox_per_s'] / best:.2f}x tensorstore best")
PY
