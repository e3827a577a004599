#!/usr/bin/env bash
# 7th session (2026-12-04), second call, bundle of c46971f: batches planned as one
# (`Config::batches_per_plan`, automatic: as many as fill 3 GiB of batch buffer, at most
# 16). GPU tests of the new paths and of the lease; then the scenarios whose targets
# were missed, CUDA (automatic, and one batch a plan on `default`) beside the host
# engine, and tensorstore's best on `default`'s data.
set -u
. bench/peers/h200-2026-12-03/common.sh
echo "== GPU tests $(date +%T)"
for t in plans_of_several_batches_equal_the_host_engine_gpu a_failing_batch_in_a_plan_fails_as_it_would_alone_gpu \
  a_device_failure_fails_every_batch_of_its_plan_gpu smoke_scenario_equals_the_host_engine_gpu \
  held_batches_stay_distinct_and_device_api_works_gpu on_error_fill_fills_the_failed_sample_on_the_device_and_keeps_the_others_gpu; do
  s=$(date +%s); timeout 100 $B/tests/damacy-tests --exact device::$t --test-threads=1 > $OUT/j/t-$t.log 2>&1
  echo "$t rc=$? $(( $(date +%s) - s )) s $(grep -E 'test result' $OUT/j/t-$t.log | cut -c1-40)"
done
plans() { python3 -c "import json,sys; r=json.load(open('$OUT/j/$1.json')); print('   ', '$1', 'per plan', r['batches_per_plan'], 'plans', r['plans'], 'batches', r['stats']['batches'], 'amp %.3f' % r['decode_amplification'], 'wave chunks', r['gpu_wave_chunks'], 'slots', r['gpu_wave_slots'], 'buffers', r['batches_in_flight'])"; }
for sc in default small-batch many-arrays-8 smoke quickstart mixed-dtype latency-none latency-50ms; do
  echo "== $sc $(date +%T)"
  timeout 90 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-cuda $sc --backend cuda; plans $sc-cuda
  b $sc-host $sc --backend host --no-ceiling
done
echo "== default: one batch a plan, and 2 $(date +%T)"
b default-cuda-1 default --backend cuda --batches-per-plan 1; plans default-cuda-1
b default-cuda-2 default --backend cuda --batches-per-plan 2; plans default-cuda-2
b default-cuda-again default --backend cuda; plans default-cuda-again
echo "== tensorstore best on default $(date +%T)"
timeout 150 python3 bench/peers/tensorstore_bench.py --scenario-json bench/scenarios/default.json \
  --data /tmp/d-default --threads 16 --configs best,best-cache --json $OUT/j/ts.json > $OUT/j/ts.log 2>&1
python3 -c "import json; [print('ts', p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/ts.json'))]"
for f in latency-none-cuda latency-50ms-cuda latency-50ms-host; do
  echo "$f: $(grep -h 'first batch' $OUT/j/$f.txt | cut -c1-60)"
done
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
