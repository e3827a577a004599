#!/usr/bin/env bash
# Session 2026-12-03 (4th), call 5: cuFile with a udev record for the root disk (issue 20),
# parallel batch preparation on small-batch, default and the cached epochs (issues 18, 19),
# the assemble-only ceiling of the cached epochs, GPU tests of the cache and wave slots.
set -u
. bench/peers/h200-2026-12-03/common.sh
echo "== cufile with a udev record $(date +%T)"
udev_record
mkdir -p /root/gd; (cd /tmp && CUFILE_FORCE_COMPAT_MODE=true timeout 60 python3 $OLDPWD/bench/peers/h200-2026-12-03/cufile_diag.py /root/gd/f 2>&1 | tail -6; grep -E "ERROR|NOTICE" cufile.log | tail -6)
timeout 120 $B/tests/kernels-kernels --test-threads=1 cufile_gpu > $OUT/kernels-cufile.txt 2>&1; echo "cufile_gpu rc=$?"
grep -E "^test |test result|panicked" -A2 $OUT/kernels-cufile.txt | head -20
echo "== small-batch $(date +%T)"
$D gen --scenario small-batch --out /tmp/d-small-batch --threads 16 | tail -1
b sb-host small-batch --backend host
b sb-cuda-p1 small-batch --backend cuda --prepare-threads 1
b sb-cuda-p4 small-batch --backend cuda --prepare-threads 4 --no-ceiling
b sb-cuda-p8 small-batch --backend cuda --prepare-threads 8 --no-ceiling
echo "== default $(date +%T)"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
b df-cuda-p1 default --backend cuda --prepare-threads 1
b df-cuda-p4 default --backend cuda --prepare-threads 4 --no-ceiling
b df-cache4G-p1 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --prepare-threads 1
b df-cache4G-p4 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --prepare-threads 4
b df-cache4G-p8 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --prepare-threads 8
b df-cache1G-clock-p4 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 1G --prepare-threads 4
b df-cache1G-lru-p4 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 1G --chunk-cache-policy lru --prepare-threads 4
echo "== assemble kernels of the cached epochs (ncu) $(date +%T)"
timeout 150 ncu --clock-control none --csv --metrics gpu__time_duration.sum -k regex:assemble --launch-count 600 \
  $D bench --scenario default --data /tmp/d-default --backend cuda --threads 16 --no-ceiling --epochs 3 --chunk-cache 4G --prepare-threads 4 > $OUT/j/ncu-assemble.csv 2>&1; echo "rc=$?"
grep -c assemble $OUT/j/ncu-assemble.csv
echo "== gpu tests $(date +%T)"
for t in device::device_cache_epochs_equal_the_host_engine_gpu device::every_wave_slot_count_equals_the_host_engine_gpu; do
  timeout 120 $B/tests/damacy-tests --exact $t --test-threads=1 > $OUT/j/t.log 2>&1; echo "$t rc=$?"; grep -E "test result|panicked" -A2 $OUT/j/t.log | head -4
done
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
