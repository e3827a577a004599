#!/usr/bin/env bash
# Prepared in the 9th session (2026-12-05), when no GPU machine was lent; not run on GPUs
# yet (the torch script ran on the dev machine's CPU, gloo, 11th session).
# For `nvidia-h200-x2` (two H200s, 32 cores). Carry target/gpu-bundle (built with
# `cargo xtask gpu-bundle` then `--bench`, xz'd) and the wheel of `cargo xtask wheel`
# under target/wheels. Issue 18's two-GPU target: aggregate on `default` >= 1.8x one GPU
# in the same run.
# 1. What the machine is: GPUs, their links, torch's view.
# 2. `damacy bench --devices 0,1` on `default` and `default-long`, two rounds each: the run
#    on GPU 0 with all 32 threads, then one pipeline per GPU at once (16 threads each),
#    aggregate against the one-GPU run (the JSON's `side_by_side`). GPU 1 alone once, to
#    see that the two devices are alike.
# 3. The same through damacy.torch and torch.distributed (one process a GPU, NCCL):
#    bench/peers/torch_ranks_bench.py with 1 and then 2 ranks.
set -u
# NVLink multicast stays off (KINDS.md): a program using it can take the host's GPUs down.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
. bench/peers/h200-2026-12-03/common.sh
echo "== machine $(date +%T)"
nvidia-smi -L; nvidia-smi topo -m 2>&1 | head -6; nproc
python3 -c 'import torch; print("torch", torch.__version__, "gpus", torch.cuda.device_count())'
S=bench/peers/h200-2026-12-04/sc
$D gen --scenario default --out /tmp/d-default --threads 32 | tail -1
x2() { local name=$1 sc=$2; shift 2
  timeout 280 $D bench --scenario $sc --data /tmp/d-default --threads 32 --no-ceiling --json $OUT/j/$name.json "$@" > $OUT/j/$name.txt 2>&1
  echo "-- $name rc=$? $(grep -E '^throughput' $OUT/j/$name.txt | cut -c1-30)"
  grep -E "^prepare|^side by side|^  cuda" $OUT/j/$name.txt | cut -c1-200; }
for r in 1 2; do
  echo "== round $r $(date +%T)"
  x2 default-x2-$r default --devices 0,1
  x2 default-long-x2-$r $S/default-long.json --devices 0,1
done
x2 default-gpu1 default --devices 1
echo "== damacy.torch, torch.distributed $(date +%T)"
python3 -m pip install --no-deps --quiet target/wheels/damacy-*.whl
for n in 1 2; do
  timeout 200 torchrun --standalone --nproc_per_node $n bench/peers/torch_ranks_bench.py \
    --scenario default --data /tmp/d-default --threads 32 --json $OUT/j/torch-$n.json > $OUT/j/torch-$n.log 2>&1
  echo "-- torch ranks $n rc=$?"; python3 -c "
import json; r = json.load(open('$OUT/j/torch-$n.json'))
print(r['world_size'], 'ranks', round(r['gvox_per_s'], 3), 'Gvox/s', [round(x['gvox_per_s'], 3) for x in r['ranks']], [x['backend'] for x in r['ranks']])" || tail -5 $OUT/j/torch-$n.log
done
echo "== end $(date +%T)"
tar czf $OUT/j.tgz -C $OUT j && rm -rf $OUT/j
