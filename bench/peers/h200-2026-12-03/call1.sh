#!/usr/bin/env bash
# Session 2026-12-03 (3rd), call 1: issue 17 parity, issue 18 profiling and scale runs, issue 20 probe.
set -u
B=target/gpu-bundle
for f in $B/*/*.xz; do xz -d "$f"; done
chmod +x $B/bin/damacy $B/tests/damacy-tests
export DAMACY_NVCOMP_LIB=$(ls $PWD/$B/lib/libnvcomp.so* | head -1)
D=$PWD/$B/bin/damacy
L=$OUT/log.txt
exec > >(tee -a $L) 2>&1
echo "== 17 parity $(date +%T)"
timeout 120 $B/tests/damacy-tests --test-threads=1 v2_zstd_fixtures_equal_the_host_engine_and_the_reference_gpu > $OUT/parity.txt 2>&1; echo "rc=$?"
grep -E "^test |test result" $OUT/parity.txt
echo "== 20 probe $(date +%T)"
ls /usr/local/cuda/lib64/libcufile* /usr/lib/x86_64-linux-gnu/libcufile* 2>&1 | head
python3 -c "import nvidia.cufile,os;p=os.path.dirname(nvidia.cufile.__file__);print(p);print(os.listdir(p+'/lib') if os.path.isdir(p+'/lib') else os.listdir(p))" 2>&1 | tail -3
ls /dev/nvidia-fs* /etc/cufile.json 2>&1 | head -3
echo "== 18 small-batch ncu $(date +%T)"
$D gen --scenario small-batch --out /tmp/sb --threads 16 | tail -1
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu=$NCU"
timeout 110 $NCU --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel --launch-skip 300 --launch-count 120 \
  $D bench --scenario small-batch --data /tmp/sb --backend cuda --threads 16 --no-ceiling > $OUT/ncu-sb.txt 2>&1; echo "rc=$?"
timeout 60 $D bench --scenario small-batch --data /tmp/sb --backend cuda --threads 16 --json $OUT/sb-cuda.json > $OUT/sb-cuda.txt 2>&1; echo "rc=$?"
grep -E "throughput|ceiling|per batch|wait" $OUT/sb-cuda.txt
echo "== 18 default ncu $(date +%T)"
$D gen --scenario default --out /tmp/df --threads 16 | tail -1
timeout 110 $NCU --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel --launch-skip 200 --launch-count 80 \
  $D bench --scenario default --data /tmp/df --backend cuda --threads 16 --no-ceiling > $OUT/ncu-df.txt 2>&1; echo "rc=$?"
echo "== 18 scale+latency $(date +%T)"
STEP_TIMEOUT=130 OUT=$OUT bash bench/peers/h200_suite.sh many-arrays-8 many-arrays-10k latency-50ms
echo "== end $(date +%T)"
