#!/usr/bin/env bash
# The issue-18 measurement suite on the GPU host, one call: for each scenario, damacy's
# host and CUDA engines (16 threads) and, where the peer can run it, tensorstore's three
# configurations (bench/peers/h200_compare.sh). Scale and latency scenarios run without
# the peer (it cannot add store latency, and 10,000 opens would time its open path).
# Usage (repository root, after `cargo xtask gpu-bundle --bench` here):
#   OUT=DIR bash bench/peers/h200_suite.sh [SCENARIO ...]
# Default scenarios: default small-batch latency-none latency-50ms many-arrays-8
# many-arrays-10k. Everything lands in $OUT/suite.tgz (the device tool returns few files)
# and a one-line summary per run on stdout.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
final="${OUT:-$PWD/gpu-out}"
work="$(mktemp -d /tmp/damacy-suite.XXXXXX)"
mkdir -p "$final"
threads="${THREADS:-16}"
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(default small-batch latency-none latency-50ms many-arrays-8 many-arrays-10k)
for sc in "${scenarios[@]}"; do
    case "$sc" in
    latency-* | many-arrays*) skip=1 ;;
    *) skip=0 ;;
    esac
    start=$(date +%s)
    OUT="$work" SKIP_PEER=$skip timeout "${STEP_TIMEOUT:-300}" bash "$here/h200_compare.sh" "$sc" "$threads" \
        > "$work/suite-$sc.log" 2>&1
    echo "== $sc rc=$? $(( $(date +%s) - start )) s"
    grep -E "throughput|ceiling|first batch|per batch|tensorstore|damacy (host|cuda)" "$work/suite-$sc.log"
    if [ "$sc" = default ] && [ "${CACHE_RUNS:-1}" = 1 ]; then
        # Issue 19 (host half): the decoded-chunk cache over epochs, full (4 GiB > the
        # 2 GiB decoded dataset) and half (1 GiB, both policies), against tensorstore's
        # chunk cache over the same epochs.
        d="$here/../../target/gpu-bundle/bin/damacy"
        for c in "4G clock" "1G clock" "1G lru"; do
            set -- $c
            "$d" bench --scenario default --data /tmp/damacy-bench/default --backend host \
                --threads "$threads" --no-ceiling --epochs 3 --chunk-cache "$1" --chunk-cache-policy "$2" \
                --json "$work/damacy-default-host-cache-$1-$2.json" > "$work/cache-$1-$2.log" 2>&1
            echo "host cache $1 $2 rc=$?"; grep -E "chunk cache|^epoch" "$work/cache-$1-$2.log"
        done
        python3 "$here/tensorstore_bench.py" --scenario-json "$here/../scenarios/default.json" \
            --data /tmp/damacy-bench/default --threads "$threads" --configs best-cache --epochs 3 \
            --json "$work/tensorstore-default-epochs3.json" 2>/dev/null | cut -c1-160
    fi
    # Free the disk for the next scenario's dataset.
    rm -rf "/tmp/damacy-bench/$sc"
    # After every scenario, so that a call cut short still returns what finished.
    tar czf "$final/suite.tgz" -C "$work" .
done
