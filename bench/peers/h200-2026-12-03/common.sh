# Sourced by the call scripts from call8 on (calls 1-7 are kept as they ran): unpacks the
# bundle, points damacy at its nvCOMP, sends the output to $OUT/log.txt too, and defines
# `b NAME SCENARIO ARGS...`, one `damacy bench` run with its report under $OUT/j.
B=target/gpu-bundle
for f in $B/*/*.xz; do xz -d "$f"; done
chmod +x $B/bin/damacy $B/tests/*
export DAMACY_NVCOMP_LIB=$(ls $PWD/$B/lib/libnvcomp.so* | head -1)
D=$PWD/$B/bin/damacy
exec > >(tee -a $OUT/log.txt) 2>&1
mkdir -p $OUT/j
b() { local name=$1 sc=$2; shift 2
  timeout 150 $D bench --scenario $sc --data /tmp/d-$sc --threads 16 --json $OUT/j/$name.json "$@" > $OUT/j/$name.txt 2>&1
  echo "-- $name rc=$? $(grep -E '^throughput' $OUT/j/$name.txt | cut -c1-30)"
  grep -E "^per batch|^prepare|^gds|chunk cache|^epoch" $OUT/j/$name.txt | cut -c1-240
}
