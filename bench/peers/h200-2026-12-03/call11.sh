#!/usr/bin/env bash
# 5th session of 2026-12-03, after call10's timelines: in the cached epochs each batch's
# preparation takes 15-17 ms on each of 4 preparers (9 ms with one), and their starts
# are ~13 ms apart, so 4 preparers do no better than one. Lead from the dev machine's
# perf profile: preparation touches fresh memory every batch (glibc returns large blocks
# to the kernel, so each batch page-faults them in again), and page faults of one process
# contend. Test: the same runs with glibc keeping its memory (no mmap for blocks below
# 512 MiB, no trimming), same bundle as call10.
set -u
. bench/peers/h200-2026-12-03/common.sh
avg() { python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); ev = [e for e in d["traceEvents"] if e.get("ph") == "X"]
for cat in ["prepare", "end", "ready"]:
    x = [e["dur"] / 1e3 for e in ev if e["cat"] == cat and (e["args"]["batch"] or 0) >= 24]
    print(f"  {cat}: {len(x)} spans, {sum(x) / max(1, len(x)):.2f} ms each (cached epochs)")
PY
}
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
$D gen --scenario small-batch --out /tmp/d-small-batch --threads 16 | tail -1
echo "== glibc as it is $(date +%T)"
b c4G default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --trace $OUT/j/trace-c4G.json; avg $OUT/j/trace-c4G.json
echo "== glibc keeping its memory $(date +%T)"
export MALLOC_MMAP_THRESHOLD_=536870912 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=268435456
b c4G-keep default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --trace $OUT/j/trace-c4G-keep.json; avg $OUT/j/trace-c4G-keep.json
b c4G-keep-p1 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --prepare-threads 1
b df-keep default --backend cuda --no-ceiling
b sb-keep small-batch --backend cuda --no-ceiling
b sb-host-keep small-batch --backend host --no-ceiling
unset MALLOC_MMAP_THRESHOLD_ MALLOC_TRIM_THRESHOLD_ MALLOC_TOP_PAD_
echo "== glibc as it is, again $(date +%T)"
b c4G-2 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G
b sb-2 small-batch --backend cuda --no-ceiling
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
