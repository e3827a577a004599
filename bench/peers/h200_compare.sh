#!/usr/bin/env bash
# On the GPU host: damacy (host engine, and the CUDA engine when built in) and the
# tensorstore peer on the same generated dataset and crop sequence, same thread count.
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
    echo "damacy $backend rc=$?"; grep -E "throughput|amplification|ceiling|stages|first batch" "$OUT/damacy-$scenario-$backend.log"
done
python3 "$root/bench/peers/tensorstore_bench.py" --scenario-json "$root/bench/scenarios/$scenario.json" \
    --data "$data" --threads "$threads" --json "$OUT/tensorstore-$scenario.json" > "$OUT/tensorstore-$scenario.log" 2>&1
echo "tensorstore rc=$?"; tail -2 "$OUT/tensorstore-$scenario.log"
