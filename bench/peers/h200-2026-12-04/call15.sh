#!/usr/bin/env bash
# 6th session (2026-12-04), fourth call, bundle of c1bd1de: the prefetcher resolves a
# sample without building its chunk hits (only shard coordinates) and steps only live
# samples; the host scatter casts without per-row iterator set-up. Question: does
# many-arrays-8 (call14: each batch waited ~7.7 ms for its 512 samples to resolve, both
# engines) now let the CUDA engine pull ahead, and where does everything else stand.
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
for t in smoke_scenario_equals_the_host_engine_gpu device_cache_epochs_equal_the_host_engine_gpu; do
  s=$(date +%s); timeout 100 $B/tests/damacy-tests --exact device::$t --test-threads=1 > $OUT/j/t-$t.log 2>&1
  echo "$t rc=$? $(( $(date +%s) - s )) s $(grep -E 'test result' $OUT/j/t-$t.log | cut -c1-40)"
done
echo "== many-arrays-8, smoke, small-batch $(date +%T)"
for sc in many-arrays-8 smoke small-batch; do
  $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-host $sc --backend host --no-ceiling
  b $sc-cuda $sc --backend cuda --trace $OUT/j/trace-$sc-cuda.json
  b $sc-host2 $sc --backend host --no-ceiling
  b $sc-cuda2 $sc --backend cuda --no-ceiling
done
python3 bench/peers/trace_summary.py $OUT/j/trace-many-arrays-8-cuda.json --batches 2 > $OUT/j/trace-ma8.txt 2>&1; head -45 $OUT/j/trace-ma8.txt
echo "== default, cached and not, and tensorstore's best $(date +%T)"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
b df-host default --backend host --no-ceiling
b df-cuda default --backend cuda
b c4G default --backend cuda --no-ceiling --epochs 8 --chunk-cache 4G; ep c4G
b c4G-host default --backend host --no-ceiling --epochs 4 --chunk-cache 4G; ep c4G-host
timeout 200 python3 bench/peers/tensorstore_bench.py --scenario-json bench/scenarios/default.json \
  --data /tmp/d-default --threads 16 --configs best,best-cache --json $OUT/j/ts.json > $OUT/j/ts.log 2>&1; echo "rc=$?"
python3 -c "import json; [print(p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/ts.json'))]"
b df-host2 default --backend host --no-ceiling
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
