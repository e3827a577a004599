#!/usr/bin/env bash
# Session 2026-12-03 (4th), call 6: issue 20 on the GPU host (cuFile compat mode, with a
# udev record for the root disk: without it libcufile cannot read the file system's
# attributes in this container and refuses every cuFileHandleRegister with 5027): the
# engine's GDS tests, the kernels' cuFile and frame-check tests, `default` with gds on
# and off in one run; then tensorstore's best beside both engines on `default`.
set -u
. bench/peers/h200-2026-12-03/common.sh
udev_record
echo "== engine GDS tests $(date +%T)"
# (As run: `gds_batches_equal_the_host_engine_gpu` was split afterwards into
# `gds_smoke_…` and `gds_fixtures_…`, which call7.sh runs.)
for t in device::gds_batches_equal_the_host_engine_gpu device::corrupt_zstd_frame_read_with_gds_gives_the_errors_of_the_host_check_gpu device::gds_pipelines_torn_down_mid_flight_release_every_registration_gpu device::corrupt_zstd_frame_is_a_decode_error_naming_the_chunk_and_later_batches_arrive_gpu; do
  timeout 200 $B/tests/damacy-tests --exact $t --test-threads=1 > $OUT/j/$(basename $t).log 2>&1; echo "$t rc=$?"
  grep -E "test result|panicked" -A3 $OUT/j/$(basename $t).log | head -6
done
echo "== kernels cufile_gpu, frames_gpu $(date +%T)"
timeout 150 $B/tests/kernels-kernels --test-threads=1 cufile_gpu > $OUT/j/kernels-cufile.txt 2>&1; echo "rc=$?"
grep -E "^test |test result" $OUT/j/kernels-cufile.txt
timeout 150 $B/tests/kernels-kernels --test-threads=1 --nocapture frames_gpu > $OUT/j/kernels-frames.txt 2>&1; echo "rc=$?"
grep -E "^test |test result|GB" $OUT/j/kernels-frames.txt | head -12
echo "== default, gds on (compat) and off $(date +%T)"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
b df-gds-off default --backend cuda --gds off
b df-gds-on default --backend cuda --gds on --no-ceiling
b df-gds-off2 default --backend cuda --gds off --no-ceiling
b df-gds-on2 default --backend cuda --gds on --no-ceiling
echo "== nsys: the cached epochs (what bounds them at ~10 ms per batch) $(date +%T)"
NSYS=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/bin/nsys 2>/dev/null | head -1)
echo "nsys=$NSYS"
if [ -n "$NSYS" ]; then
  timeout 150 $NSYS profile -t cuda,osrt -o /tmp/cache --force-overwrite true $D bench --scenario default --data /tmp/d-default --backend cuda --threads 16 --no-ceiling --epochs 3 --chunk-cache 4G > $OUT/j/nsys-run.txt 2>&1; echo "rc=$?"
  timeout 100 $NSYS stats -r cuda_gpu_kern_sum,cuda_gpu_mem_time_sum,cuda_api_sum,osrt_sum /tmp/cache.nsys-rep > $OUT/j/nsys-stats.txt 2>&1; echo "stats rc=$?"
  grep -A14 -E "cuda_gpu_kern_sum|cuda_gpu_mem_time_sum|cuda_api_sum" $OUT/j/nsys-stats.txt | cut -c1-200 | head -60
fi
echo "== tensorstore best beside both engines, default $(date +%T)"
DATA=/tmp/d-default PEER_CONFIGS=best,best-cache OUT=$OUT/j timeout 300 bash bench/peers/h200_compare.sh default 16 2>&1 | tail -12
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
