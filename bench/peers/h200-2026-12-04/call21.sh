#!/usr/bin/env bash
# 7th session (2026-12-04), fourth call, bundle of b92c344 (as call20): the host engine
# against tensorstore's best in steady state. `default`'s timed window is 20 batches
# after 2 of warm-up; planned 3 at a time, the host engine's 3 GiB buffers are first
# touched (page faults) inside it. `sc/default-long.json`: the same data and crops, 9
# batches of warm-up and 60 timed, for both (tensorstore takes the same scenario file).
# Also the host engine one batch a plan beside the automatic count where call20 saw it
# lose (`many-arrays-8`, `small-batch`).
set -u
. bench/peers/h200-2026-12-03/common.sh
S=bench/peers/h200-2026-12-04/sc
plans() { python3 -c "import json,sys; r=json.load(open('$OUT/j/$1.json')); print('   ', '$1', 'per plan', r['batches_per_plan'], 'plans', r['plans'], 'batches', r['stats']['batches'], 'amp %.3f' % r['decode_amplification'])"; }
bl() { local name=$1; shift
  timeout 150 $D bench --scenario $S/default-long.json --data /tmp/d-default --threads 16 --json $OUT/j/$name.json "$@" > $OUT/j/$name.txt 2>&1
  echo "-- $name rc=$? $(grep -E '^throughput' $OUT/j/$name.txt | cut -c1-30)"
  grep -E "^per batch|^prepare" $OUT/j/$name.txt | cut -c1-200; plans $name; }
ts() { timeout 150 python3 bench/peers/tensorstore_bench.py --scenario-json $S/default-long.json \
  --data /tmp/d-default --threads 16 --configs best --json $OUT/j/$1.json > $OUT/j/$1.log 2>&1
  python3 -c "import json; [print('$1', p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/$1.json'))]"; }
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
echo "== default-long, interleaved $(date +%T)"
bl host1 --backend host --no-ceiling
ts ts1
bl host2 --backend host --no-ceiling
ts ts2
bl host-1plan --backend host --no-ceiling --batches-per-plan 1
bl host3 --backend host --no-ceiling
bl cuda --backend cuda --no-ceiling
bl cuda-1plan --backend cuda --no-ceiling --batches-per-plan 1
for sc in many-arrays-8 small-batch; do
  echo "== $sc, host, automatic and one a plan $(date +%T)"
  timeout 90 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-host $sc --backend host --no-ceiling; plans $sc-host
  b $sc-host-1plan $sc --backend host --no-ceiling --batches-per-plan 1; plans $sc-host-1plan
done
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
