#!/usr/bin/env bash
# 7th session (2026-12-04), third call, bundle of b92c344: the host engine plans several
# batches as one too (automatic count: as many as fill 3 GiB of buffer, at most 16).
# The host engine on every scenario of call19 again, the remaining built-in scenarios
# with both engines, `default`'s host engine interleaved with tensorstore's best (and
# one batch a plan beside it), and the 10,000-array scale pair.
set -u
. bench/peers/h200-2026-12-03/common.sh
plans() { python3 -c "import json,sys; r=json.load(open('$OUT/j/$1.json')); print('   ', '$1', 'per plan', r['batches_per_plan'], 'plans', r['plans'], 'batches', r['stats']['batches'], 'amp %.3f' % r['decode_amplification'])"; }
echo "== GPU test $(date +%T)"
t=plans_of_several_batches_equal_the_host_engine_gpu
timeout 100 $B/tests/damacy-tests --exact device::$t --test-threads=1 > $OUT/j/t-$t.log 2>&1
echo "$t rc=$? $(grep -E 'test result' $OUT/j/t-$t.log | cut -c1-40)"
echo "== default: host engine and tensorstore best, interleaved $(date +%T)"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
ts() { timeout 120 python3 bench/peers/tensorstore_bench.py --scenario-json bench/scenarios/default.json \
  --data /tmp/d-default --threads 16 --configs best --json $OUT/j/$1.json > $OUT/j/$1.log 2>&1
  python3 -c "import json; [print('$1', p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/$1.json'))]"; }
b df-host1 default --backend host --no-ceiling; plans df-host1
ts ts1
b df-host2 default --backend host --no-ceiling; plans df-host2
ts ts2
b df-host-1plan default --backend host --no-ceiling --batches-per-plan 1; plans df-host-1plan
b df-host3 default --backend host --no-ceiling; plans df-host3
b df-cuda default --backend cuda; plans df-cuda
for sc in small-batch many-arrays-8 smoke quickstart mixed-dtype latency-none latency-50ms; do
  echo "== $sc, host $(date +%T)"
  timeout 90 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-host $sc --backend host --no-ceiling; plans $sc-host
done
for sc in blosc bitshuffle v2 v2-blosc many-arrays; do
  echo "== $sc $(date +%T)"
  timeout 120 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-cuda $sc --backend cuda; plans $sc-cuda
  b $sc-host $sc --backend host --no-ceiling; plans $sc-host
done
echo "== many-arrays-10k and -8, CUDA $(date +%T)"
for sc in many-arrays-8 many-arrays-10k; do
  s=$(date +%s); timeout 150 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1; echo "gen $(( $(date +%s) - s )) s"
  b $sc-cuda $sc --backend cuda; plans $sc-cuda
done
for f in latency-50ms-host many-arrays-8-cuda many-arrays-10k-cuda; do
  echo "$f: $(grep -h 'first batch' $OUT/j/$f.txt | cut -c1-60)"
done
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
