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
    # Free the disk for the next scenario's dataset.
    rm -rf "/tmp/damacy-bench/$sc"
    # After every scenario, so that a call cut short still returns what finished.
    tar czf "$final/suite.tgz" -C "$work" .
done
