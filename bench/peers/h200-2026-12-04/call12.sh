#!/usr/bin/env bash
# 6th session (2026-12-04), first call.
# 1. Cached epochs after two changes: the planner probes the cache after its walk (the
#    lock is no longer held across planning), and boxes are inline (`zarr::Dims`, no
#    allocation per box). Question: do 4 preparers now scale, and how far do the cached
#    epochs go?
# 2. small-batch: why 8 concurrent 64-chunk nvCOMP calls run no faster than ~3 at a time.
#    H1: the engine's 11 streams share the default 8 hardware queues
#    (CUDA_DEVICE_MAX_CONNECTIONS=32 against unset; 5 slots = 8 streams). H2: every call
#    hands nvCOMP the whole temp buffer sized for 2048 chunks (DAMACY_NVCOMP_TEMP=call).
set -u
. bench/peers/h200-2026-12-03/common.sh
avg() { python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); ev = [e for e in d["traceEvents"] if e.get("ph") == "X"]
for cat in ["prepare", "end", "ready", "wave"]:
    x = [e["dur"] / 1e3 for e in ev if e["cat"] == cat and (e["args"].get("batch") or 0) >= 24]
    print(f"  {cat}: {len(x)} spans, {sum(x) / max(1, len(x)):.2f} ms each (batches 24..)")
PY
}
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
$D gen --scenario small-batch --out /tmp/d-small-batch --threads 16 | tail -1
echo "== cached epochs $(date +%T)"
b c4G default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --trace $OUT/j/trace-c4G.json; avg $OUT/j/trace-c4G.json
b c4G-p1 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --prepare-threads 1
b c4G-host default --backend host --no-ceiling --epochs 3 --chunk-cache 4G
echo "== small-batch $(date +%T)"
b sb small-batch --backend cuda
b sb-host small-batch --backend host --no-ceiling
CUDA_DEVICE_MAX_CONNECTIONS=32 b sb-conn32 small-batch --backend cuda --no-ceiling
DAMACY_NVCOMP_TEMP=call b sb-temp small-batch --backend cuda --no-ceiling
CUDA_DEVICE_MAX_CONNECTIONS=32 DAMACY_NVCOMP_TEMP=call b sb-both small-batch --backend cuda --no-ceiling --trace $OUT/j/trace-sb-both.json
b sb-s5 small-batch --backend cuda --no-ceiling --gpu-wave-slots 5
b sb-again small-batch --backend cuda --no-ceiling --trace $OUT/j/trace-sb.json
for t in sb sb-both; do echo "-- timeline $t"; avg $OUT/j/trace-$t.json; done
echo "== default $(date +%T)"
b df default --backend cuda
CUDA_DEVICE_MAX_CONNECTIONS=32 DAMACY_NVCOMP_TEMP=call b df-both default --backend cuda --no-ceiling
b df-host default --backend host --no-ceiling
echo "== GPU tests of the changed paths (inline boxes in the staged placements) $(date +%T)"
for t in smoke_scenario_equals_the_host_engine_gpu device_cache_epochs_equal_the_host_engine_gpu every_wave_slot_count_equals_the_host_engine_gpu; do
  s=$(date +%s); timeout 120 $B/tests/damacy-tests --exact device::$t --test-threads=1 > $OUT/j/t-$t.log 2>&1
  echo "$t rc=$? $(( $(date +%s) - s )) s $(grep -E 'test result' $OUT/j/t-$t.log | cut -c1-40)"
done
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
