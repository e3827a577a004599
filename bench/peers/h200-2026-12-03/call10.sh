#!/usr/bin/env bash
# 5th session of 2026-12-03, last call: timelines (`damacy bench --trace`) of the cached
# epochs, of uncached `default` and of `small-batch` (which thread each batch waits on);
# larger waves for `default` (a 64 GiB GPU budget and 24 GiB pinned allow 3 x 8192-chunk
# waves, where nvCOMP decodes faster per byte); then the two fixture-parity GPU tests in
# parallel processes (they need ~150 s each; call9 gave one only 100 s).
set -u
. bench/peers/h200-2026-12-03/common.sh
waves() { grep -E "^waves" $OUT/j/$1.txt; }
echo "== default and small-batch, with timelines $(date +%T)"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
$D gen --scenario small-batch --out /tmp/d-small-batch --threads 16 | tail -1
b df-cuda default --backend cuda; waves df-cuda
b c4G-trace default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --trace $OUT/j/trace-c4G.json
b df-trace default --backend cuda --no-ceiling --trace $OUT/j/trace-df.json
b sb-trace small-batch --backend cuda --no-ceiling --trace $OUT/j/trace-sb.json
for t in c4G df sb; do
  echo "-- timeline $t"; python3 bench/peers/trace_summary.py $OUT/j/trace-$t.json --batches 3 > $OUT/j/trace-$t.txt 2>&1
  head -40 $OUT/j/trace-$t.txt
done
echo "== default with larger budgets (larger waves) $(date +%T)"
b df-64G default --backend cuda --no-ceiling --gpu-memory 64G --pinned-memory 24G; waves df-64G
b df-64G-s4 default --backend cuda --no-ceiling --gpu-memory 64G --pinned-memory 24G --gpu-wave-slots 4; waves df-64G-s4
b df-24G default --backend cuda --no-ceiling; waves df-24G
echo "== fixture parity, two processes $(date +%T)"
pids=""
for t in fixtures_equal_the_host_engine_with_nvcomp_gpu fixtures_equal_the_host_engine_without_nvcomp_gpu; do
  ( s=$(date +%s); timeout 260 $B/tests/damacy-tests --exact device::$t --test-threads=1 > $OUT/j/t-$t.log 2>&1
    echo "$t rc=$? $(( $(date +%s) - s )) s $(grep -E 'test result' $OUT/j/t-$t.log | cut -c1-40)" ) &
  pids="$pids $!"
done
wait $pids
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
