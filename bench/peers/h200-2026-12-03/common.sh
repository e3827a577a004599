# Sourced by the call scripts of the 4th session (calls 5-8; their commands are as they
# ran, the shared lines are here): unpacks the bundle, points damacy at its nvCOMP,
# sends the output to $OUT/log.txt too, and defines
# - `b NAME SCENARIO ARGS...`: one `damacy bench` run, its report under $OUT/j;
# - `udev_record`: the udev record of the root disk that libcufile needs in this
#   container (without it every cuFileHandleRegister fails with 5027), and the cuFile
#   settings of compat mode.
B=target/gpu-bundle
for f in $B/*/*.xz; do xz -d "$f"; done
chmod +x $B/bin/damacy $B/tests/*
export DAMACY_NVCOMP_LIB=$(ls $PWD/$B/lib/libnvcomp.so* | head -1)
D=$PWD/$B/bin/damacy
exec > >(tee -a $OUT/log.txt) 2>&1
mkdir -p $OUT/j
b() { local name=$1 sc=$2; shift 2
  timeout 150 $D bench --scenario $sc --data /tmp/d-$sc --threads 16 --json $OUT/j/$name.json "$@" > $OUT/j/$name.txt 2>&1
  echo "-- $name rc=$? $(grep -E '^throughput' $OUT/j/$name.txt | cut -c1-30) | $(grep -E 'achieved' $OUT/j/$name.txt | sed 's/.*->//')"
  grep -E "^per batch|^prepare|^gds|chunk cache|^epoch" $OUT/j/$name.txt | cut -c1-260
}
udev_record() {
  local dev; dev=$(mountpoint -d /); echo "root device $dev"
  mkdir -p /run/udev/data && printf 'E:ID_FS_USAGE=filesystem\nE:ID_FS_TYPE=ext4\n' > /run/udev/data/b$dev
  export DAMACY_CUFILE_LIB=/usr/local/cuda/lib64/libcufile.so.0 CUFILE_FORCE_COMPAT_MODE=true
  export DAMACY_GDS_TEST_DIR=/root/gdstmp; mkdir -p $DAMACY_GDS_TEST_DIR
}
