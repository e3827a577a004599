#!/usr/bin/env bash
# Session 2026-12-03 (4th), call 7: the engine's GDS smoke and fixture tests on the GPU
# host (compat mode with the udev record of call 6), the cached epochs of `default` after
# the batch-wide cache probe, with tensorstore's best-cache beside them in the same run.
set -u
. bench/peers/h200-2026-12-03/common.sh
udev_record
echo "== engine GDS tests $(date +%T)"
# (As run, this loop named its logs `device::…` and the script waited with a bare `wait`,
# which also waits for the `tee` of the process substitution above: it hung there until
# the call's limit, so the benches below never ran. Fixed here: wait for the tests' PIDs,
# and no `::` in file names, which the device does not send back.)
pids=()
for t in device::gds_smoke_equals_the_host_engine_gpu device::gds_fixtures_equal_the_host_engine_gpu; do
  ( s=$(date +%s); timeout 280 $B/tests/damacy-tests --exact $t --test-threads=1 > $OUT/j/${t#device::}.log 2>&1; echo "$t rc=$? $(( $(date +%s) - s )) s" ) &
  pids+=($!)
done
echo "== cached epochs $(date +%T)"
$D gen --scenario default --out /tmp/d-default --threads 16 | tail -1
wait "${pids[@]}"
for f in $OUT/j/gds_*.log; do echo "## $f"; grep -E "test result|panicked" -A3 $f | head -5; tail -2 $f; done
b c4G-p1 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --prepare-threads 1
b c4G-p4 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --prepare-threads 4
b c4G-p8 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 4G --prepare-threads 8
b c1G-p4 default --backend cuda --no-ceiling --epochs 3 --chunk-cache 1G --prepare-threads 4
b nocache-p4 default --backend cuda --no-ceiling --prepare-threads 4
echo "== tensorstore best-cache, same data $(date +%T)"
DATA=/tmp/d-default PEER_CONFIGS=best,best-cache OUT=$OUT/j SKIP_DAMACY=1 timeout 200 python3 bench/peers/tensorstore_bench.py --scenario-json bench/scenarios/default.json --data /tmp/d-default --threads 16 --configs best,best-cache --json $OUT/j/ts.json > $OUT/j/ts.log 2>&1; echo "rc=$?"
python3 -c "import json; [print(p['config'], round(p['gvox_per_s'],3)) for p in json.load(open('$OUT/j/ts.json'))]"
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
