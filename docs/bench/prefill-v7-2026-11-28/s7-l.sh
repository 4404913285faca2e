#!/usr/bin/env bash
# session 7, call 12: the sm_80 kernel with its A row sources hoisted (87e8d4a), verified on
# this sm_90 GPU through MOERT_PREFILL_SM80=1: test_gpu_prefill and the forward quick cases
set -u
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $OUT/machine.txt; date -u >> $OUT/machine.txt; cat $OUT/machine.txt
for t in "prefill_sm80:MOERT_PREFILL_SM80=1 build-gpu/tests/test_gpu_prefill" "quick_sm80:MOERT_PREFILL_SM80=1 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward"; do
  name=${t%%:*}; cmd=${t#*:}
  s=$(date +%s); timeout 70 env $cmd > $OUT/$name.log 2>&1; rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep Checks $OUT/$name.log)"; grep -E ":F:|:E:" $OUT/$name.log | head -5
done
grep -m3 "^prefill" $OUT/prefill_sm80.log | cut -c1-150
