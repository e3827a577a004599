#!/usr/bin/env bash
# 6th session (2026-12-04), second call, bundle of the same tree as call12 (cheaper
# planning: probe after the walk, inline boxes).
# 1. Cached epochs over a longer window (8 epochs; each of `default`'s epochs is only 22
#    batches), with 3 and 6 batch buffers, and the cache at half the decoded data.
# 2. `default` with a CPU share of the GPU-decodable chunks (DAMACY_CPU_SHARE, per mille):
#    the ceiling counts ~8 GB/s of CPU zstd that the CUDA engine leaves idle.
# 3. Every built-in scenario, host engine beside the CUDA engine (with its ceiling);
#    small-batch twice each; tensorstore's best on `default`'s data last.
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
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
$D gen --scenario small-batch --out /tmp/d-small-batch --threads 16 | tail -1
echo "== cached epochs, 8 epochs $(date +%T)"
b c4G default --backend cuda --no-ceiling --epochs 8 --chunk-cache 4G; ep c4G
b c4G-b6 default --backend cuda --no-ceiling --epochs 8 --chunk-cache 4G --batches-in-flight 6; ep c4G-b6
b c1G default --backend cuda --no-ceiling --epochs 8 --chunk-cache 1G; ep c1G
b c4G-host default --backend host --no-ceiling --epochs 4 --chunk-cache 4G; ep c4G-host
echo "== default: CPU share of the GPU-decodable chunks $(date +%T)"
b df default --backend cuda
for s in 40 80 150; do DAMACY_CPU_SHARE=$s b df-share$s default --backend cuda --no-ceiling; done
b df-host default --backend host --no-ceiling
echo "== small-batch twice $(date +%T)"
b sb-host small-batch --backend host --no-ceiling
b sb small-batch --backend cuda
b sb-host2 small-batch --backend host --no-ceiling
b sb2 small-batch --backend cuda --no-ceiling
echo "== every other built-in scenario: host, then CUDA $(date +%T)"
for sc in smoke quickstart mixed-dtype latency latency-none latency-50ms many-arrays many-arrays-8 blosc bitshuffle v2 v2-blosc; do
  timeout 60 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc-host $sc --backend host --no-ceiling
  b $sc-cuda $sc --backend cuda
done
for f in latency-none-cuda latency-50ms-cuda; do
  echo "$f: $(grep -h 'first batch' $OUT/j/$f.txt | cut -c1-60)"
done
echo "== tensorstore best and best-cache, same data $(date +%T)"
timeout 200 python3 bench/peers/tensorstore_bench.py --scenario-json bench/scenarios/default.json \
  --data /tmp/d-default --threads 16 --configs best,best-cache --json $OUT/j/ts.json > $OUT/j/ts.log 2>&1; echo "rc=$?"
python3 -c "import json; [print(p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/ts.json'))]"
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
