#!/usr/bin/env bash
# 7th session (2026-12-04), first call, bundle of 60793d3 (as call16/17): does planning
# several batches together pay? Each scenario's batch made k times larger (same arrays,
# same data; `sc/NAME-xK.json`), so one plan (and one set of waves) covers k batches'
# samples: throughput, decode amplification (chunks shared by the k batches are decoded
# once), chunks per wave and share of the ceiling, against the scenario as it is.
set -u
. bench/peers/h200-2026-12-03/common.sh
S=bench/peers/h200-2026-12-04/sc
bk() { local name=$1 data=$2 json=$3; shift 3
  timeout 150 $D bench --scenario $json --data /tmp/d-$data --threads 16 --json $OUT/j/$name.json "$@" > $OUT/j/$name.txt 2>&1
  echo "-- $name rc=$? $(grep -E '^throughput' $OUT/j/$name.txt | cut -c1-30) | $(grep -E 'achieved' $OUT/j/$name.txt | sed 's/.*->//')"
  python3 - "$OUT/j/$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"   gvox {r['gvox_per_s']:.3f} amp {r['decode_amplification']:.3f} wave_chunks {r.get('gpu_wave_chunks')} slots {r.get('gpu_wave_slots')} buffers {r.get('batches_in_flight')} ceiling {r.get('ceiling_gvox_per_s')} gpu_dec {r.get('gpu_decode_gb_per_s')} batches {r['batches']} s {r['seconds']:.2f}")
PY
}
for sc in default small-batch many-arrays-8; do
  timeout 90 $D gen --scenario $sc --out /tmp/d-$sc --threads 16 | tail -1
done
echo "== default $(date +%T)"
b default-cuda default --backend cuda
bk default-x2 default $S/default-x2.json --backend cuda
bk default-x2-s2 default $S/default-x2.json --backend cuda --gpu-wave-slots 2
bk default-x3 default $S/default-x3.json --backend cuda
bk default-x3-s2 default $S/default-x3.json --backend cuda --gpu-wave-slots 2
echo "== small-batch $(date +%T)"
b small-batch-cuda small-batch --backend cuda
bk small-batch-x4 small-batch $S/small-batch-x4.json --backend cuda
bk small-batch-x8 small-batch $S/small-batch-x8.json --backend cuda
bk small-batch-x8-host small-batch $S/small-batch-x8.json --backend host --no-ceiling
echo "== many-arrays-8 $(date +%T)"
b many-arrays-8-cuda many-arrays-8 --backend cuda
bk many-arrays-8-x4 many-arrays-8 $S/many-arrays-8-x4.json --backend cuda
echo "== done $(date +%T)"
