#!/usr/bin/env bash
# Call 3: GPU tests one process each (multi-slot, device cache), kernels' frame check and
# cuFile tests, the device cache on default, small-batch against host.
set -u
B=target/gpu-bundle
for f in $B/*/*.xz; do xz -d "$f"; done
chmod +x $B/bin/damacy $B/tests/*
export DAMACY_NVCOMP_LIB=$(ls $PWD/$B/lib/libnvcomp.so* | head -1)
export DAMACY_CUFILE_LIB=/usr/local/cuda/lib64/libcufile.so.0 CUFILE_FORCE_COMPAT_MODE=true
export DAMACY_GDS_TEST_DIR=/root/gdstmp; mkdir -p $DAMACY_GDS_TEST_DIR
D=$PWD/$B/bin/damacy
exec > >(tee -a $OUT/log.txt) 2>&1
echo "== damacy gpu tests, one process each $(date +%T)"
ok=0; bad=0
for t in $($B/tests/damacy-tests --list 2>/dev/null | grep '_gpu: test' | sed 's/: test$//'); do
  timeout 120 $B/tests/damacy-tests --exact $t --test-threads=1 > $OUT/t.log 2>&1; rc=$?
  if [ $rc -eq 0 ]; then ok=$((ok+1)); else bad=$((bad+1)); echo "FAIL $t rc=$rc"; grep -E "panicked" -A2 $OUT/t.log | head -4; fi
done
echo "damacy _gpu: ok=$ok failed=$bad"
echo "== kernels frames_gpu $(date +%T)"
timeout 150 $B/tests/kernels-kernels --test-threads=1 --nocapture frames_gpu > $OUT/kernels-frames.txt 2>&1; echo "rc=$?"
grep -E "^test |test result|GB/s|panicked" $OUT/kernels-frames.txt | head -20
echo "== kernels cufile_gpu $(date +%T)"
timeout 200 $B/tests/kernels-kernels --test-threads=1 --nocapture cufile_gpu > $OUT/kernels-cufile.txt 2>&1; echo "rc=$?"
grep -E "^test |test result|panicked" -A2 $OUT/kernels-cufile.txt | head -20
echo "== benches $(date +%T)"
mkdir -p $OUT/j
b() { local name=$1 sc=$2; shift 2
  timeout 150 $D bench --scenario $sc --data /tmp/d-$sc --threads 16 --json $OUT/j/$name.json "$@" > $OUT/j/$name.txt 2>&1
  echo "-- $name rc=$? $(grep -E '^throughput' $OUT/j/$name.txt | cut -c1-30) | $(grep -E 'achieved' $OUT/j/$name.txt | sed 's/.*->//')"
  grep -E "^per batch|^waves|chunk cache|^epoch" $OUT/j/$name.txt | cut -c1-220
}
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
b default-cuda default --backend cuda
b default-cuda-cache4G default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G
b default-cuda-cache1G-clock default --backend cuda --no-ceiling --epochs 3 --chunk-cache 1G
b default-cuda-cache1G-lru default --backend cuda --no-ceiling --epochs 3 --chunk-cache 1G --chunk-cache-policy lru
echo "== ncu, cached epochs $(date +%T)"
timeout 150 ncu --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel --launch-skip 500 --launch-count 40 \
  $D bench --scenario default --data /tmp/d-default --backend cuda --threads 16 --no-ceiling --epochs 3 --chunk-cache 4G > $OUT/ncu-cache.txt 2>&1; echo "rc=$?"
grep -E "^  [a-z_]|Invocations|gpu__time_duration" $OUT/ncu-cache.txt | head -30
$D gen --scenario small-batch --out /tmp/d-small-batch --threads 16 | tail -1
b small-batch-host small-batch --backend host
b small-batch-cuda small-batch --backend cuda
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
