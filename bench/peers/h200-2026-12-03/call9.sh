#!/usr/bin/env bash
# 5th session of 2026-12-03, after call8: pinned descriptors at every batch's end (the
# cached epochs' suspected bound: a pageable upload per batch end drained `compute`), and
# automatic batch buffers and wave slots (8 and 8 for small batches). GPU tests of the
# changed paths first, each in its own process; then every built-in scenario, host
# engine beside the CUDA engine as configured by default; the cache; tensorstore's best
# on the same data; the Python GPU suite on the wheel of this tree.
set -u
. bench/peers/h200-2026-12-03/common.sh
echo "== GPU tests $(date +%T)"
for t in buffers_released_behind_a_held_consumer_stream_wait_for_it_while_the_cache_evicts_gpu \
  device_cache_epochs_equal_the_host_engine_gpu every_wave_slot_count_equals_the_host_engine_gpu \
  smoke_scenario_equals_the_host_engine_gpu held_batches_stay_distinct_and_device_api_works_gpu \
  fixtures_equal_the_host_engine_with_nvcomp_gpu on_error_fill_fills_the_failed_sample_on_the_device_and_keeps_the_others_gpu; do
  timeout 100 $B/tests/damacy-tests --exact device::$t --test-threads=1 > $OUT/j/t-$t.log 2>&1
  echo "$t rc=$? $(grep -E 'test result' $OUT/j/t-$t.log | cut -c1-60)"
done
echo "== small-batch: automatic buffers and slots against 3 and 3 $(date +%T)"
$D gen --scenario small-batch --out /tmp/d-small-batch --threads 16 | tail -1
b sb-host small-batch --backend host
b sb-cuda small-batch --backend cuda
b sb-b3-s3 small-batch --backend cuda --no-ceiling --batches-in-flight 3 --gpu-wave-slots 3
b sb-host2 small-batch --backend host --no-ceiling
b sb-cuda2 small-batch --backend cuda --no-ceiling
echo "== default, uncached and cached $(date +%T)"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
b df-host default --backend host --no-ceiling
b df-cuda default --backend cuda
for n in 3 6; do
  b c4G-b$n default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --batches-in-flight $n
done
b c4G-p1 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --prepare-threads 1
b c1G default --backend cuda --no-ceiling --epochs 3 --chunk-cache 1G
b host-c4G default --backend host --no-ceiling --epochs 3 --chunk-cache 4G
echo "== tensorstore best and best-cache, same data $(date +%T)"
timeout 200 python3 bench/peers/tensorstore_bench.py --scenario-json bench/scenarios/default.json \
  --data /tmp/d-default --threads 16 --configs best,best-cache --json $OUT/j/ts.json > $OUT/j/ts.log 2>&1; echo "rc=$?"
python3 -c "import json; [print(p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/ts.json'))]"
echo "== every other built-in scenario: host, then CUDA as configured by default $(date +%T)"
for sc in quickstart mixed-dtype latency-none latency-50ms many-arrays-8 blosc bitshuffle v2 v2-blosc; do
  $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-host $sc --backend host --no-ceiling
  b $sc-cuda $sc --backend cuda
done
for f in latency-none-cuda latency-50ms-cuda latency-none-host latency-50ms-host; do
  echo "$f: $(grep -h 'first batch' $OUT/j/$f.txt | cut -c1-60)"
done
echo "== Python GPU suite $(date +%T)"
python3 -m pip install --no-deps --quiet target/wheels/damacy-0.1.0-cp310-abi3-manylinux_2_34_x86_64.whl && \
  timeout 120 python3 -m pytest -q -p no:cacheprovider crates/damacy-py/tests_gpu > $OUT/j/pytest-gpu.txt 2>&1; echo "rc=$?"
tail -3 $OUT/j/pytest-gpu.txt
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
