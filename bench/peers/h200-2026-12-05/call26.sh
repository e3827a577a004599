#!/usr/bin/env bash
# 10th session (2026-12-05), the second one-GPU call, same bundle as call24: the built-in
# scenarios the ">= 2x the host engine, >= 70% of ceiling" rows were measured on
# (7th session), both engines (the CUDA engine with its same-run ceiling), after the host
# engine's gather (ninth session) made the host side faster; then the two fixture-parity
# GPU tests, which need ~130-150 s each (call24 gave them 100 s), side by side with 240 s.
# A scenario is skipped once the call has run 300 s, so the tests and the archive fit.
set -u
. bench/peers/h200-2026-12-03/common.sh
T0=$(date +%s)
plans() { python3 -c "import json,sys; r=json.load(open('$OUT/j/$1.json')); c=r.get('ceiling_gvox_per_s'); print('   ', '$1', 'per plan', r['batches_per_plan'], 'plans', r['plans'], 'batches', r['stats']['batches'], 'amp %.3f' % r['decode_amplification'], 'ceiling', c, 'share', None if not c else round(r['gvox_per_s']/c, 3), 'first', round(r['time_to_first_batch_s'], 3))" 2>&1 | tail -1; }
for sc in default small-batch many-arrays-8 quickstart smoke latency-none latency-50ms mixed-dtype many-arrays-10k; do
  if [ $(( $(date +%s) - T0 )) -gt 300 ]; then echo "== $sc skipped (time)"; continue; fi
  echo "== $sc $(date +%T)"
  timeout 100 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-host $sc --backend host --no-ceiling; plans $sc-host
  b $sc-cuda $sc --backend cuda; plans $sc-cuda
  rm -rf /tmp/d-$sc
done
echo "== fixture-parity GPU tests, side by side $(date +%T)"
for t in fixtures_equal_the_host_engine_with_nvcomp_gpu fixtures_equal_the_host_engine_without_nvcomp_gpu; do
  ( s=$(date +%s); timeout 240 $B/tests/damacy-tests --exact device::$t --test-threads=1 > $OUT/j/t-$t.log 2>&1
    echo "$t rc=$? $(( $(date +%s) - s )) s $(grep -E 'test result' $OUT/j/t-$t.log | cut -c1-40)" > $OUT/j/t-$t.sum ) &
done
wait $(jobs -p)
cat $OUT/j/t-*.sum
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
