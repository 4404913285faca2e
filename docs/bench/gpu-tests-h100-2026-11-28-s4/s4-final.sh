#!/usr/bin/env bash
# session 4, final call: the GPU tests on the final tree (shared expert on the prefill GEMMs
# at every T by default)
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run gpu_forward 300 build-gpu/tests/test_gpu_forward
run gpu_prefill 150 build-gpu/tests/test_gpu_prefill
run gpu_reliability 150 build-gpu/tests/test_gpu_reliability
grep -E "shared expert.*T=(1|33|300) " $OUT/gpu_forward.log | head -6
echo "total $(( $(date +%s) - t0 )) s"
