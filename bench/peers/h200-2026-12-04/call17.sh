#!/usr/bin/env bash
# 6th session (2026-12-04), last call, same bundle as call16 (60793d3): scale at 10,000
# arrays against 8 (same shape and crops; compared on each one's share of its same-run
# ceiling), and the host engine against tensorstore's best (uncached) on `default`,
# interleaved three and two times (call16: 1.22x and 1.56x in two runs).
set -u
. bench/peers/h200-2026-12-03/common.sh
echo "== many-arrays-10k and -8, CUDA $(date +%T)"
for sc in many-arrays-8 many-arrays-10k; do
  s=$(date +%s); timeout 150 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1; echo "gen $(( $(date +%s) - s )) s"
  b $sc-cuda $sc --backend cuda
  b $sc-host $sc --backend host --no-ceiling
done
for f in many-arrays-8-cuda many-arrays-10k-cuda; do
  echo "$f: $(grep -h 'first batch' $OUT/j/$f.txt | cut -c1-60)"
done
echo "== default: host engine and tensorstore best, interleaved $(date +%T)"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
ts() { timeout 120 python3 bench/peers/tensorstore_bench.py --scenario-json bench/scenarios/default.json \
  --data /tmp/d-default --threads 16 --configs best --json $OUT/j/$1.json > $OUT/j/$1.log 2>&1
  python3 -c "import json; [print('$1', p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/$1.json'))]"; }
b df-host1 default --backend host --no-ceiling
ts ts1
b df-host2 default --backend host --no-ceiling
ts ts2
b df-host3 default --backend host --no-ceiling
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
