#!/usr/bin/env bash
# 6th session (2026-12-04), fifth call, bundle of 60793d3: the feeder hands samples to the
# prefetcher in groups with one driver wake-up each (call15's many-arrays-8 timeline:
# each 512-sample batch still waited ~3.7 ms for its samples, one batch in flight at a
# time). GPU tests of the changed paths; then every built-in scenario, host beside CUDA;
# the cache; tensorstore's best on `default`'s data.
set -u
. bench/peers/h200-2026-12-03/common.sh
ep() { python3 - "$OUT/j/$1.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["epochs"][1:]
g = [x["gvox_per_s"] for x in e]
b = sum(x["batches"] for x in e); s = sum(x["seconds"] for x in e)
print(f"  epochs 2..{len(e) + 1}: {b} batches in {s:.3f} s = {b / s * 128 * 128**3 / 1e9:.2f} Gvox/s overall; per epoch min {min(g):.2f} max {max(g):.2f}")
PY
}
echo "== GPU tests $(date +%T)"
for t in smoke_scenario_equals_the_host_engine_gpu device_cache_epochs_equal_the_host_engine_gpu \
  every_wave_slot_count_equals_the_host_engine_gpu held_batches_stay_distinct_and_device_api_works_gpu \
  on_error_fill_fills_the_failed_sample_on_the_device_and_keeps_the_others_gpu \
  buffers_released_behind_a_held_consumer_stream_wait_for_it_while_the_cache_evicts_gpu; do
  s=$(date +%s); timeout 100 $B/tests/damacy-tests --exact device::$t --test-threads=1 > $OUT/j/t-$t.log 2>&1
  echo "$t rc=$? $(( $(date +%s) - s )) s $(grep -E 'test result' $OUT/j/t-$t.log | cut -c1-40)"
done
echo "== many-arrays-8, small-batch, latency pair $(date +%T)"
for sc in many-arrays-8 small-batch latency-none latency-50ms; do
  timeout 60 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-host $sc --backend host --no-ceiling
  b $sc-cuda $sc --backend cuda --trace $OUT/j/trace-$sc-cuda.json
done
b many-arrays-8-cuda2 many-arrays-8 --backend cuda --no-ceiling
b small-batch-cuda2 small-batch --backend cuda --no-ceiling
for f in latency-none-cuda latency-50ms-cuda latency-none-host latency-50ms-host; do
  echo "$f: $(grep -h 'first batch' $OUT/j/$f.txt | cut -c1-60)"
done
python3 bench/peers/trace_summary.py $OUT/j/trace-many-arrays-8-cuda.json --batches 2 > $OUT/j/trace-ma8.txt 2>&1; head -24 $OUT/j/trace-ma8.txt
echo "== default, cached and not $(date +%T)"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
b df-host default --backend host --no-ceiling
b df-cuda default --backend cuda
b c4G default --backend cuda --no-ceiling --epochs 8 --chunk-cache 4G; ep c4G
b c1G default --backend cuda --no-ceiling --epochs 8 --chunk-cache 1G; ep c1G
b c4G-host default --backend host --no-ceiling --epochs 4 --chunk-cache 4G; ep c4G-host
echo "== every other built-in scenario: host, then CUDA $(date +%T)"
for sc in smoke quickstart mixed-dtype latency many-arrays blosc bitshuffle v2 v2-blosc; do
  timeout 60 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-host $sc --backend host --no-ceiling
  b $sc-cuda $sc --backend cuda
done
echo "== tensorstore best and best-cache, same data $(date +%T)"
timeout 200 python3 bench/peers/tensorstore_bench.py --scenario-json bench/scenarios/default.json \
  --data /tmp/d-default --threads 16 --configs best,best-cache --json $OUT/j/ts.json > $OUT/j/ts.log 2>&1; echo "rc=$?"
python3 -c "import json; [print(p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/ts.json'))]"
b df-host2 default --backend host --no-ceiling
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
