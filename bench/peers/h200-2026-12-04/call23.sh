#!/usr/bin/env bash
# 7th session (2026-12-04), sixth call, bundle of 71df493 (the damacy binary only): the
# automatic plan size (as many batches as fill 3 GiB of buffer, at most 16) against set
# counts: `default` (automatic: 3) with 2, 3, 4 and 6 a plan on both engines (4 and 6
# need a larger GPU budget: 4 or 6 GiB buffers, 3 of them); `small-batch` (automatic: 16)
# with 4, 8, 16 on both engines.
set -u
. bench/peers/h200-2026-12-03/common.sh
plans() { python3 -c "import json,sys; r=json.load(open('$OUT/j/$1.json')); print('   ', '$1', 'per plan', r['batches_per_plan'], 'plans', r['plans'], 'batches', r['stats']['batches'], 'amp %.3f' % r['decode_amplification'], 'wave chunks', r['gpu_wave_chunks'])"; }
for sc in default small-batch; do
  timeout 90 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
done
echo "== default, CUDA $(date +%T)"
for k in 2 3 4 6; do b df-cuda-$k default --backend cuda --no-ceiling --batches-per-plan $k --gpu-memory 48G; plans df-cuda-$k; done
echo "== small-batch, CUDA and host $(date +%T)"
for k in 4 8 16; do
  b sb-cuda-$k small-batch --backend cuda --no-ceiling --batches-per-plan $k; plans sb-cuda-$k
  b sb-host-$k small-batch --backend host --no-ceiling --batches-per-plan $k; plans sb-host-$k
done
echo "== default, host $(date +%T)"
for k in 2 3 4; do b df-host-$k default --backend host --no-ceiling --batches-per-plan $k; plans df-host-$k; done
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
