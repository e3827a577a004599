#!/usr/bin/env bash
# On the GPU host: two builds of `damacy` (say, before and after a change) on the same
# scenario, interleaved round by round so that drift of the machine hits both alike.
# Each build generates its own copy of the dataset (the generator is deterministic; a
# build only trusts a dataset marked by itself).
# Usage: bash bench/peers/ab_compare.sh BEFORE_BIN AFTER_BIN SCENARIO THREADS ROUNDS [BACKENDS]
#   SCENARIO is a built-in name or a JSON file; BACKENDS defaults to "cuda host".
# Prints one line per run and the median Gvox/s per build and backend; JSON under $OUT.
set -uo pipefail
before="$1"; after="$2"; scenario="$3"; threads="$4"; rounds="$5"; backends="${6:-cuda host}"
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
for build in before after; do
    bin="${!build}"
    start=$(date +%s)
    "$bin" gen --scenario "$scenario" --out "/tmp/ab-$build" --threads "$threads" > /dev/null 2>&1 \
        || { echo "gen with $build failed"; exit 1; }
    echo "gen $build: $(( $(date +%s) - start )) s"
done
for r in $(seq 1 "$rounds"); do
    for backend in $backends; do
        for build in before after; do
            bin="${!build}"
            json="$OUT/ab-$build-$backend-$r.json"
            line="$("$bin" bench --scenario "$scenario" --data "/tmp/ab-$build" --backend "$backend" \
                --threads "$threads" --no-ceiling --json "$json" 2>&1 | grep -m1 -E '^ *throughput')"
            echo "round $r $backend $build: $line"
            echo "$backend $build $(echo "$line" | grep -oE '[0-9]+\.[0-9]+ Gvox/s' | head -1)" >> "$OUT/ab.txt"
        done
    done
done
for backend in $backends; do
    for build in before after; do
        med="$(grep "^$backend $build " "$OUT/ab.txt" | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')"
        echo "median $backend $build: $med Gvox/s"
    done
done
