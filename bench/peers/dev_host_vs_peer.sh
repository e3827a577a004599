#!/usr/bin/env bash
# The host engine against tensorstore's best configurations on `default-long` (60 timed
# batches), interleaved round by round: damacy f32 and native output, without and with
# its decoded-chunk cache, beside tensorstore `best` (native dtype, reads awaited, no
# Python-side copy, cache off) and `best-cache` (the same with its 8 GiB cache pool).
# Usage (repository root, after `cargo build --release -p cli` and a peer venv with
# bench/peers/requirements.txt):
#   PY=/path/to/venv/bin/python DATA=/path/to/default THREADS=2 ROUNDS=2 \
#     bash bench/peers/dev_host_vs_peer.sh
# SCENARIO=<scenario JSON> runs another scenario (e.g. `default-long` with 30 warm-up
# batches, bench/peers/default-long-30.json, for the steady state).
set -u
D="${DAMACY:-target/release/damacy}"
DATA="${DATA:-target/bench-data/default}"
PY="${PY:-python3}"
T="${THREADS:-2}"
S="${SCENARIO:-bench/peers/h200-2026-12-04/sc/default-long.json}"
native="$(mktemp --suffix=.json)"
"$PY" -c "
import json, sys
s = json.load(open('$S')); s['output_dtype'] = 'native'; s['name'] = 'default-long-native'
json.dump(s, open(sys.argv[1], 'w'))" "$native"
"$D" gen --scenario default --out "$DATA" | tail -1
host() { # name scenario args...
    local name="$1" sc="$2"; shift 2
    echo "damacy $name: $("$D" bench --scenario "$sc" --data "$DATA" --backend host --threads "$T" \
        --no-ceiling "$@" 2>&1 | grep -E "^throughput|^prepare|^amplification" |
        sed -E 's/ +source.*//; s/^prepare .*(up to .*)/\1/' | tr '\n' ' ')"
}
peer() {
    "$PY" bench/peers/tensorstore_bench.py --scenario-json "$S" --data "$DATA" --threads "$T" \
        --configs "$1" 2>/dev/null | "$PY" -c "
import json, sys
for l in sys.stdin:
    d = json.loads(l)
    print('tensorstore', d['config'] + ':', round(d['gvox_per_s'], 3), 'Gvox/s')"
}
for round in $(seq 1 "${ROUNDS:-2}"); do
    echo "== round $round $(date +%T)"
    host f32 "$S"
    peer best
    host native "$native"
    host f32-cache "$S" --chunk-cache 4G
    host native-cache "$native" --chunk-cache 4G
    peer best-cache
done
rm -f "$native"
