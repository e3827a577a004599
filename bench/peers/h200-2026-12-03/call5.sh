#!/usr/bin/env bash
# Session 2026-12-03 (4th), call 5: cuFile with a udev record for the root disk (issue 20),
# parallel batch preparation on small-batch, default and the cached epochs (issues 18, 19),
# the assemble-only ceiling of the cached epochs, GPU tests of the cache and wave slots.
set -u
B=target/gpu-bundle
for f in $B/*/*.xz; do xz -d "$f"; done
chmod +x $B/bin/damacy $B/tests/*
export DAMACY_NVCOMP_LIB=$(ls $PWD/$B/lib/libnvcomp.so* | head -1)
D=$PWD/$B/bin/damacy
exec > >(tee -a $OUT/log.txt) 2>&1
echo "== cufile with a udev record $(date +%T)"
# libcufile reads the file system's udev properties; this container has no udev database,
# so registration fails (5027). A record for the disk under /root supplies them.
dev=$(mountpoint -d /); echo "root device $dev"
mkdir -p /run/udev/data && printf 'E:ID_FS_USAGE=filesystem\nE:ID_FS_TYPE=ext4\n' > /run/udev/data/b$dev
mkdir -p /root/gd; (cd /tmp && CUFILE_FORCE_COMPAT_MODE=true timeout 60 python3 $PWD/.devrun/cufile_diag.py /root/gd/f 2>&1 | tail -6; grep -E "ERROR|NOTICE" cufile.log | tail -6)
export DAMACY_CUFILE_LIB=/usr/local/cuda/lib64/libcufile.so.0 CUFILE_FORCE_COMPAT_MODE=true
export DAMACY_GDS_TEST_DIR=/root/gdstmp; mkdir -p $DAMACY_GDS_TEST_DIR
timeout 120 $B/tests/kernels-kernels --test-threads=1 cufile_gpu > $OUT/kernels-cufile.txt 2>&1; echo "cufile_gpu rc=$?"
grep -E "^test |test result|panicked" -A2 $OUT/kernels-cufile.txt | head -20
mkdir -p $OUT/j
b() { local name=$1 sc=$2; shift 2
  timeout 150 $D bench --scenario $sc --data /tmp/d-$sc --threads 16 --json $OUT/j/$name.json "$@" > $OUT/j/$name.txt 2>&1
  echo "-- $name rc=$? $(grep -E '^throughput' $OUT/j/$name.txt | cut -c1-30) | $(grep -E 'achieved' $OUT/j/$name.txt | sed 's/.*->//')"
  grep -E "^per batch|^prepare|chunk cache|^epoch" $OUT/j/$name.txt | cut -c1-240
}
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
