#!/usr/bin/env bash
# cuFile diagnosis on the GPU host (issue 20; run from the repository root): platform facts, then ctypes registrations
# under several settings, each in its own process, with libcufile's log captured.
set -u
exec > >(tee -a $OUT/cufile_diag.txt) 2>&1
echo "== platform"; uname -r; ls /proc/driver/nvidia-fs 2>&1 | head -3; lsmod 2>/dev/null | grep -i -E "nvidia|nvfs" | head
ls /usr/local/cuda/gds/tools 2>&1 | head -20
for t in /usr/local/cuda/gds/tools/gdscheck /usr/local/cuda/gds/tools/gdscheck.py; do [ -x $t ] && timeout 30 $t -p 2>&1 | head -60; done
echo "== /etc/cufile.json (no comments)"; grep -v '^\s*//' /etc/cufile.json | grep -v '^\s*$' | head -80
df -T / /tmp /dev/shm /root 2>/dev/null
mkdir -p /root/gd /dev/shm/gd
D=$PWD/bench/peers/h200-2026-12-03
run() { # label, env..., -- args
  local label=$1; shift; local dir=/tmp/cfd-$label; rm -rf $dir; mkdir -p $dir
  echo "== $label"; ( cd $dir && env "$@" timeout 60 python3 $D/cufile_diag.py ${ARGS} ) 2>&1 | tail -12
  [ -f $dir/cufile.log ] && { echo "-- cufile.log"; grep -v "^\s*$" $dir/cufile.log | tail -15; }
}
ARGS="/root/gd/f"        run default-root X=1
ARGS="/root/gd/f"        run compat-root CUFILE_FORCE_COMPAT_MODE=true
ARGS="/root/gd/f direct" run compat-root-direct CUFILE_FORCE_COMPAT_MODE=true
ARGS="/dev/shm/gd/f"     run compat-shm CUFILE_FORCE_COMPAT_MODE=true
sed -e 's/"allow_compat_mode" *: *false/"allow_compat_mode": true/' -e 's/"level" *: *"[A-Z]*"/"level": "TRACE"/' /etc/cufile.json > /tmp/cf.json
ARGS="/root/gd/f"        run json-trace-root CUFILE_ENV_PATH_JSON=/tmp/cf.json CUFILE_FORCE_COMPAT_MODE=true
ARGS="/tmp/f"            run json-trace-tmp CUFILE_ENV_PATH_JSON=/tmp/cf.json
echo "== end"
