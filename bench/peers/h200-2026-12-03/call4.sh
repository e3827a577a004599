#!/usr/bin/env bash
# Call 4: the two fixture-parity GPU tests (timed out at 120 s in call 3) in parallel
# processes with room, and a cuFile diagnosis (why cuFileHandleRegister fails: 5027).
set -u
B=target/gpu-bundle
for f in $B/*/*.xz; do xz -d "$f"; done
chmod +x $B/bin/damacy $B/tests/*
export DAMACY_NVCOMP_LIB=$(ls $PWD/$B/lib/libnvcomp.so* | head -1)
exec > >(tee -a $OUT/log.txt) 2>&1
echo "== fixtures $(date +%T)"
for t in device::fixtures_equal_the_host_engine_with_nvcomp_gpu device::fixtures_equal_the_host_engine_without_nvcomp_gpu; do
  ( s=$(date +%s); timeout 270 $B/tests/damacy-tests --exact $t --test-threads=1 --nocapture > $OUT/$(basename $t).log 2>&1; echo "$t rc=$? $(( $(date +%s) - s )) s" ) &
done
echo "== cufile diag $(date +%T)"
grep -n -i -E "compat|\"dir\"|level|use_poll|gds_rdma|posix" /etc/cufile.json | head -20
sed -e 's/"allow_compat_mode" *: *false/"allow_compat_mode": true/' -e 's/"level" *: *"[A-Z]*"/"level": "TRACE"/' -e "s|\"dir\" *: *\"[^\"]*\"|\"dir\": \"$OUT\"|" /etc/cufile.json > /tmp/cf.json
export CUFILE_ENV_PATH_JSON=/tmp/cf.json DAMACY_CUFILE_LIB=/usr/local/cuda/lib64/libcufile.so.0 CUFILE_FORCE_COMPAT_MODE=true
mkdir -p /root/gdstmp; export DAMACY_GDS_TEST_DIR=/root/gdstmp; df -T /root/gdstmp /tmp | tail -2
timeout 60 $B/tests/kernels-kernels --test-threads=1 --nocapture cufile_read_is_done_only_after > $OUT/cufile1.txt 2>&1; echo "cufile (tmp on root) rc=$?"
grep -E "panicked|test result" -A1 $OUT/cufile1.txt | head -4
export DAMACY_GDS_TEST_DIR=/dev/shm/gds; mkdir -p $DAMACY_GDS_TEST_DIR
timeout 60 $B/tests/kernels-kernels --test-threads=1 --nocapture cufile_read_is_done_only_after > $OUT/cufile2.txt 2>&1; echo "cufile (shm) rc=$?"
grep -E "panicked|test result" -A1 $OUT/cufile2.txt | head -4
ls $OUT; tail -30 $OUT/cufile*.log 2>/dev/null | grep -v "^$" | tail -25
wait
echo "== end $(date +%T)"
