#!/usr/bin/env bash
# Dev machine: two builds of `damacy` (host batch buffers without and with huge pages)
# interleaved on `default-long` (60 timed batches), host engine, uncached and with its
# decoded-chunk cache (where the batch is all scatter), f32 and native output.
# Usage: BEFORE=bin AFTER=bin DATA=/path/to/default THREADS=2 ROUNDS=2 bash bench/peers/dev_hugepages_ab.sh
set -u
S=bench/peers/h200-2026-12-04/sc/default-long.json
T="${THREADS:-2}"
native="$(mktemp --suffix=.json)"
python3 -c "
import json, sys
s = json.load(open('$S')); s['output_dtype'] = 'native'; s['name'] = 'default-long-native'
json.dump(s, open(sys.argv[1], 'w'))" "$native"
run() { # build scenario args...
    local bin="$1" sc="$2"; shift 2
    "$bin" bench --scenario "$sc" --data "$DATA" --backend host --threads "$T" --no-ceiling "$@" 2>&1 |
        grep -E "^throughput|^per batch" | sed -E 's/ +source.*//; s/per batch ([0-9.]+ ms wall).*assemble ([0-9.]+).*/\1, assemble \2 ms/' | tr '\n' ' '
}
for r in $(seq 1 "${ROUNDS:-2}"); do
    for case in "f32:$S:" "f32-cache:$S:--chunk-cache 4G" "native:$native:"; do
        IFS=: read -r name sc args <<< "$case"
        for build in BEFORE AFTER; do
            # shellcheck disable=SC2086
            echo "round $r $name $build: $(run "${!build}" "$sc" $args)"
        done
    done
done
rm -f "$native"
