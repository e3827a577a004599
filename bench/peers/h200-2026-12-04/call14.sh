#!/usr/bin/env bash
# 6th session (2026-12-04), third call, same bundle as calls 12-13: timelines of the two
# scenarios where the CUDA engine is not 2x the host engine (call13: many-arrays-8 2.12
# against 2.14, smoke 0.091 against 0.273), to see which thread each batch waits on.
set -u
. bench/peers/h200-2026-12-03/common.sh
for sc in many-arrays-8 smoke; do
  $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-host $sc --backend host --no-ceiling --trace $OUT/j/trace-$sc-host.json
  b $sc-cuda $sc --backend cuda --no-ceiling --trace $OUT/j/trace-$sc-cuda.json
  b $sc-cuda-p1 $sc --backend cuda --no-ceiling --prepare-threads 1
  for e in host cuda; do
    echo "-- timeline $sc $e"; python3 bench/peers/trace_summary.py $OUT/j/trace-$sc-$e.json --batches 2 > $OUT/j/trace-$sc-$e.txt 2>&1
    head -60 $OUT/j/trace-$sc-$e.txt
  done
done
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
