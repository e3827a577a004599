#!/usr/bin/env bash
# 7th session (2026-12-04), fifth call, bundle of 71df493 (the damacy binary only): the
# host engine cuts the read ops of a plan with fewer than twice its threads into parts
# (call21: planned 16 at a time, `many-arrays-8` read 8 shard files a plan and lost 13%).
# Host engine automatic against one a plan where call21 compared them, beside the CUDA
# engine; `default-long` host engine interleaved with tensorstore's best.
set -u
. bench/peers/h200-2026-12-03/common.sh
S=bench/peers/h200-2026-12-04/sc
plans() { python3 -c "import json,sys; r=json.load(open('$OUT/j/$1.json')); print('   ', '$1', 'per plan', r['batches_per_plan'], 'plans', r['plans'], 'batches', r['stats']['batches'], 'amp %.3f' % r['decode_amplification'])"; }
for sc in many-arrays-8 small-batch quickstart smoke; do
  echo "== $sc $(date +%T)"
  timeout 90 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-host $sc --backend host --no-ceiling; plans $sc-host
  b $sc-host-1plan $sc --backend host --no-ceiling --batches-per-plan 1; plans $sc-host-1plan
  b $sc-cuda $sc --backend cuda --no-ceiling; plans $sc-cuda
done
echo "== default-long, interleaved $(date +%T)"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
bl() { local name=$1; shift
  timeout 150 $D bench --scenario $S/default-long.json --data /tmp/d-default --threads 16 --json $OUT/j/$name.json "$@" > $OUT/j/$name.txt 2>&1
  echo "-- $name rc=$? $(grep -E '^throughput' $OUT/j/$name.txt | cut -c1-30)"
  grep -E "^per batch" $OUT/j/$name.txt | cut -c1-200; plans $name; }
ts() { timeout 150 python3 bench/peers/tensorstore_bench.py --scenario-json $S/default-long.json \
  --data /tmp/d-default --threads 16 --configs best --json $OUT/j/$1.json > $OUT/j/$1.log 2>&1
  python3 -c "import json; [print('$1', p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/$1.json'))]"; }
bl host1 --backend host --no-ceiling
ts ts1
bl host2 --backend host --no-ceiling
ts ts2
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
