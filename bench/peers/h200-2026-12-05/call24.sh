#!/usr/bin/env bash
# Prepared in the 8th session (2026-12-04), when no GPU machine was lent; ran as the
# 10th session's first call (2026-12-05, bundle of 356f7da), as it stands here. Its
# 100 s limit stopped the two fixture-parity tests (they need ~130 s: call26 ran them).
# Bundle: `cargo xtask gpu-bundle` (tests) + `--bench`, xz'd as in the 7th session's
# notes, and the wheel of `cargo xtask wheel` under target/wheels (carry both).
# 1. GPU tests not run since the 7th session's changes (plans of several batches, the
#    shared assembly helper of f1e4954's tree, native plan sizes).
# 2. The host engine against tensorstore's best and best-cache at 16 threads, f32 and
#    native, without and with caches, on `default-long` (huge pages, native plans; since
#    the 9th session every output row gathered from its pieces and streamed out, which
#    on the 2-core dev machine made the cached path 1.6x faster: the 16-thread
#    target is measured here).
# 3. The CUDA engine with native output (plans of 4 u16 batches) beside f32.
# 4. The Python GPU suite with the automatic plan size.
set -u
. bench/peers/h200-2026-12-03/common.sh
echo "== GPU tests $(date +%T)"
for t in fixtures_equal_the_host_engine_with_nvcomp_gpu fixtures_equal_the_host_engine_without_nvcomp_gpu \
  device_cache_epochs_equal_the_host_engine_gpu native_batches_of_two_dtypes_in_a_plan_fail_and_split_as_alone_gpu \
  plans_of_several_batches_equal_the_host_engine_gpu v2_zstd_fixtures_equal_the_host_engine_and_the_reference_gpu \
  buffers_released_behind_a_held_consumer_stream_wait_for_it_while_the_cache_evicts_gpu; do
  s=$(date +%s); timeout 100 $B/tests/damacy-tests --exact device::$t --test-threads=1 > $OUT/j/t-$t.log 2>&1
  echo "$t rc=$? $(( $(date +%s) - s )) s $(grep -E 'test result' $OUT/j/t-$t.log | cut -c1-40)"
done
S=bench/peers/h200-2026-12-04/sc
python3 -c "
import json
s = json.load(open('$S/default-long.json')); s['output_dtype'] = 'native'; s['name'] = 'default-long-native'
json.dump(s, open('/tmp/default-long-native.json', 'w'))"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
bl() { local name=$1 sc=$2; shift 2
  timeout 150 $D bench --scenario $sc --data /tmp/d-default --threads 16 --json $OUT/j/$name.json "$@" > $OUT/j/$name.txt 2>&1
  echo "-- $name rc=$? $(grep -E '^throughput' $OUT/j/$name.txt | cut -c1-30) $(grep -E '^prepare' $OUT/j/$name.txt | sed 's/.*up to/up to/')"
  grep -E "^per batch|chunk cache" $OUT/j/$name.txt | cut -c1-200; }
ts() { timeout 200 python3 bench/peers/tensorstore_bench.py --scenario-json $S/default-long.json \
  --data /tmp/d-default --threads 16 --configs best,best-cache --json $OUT/j/$1.json > $OUT/j/$1.log 2>&1
  python3 -c "import json; [print('$1', p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/$1.json'))]"; }
for r in 1 2; do
  echo "== round $r $(date +%T)"
  bl host-f32-$r $S/default-long.json --backend host --no-ceiling
  ts ts-$r
  bl host-native-$r /tmp/default-long-native.json --backend host --no-ceiling
  bl host-f32-cache-$r $S/default-long.json --backend host --no-ceiling --chunk-cache 8G
  bl host-native-cache-$r /tmp/default-long-native.json --backend host --no-ceiling --chunk-cache 8G
done
echo "== CUDA engine, f32 and native $(date +%T)"
bl cuda-f32 $S/default-long.json --backend cuda --no-ceiling
bl cuda-native /tmp/default-long-native.json --backend cuda --no-ceiling
echo "== Python GPU suite $(date +%T)"
python3 -m pip install --no-deps --quiet target/wheels/damacy-*.whl && \
  timeout 150 python3 -m pytest -q -p no:cacheprovider crates/damacy-py/tests_gpu > $OUT/j/pytest-gpu.txt 2>&1; echo "rc=$?"
tail -3 $OUT/j/pytest-gpu.txt
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
