#!/usr/bin/env bash
# session 7, call 11: the combine kernels' common start factored out (combine_begin): the
# GPU forward tests (quick: both combines; route; reliability: device = host bits)
set -u
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $OUT/machine.txt; date -u >> $OUT/machine.txt; cat $OUT/machine.txt
for t in "quick:CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward" "route:CK_RUN_CASE=route build-gpu/tests/test_gpu_forward" "reliability:X=0 build-gpu/tests/test_gpu_reliability"; do
  name=${t%%:*}; cmd=${t#*:}
  s=$(date +%s); timeout 100 env $cmd > $OUT/$name.log 2>&1; rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep Checks $OUT/$name.log)"; grep -E ":F:|:E:" $OUT/$name.log | head -5
done
