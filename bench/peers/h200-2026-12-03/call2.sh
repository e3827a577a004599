#!/usr/bin/env bash
# Call 2: multi-slot decode streams (issue 18): GPU tests, then slot counts on the scenarios.
set -u
B=target/gpu-bundle
for f in $B/*/*.xz; do xz -d "$f"; done
chmod +x $B/bin/damacy $B/tests/damacy-tests
export DAMACY_NVCOMP_LIB=$(ls $PWD/$B/lib/libnvcomp.so* | head -1)
D=$PWD/$B/bin/damacy
exec > >(tee -a $OUT/log.txt) 2>&1
echo "== gpu tests $(date +%T)"
timeout 200 $B/tests/damacy-tests --test-threads=1 _gpu > $OUT/gpu-tests.txt 2>&1; echo "rc=$?"
grep -E "^test .*(FAILED|ok)$|test result" $OUT/gpu-tests.txt | grep -E "FAILED|result"; grep -c " ok$" $OUT/gpu-tests.txt
b() { # scenario backend slots extra...
  local sc=$1 be=$2 sl=$3; shift 3
  timeout 120 $D bench --scenario $sc --data /tmp/d-$sc --backend $be --threads 16 --gpu-wave-slots $sl --json $OUT/j/$sc-$be-$sl.json "$@" > $OUT/j/$sc-$be-$sl.txt 2>&1
  echo "-- $sc $be slots=$sl rc=$? $(grep -E '^throughput' $OUT/j/$sc-$be-$sl.txt | cut -c1-30) | $(grep -E '^waves|achieved' $OUT/j/$sc-$be-$sl.txt | sed 's/.*->//' | tr '\n' ' ')"
  grep -E "^per batch|first batch" $OUT/j/$sc-$be-$sl.txt | cut -c1-200
}
mkdir -p $OUT/j
for sc in small-batch default; do
  $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc host 0
  b $sc cuda 0
  for sl in 2 3 4 6 12; do b $sc cuda $sl --no-ceiling; done
done
for sc in many-arrays-8 many-arrays-10k latency-none latency-50ms; do
  $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
  b $sc cuda 0
  [ $sc = many-arrays-10k ] && b $sc cuda 3 --no-ceiling
  rm -rf /tmp/d-$sc
done
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
