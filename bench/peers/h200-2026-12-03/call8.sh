#!/usr/bin/env bash
# Written in the 4th session of 2026-12-03 (no device time was left), run in the 5th:
# `small-batch` against batch buffers and wave slots; the cached epochs of `default` after the batch-wide cache probe and the one-lock release of
# a batch's hits, against the number of batch buffers (is the round trip of three 1 GB
# buffers the bound?), with tensorstore's best-cache beside them in the same run; then the
# Python GPU suite on the wheel from `cargo xtask wheel` (carry target/wheels too).
set -u
. bench/peers/h200-2026-12-03/common.sh
echo "== the consumer-stream test of issue 19 $(date +%T)"
t=device::buffers_released_behind_a_held_consumer_stream_wait_for_it_while_the_cache_evicts_gpu
timeout 90 $B/tests/damacy-tests --exact $t --test-threads=1 > $OUT/j/consumer-stream.log 2>&1; echo "$t rc=$?"
grep -E "test result|panicked" -A3 $OUT/j/consumer-stream.log | head -6
echo "== small-batch against batch buffers and wave slots $(date +%T)"
# One wave per small batch: with 3 batch buffers at most 3 waves (3 nvCOMP calls of
# ~9 ms) are in flight whatever the slot count, which would explain why 8 slots did not
# beat 3 (third session).
$D gen --scenario small-batch --out /tmp/d-small-batch --threads 16 | tail -1
b sb-host small-batch --backend host
b sb-cuda small-batch --backend cuda
for n in 3 8 12; do
  b sb-b$n-s8 small-batch --backend cuda --no-ceiling --batches-in-flight $n --gpu-wave-slots 8
done
b sb-b16-s16 small-batch --backend cuda --no-ceiling --batches-in-flight 16 --gpu-wave-slots 16
b sb-b8-s8-p4 small-batch --backend cuda --no-ceiling --batches-in-flight 8 --gpu-wave-slots 8 --prepare-threads 4
echo "== cached epochs against batch buffers $(date +%T)"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
b nocache default --backend cuda
b nocache-b6 default --backend cuda --no-ceiling --batches-in-flight 6
b nocache-b6-s6 default --backend cuda --no-ceiling --batches-in-flight 6 --gpu-wave-slots 6
for n in 3 6 10; do
  b c4G-b$n default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --batches-in-flight $n
done
b c1G-b6 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 1G --batches-in-flight 6
b host-c4G default --backend host --no-ceiling --epochs 3 --chunk-cache 4G
echo "== every other built-in scenario: host, CUDA as configured, CUDA with 8 buffers and slots $(date +%T)"
for sc in quickstart blosc bitshuffle mixed-dtype v2 v2-blosc latency-none many-arrays-8; do
  $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-host $sc --backend host --no-ceiling
  b $sc-cuda $sc --backend cuda
  b $sc-b8-s8 $sc --backend cuda --no-ceiling --batches-in-flight 8 --gpu-wave-slots 8
done
echo "== profilers here: $(command -v perf nsys ncu | tr '\n' ' ')"
echo "== tensorstore best-cache, same data $(date +%T)"
timeout 200 python3 bench/peers/tensorstore_bench.py --scenario-json bench/scenarios/default.json \
  --data /tmp/d-default --threads 16 --configs best,best-cache --json $OUT/j/ts.json > $OUT/j/ts.log 2>&1; echo "rc=$?"
python3 -c "import json; [print(p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/ts.json'))]"
echo "== Python GPU suite $(date +%T)"
python3 -m pip install --no-deps --quiet target/wheels/damacy-0.1.0-cp310-abi3-manylinux_2_34_x86_64.whl && \
  timeout 240 python3 -m pytest -q -p no:cacheprovider crates/damacy-py/tests_gpu > $OUT/j/pytest-gpu.txt 2>&1; echo "rc=$?"
tail -5 $OUT/j/pytest-gpu.txt
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
