#!/usr/bin/env bash
# damacy's host engine with and without its decoded-chunk cache, f32 and native output,
# against tensorstore's best configurations (no cache, and its chunk cache), interleaved
# in rounds, on one machine (the issue 18/19 CPU comparison in docs/PERFORMANCE.md).
# Usage (repository root, after `cargo build --release -p cli` and a peer venv with
# bench/peers/requirements.txt):
#   PY=/path/to/venv/bin/python DATA=/path/to/default-data THREADS=2 ROUNDS=2 \
#     bash bench/peers/dev_cache_compare.sh
set -u
D="${DAMACY:-target/release/damacy}"
DATA="${DATA:-target/bench-data/default}"
PY="${PY:-python3}"
T="${THREADS:-2}"
CACHE="${CACHE:-4G}"
native="$(mktemp --suffix=.json)"
"$PY" -c "
import json, sys
s = json.load(open('bench/scenarios/default.json'))
s['output_dtype'] = 'native'; s['name'] = 'default-native'
json.dump(s, open(sys.argv[1], 'w'))" "$native"
"$D" gen --scenario default --out "$DATA" | tail -1
peer() {
    "$PY" bench/peers/tensorstore_bench.py --scenario-json bench/scenarios/default.json \
        --data "$DATA" --threads "$T" "$@" 2>/dev/null | "$PY" -c "
import json, sys
for l in sys.stdin:
    d = json.loads(l)
    print('tensorstore', d['config'], 'epochs', d['epochs'], round(d['gvox_per_s'], 4), 'Gvox/s')"
}
for round in $(seq 1 "${ROUNDS:-2}"); do
    echo "== round $round"
    for sc in bench/scenarios/default.json "$native"; do
        "$D" bench --scenario "$sc" --data "$DATA" --backend host --threads "$T" --no-ceiling 2>&1 |
            grep -E "^scenario|throughput" | tr '\n' ' '
        echo
        "$D" bench --scenario "$sc" --data "$DATA" --backend host --threads "$T" --no-ceiling \
            --epochs 2 --chunk-cache "$CACHE" 2>&1 | grep -E "^epoch" | tr '\n' ' '
        echo
    done
    peer --configs best,best-cache
    peer --configs best-cache --epochs 2
done
rm -f "$native"
