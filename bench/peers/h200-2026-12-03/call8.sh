#!/usr/bin/env bash
# Written in the 4th session of 2026-12-03, NOT RUN yet (no device time was left):
# `small-batch` against batch buffers and wave slots; the cached epochs of `default` after the batch-wide cache probe and the one-lock release of
# a batch's hits, against the number of batch buffers (is the round trip of three 1 GB
# buffers the bound?), with tensorstore's best-cache beside them in the same run; then the
# Python GPU suite on the wheel from `cargo xtask wheel` (carry target/wheels too).
set -u
. bench/peers/h200-2026-12-03/common.sh
echo "== small-batch against batch buffers and wave slots $(date +%T)"
# One wave per small batch: with 3 batch buffers at most 3 waves (3 nvCOMP calls of
# ~9 ms) are in flight whatever the slot count, which would explain why 8 slots did not
# beat 3 (third session).
$D gen --scenario small-batch --out /tmp/d-small-batch --threads 16 | tail -1
b sb-host small-batch --backend host
for n in 3 8 12; do
  b sb-b$n-s8 small-batch --backend cuda --no-ceiling --batches-in-flight $n --gpu-wave-slots 8
done
echo "== cached epochs against batch buffers $(date +%T)"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
b nocache default --backend cuda --no-ceiling
for n in 3 6 10; do
  b c4G-b$n default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --batches-in-flight $n
done
b c1G-b6 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 1G --batches-in-flight 6
b host-c4G default --backend host --no-ceiling --epochs 3 --chunk-cache 4G
echo "== tensorstore best-cache, same data $(date +%T)"
timeout 200 python3 bench/peers/tensorstore_bench.py --scenario-json bench/scenarios/default.json \
  --data /tmp/d-default --threads 16 --configs best,best-cache --json $OUT/j/ts.json > $OUT/j/ts.log 2>&1; echo "rc=$?"
python3 -c "import json; [print(p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/ts.json'))]"
echo "== Python GPU suite $(date +%T)"
python3 -m pip install --no-deps --quiet target/wheels/damacy-*.whl && \
  timeout 240 python3 -m pytest -q -p no:cacheprovider crates/damacy-py/tests_gpu > $OUT/j/pytest-gpu.txt 2>&1; echo "rc=$?"
tail -5 $OUT/j/pytest-gpu.txt
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
