#!/usr/bin/env bash
# 10th session (2026-12-05), the third one-GPU call, same bundle as call24 (356f7da).
# 1. Steady state: `default-long` with 30 warm-up batches instead of 9, so that every
#    host batch buffer has been written once before the window (native plans of 8
#    batches in 3 buffers are 24 batches of buffer; on the dev machine a 30-batch
#    warm-up lifted the cached native run from 2.8-3.3 to 4.0-4.2 Gvox/s), host engine
#    interleaved with tensorstore's best and best-cache on the same file (its warm-up
#    is the scenario's too).
# 2. The figures of call26 that sat at their thresholds, again: `many-arrays-8` both
#    engines (CUDA 1.89x host), the latency pair on the CUDA engine (88.9%), `default`
#    CUDA with its ceiling.
set -u
. bench/peers/h200-2026-12-03/common.sh
S=bench/peers/h200-2026-12-04/sc
python3 -c "
import json
s = json.load(open('$S/default-long.json')); s['warmup_batches'] = 30; s['name'] = 'default-long-w30'
json.dump(s, open('/tmp/dl30.json', 'w'))
s['output_dtype'] = 'native'; s['name'] = 'default-long-w30-native'
json.dump(s, open('/tmp/dl30n.json', 'w'))"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
bl() { local name=$1 sc=$2; shift 2
  timeout 150 $D bench --scenario $sc --data /tmp/d-default --threads 16 --json $OUT/j/$name.json "$@" > $OUT/j/$name.txt 2>&1
  echo "-- $name rc=$? $(grep -E '^throughput' $OUT/j/$name.txt | cut -c1-30) $(grep -E '^prepare' $OUT/j/$name.txt | sed 's/.*up to/up to/')"
  grep -E "^per batch|chunk cache|first batch" $OUT/j/$name.txt | cut -c1-200; }
ts() { timeout 200 python3 bench/peers/tensorstore_bench.py --scenario-json /tmp/dl30.json \
  --data /tmp/d-default --threads 16 --configs best,best-cache --json $OUT/j/$1.json > $OUT/j/$1.log 2>&1
  python3 -c "import json; [print('$1', p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/$1.json'))]"; }
for r in 1 2; do
  echo "== steady state, round $r $(date +%T)"
  bl host-native-cache-$r /tmp/dl30n.json --backend host --no-ceiling --chunk-cache 8G
  bl host-f32-cache-$r /tmp/dl30.json --backend host --no-ceiling --chunk-cache 8G
  ts ts-$r
  bl host-native-$r /tmp/dl30n.json --backend host --no-ceiling
  bl host-f32-$r /tmp/dl30.json --backend host --no-ceiling
done
echo "== default, CUDA with its ceiling $(date +%T)"
for r in 1 2; do b default-cuda-$r default --backend cuda | grep -v "^$"; done
for sc in many-arrays-8 latency-none latency-50ms; do
  echo "== $sc $(date +%T)"
  timeout 100 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  for r in 1 2; do
    [ $sc = many-arrays-8 ] && b $sc-host-$r $sc --backend host --no-ceiling
    b $sc-cuda-$r $sc --backend cuda --no-ceiling
  done
done
for f in latency-none-cuda-1 latency-none-cuda-2 latency-50ms-cuda-1 latency-50ms-cuda-2; do
  echo "$f: $(grep -h 'first batch' $OUT/j/$f.txt | cut -c1-60)"
done
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
