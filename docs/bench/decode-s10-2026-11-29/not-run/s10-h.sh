#!/usr/bin/env bash
# session 10, call 8: the narrow tiles at 8 stages (default of the hook): tests and checksums
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
B=build-gpu
timeout 60 $B/tests/test_gpu_prefill > $OUT/prefill.log 2>&1; echo "prefill rc=$? $(grep Checks $OUT/prefill.log)"
grep -E ":F:|:E:" $OUT/prefill.log | head -3; grep "gate/up 64x64" $OUT/prefill.log | head -2
for T in 1 2; do for v in MOERT_X=1 "MOERT_PREFILL_NARROW=1 MOERT_CUDA_PREFILL=1" MOERT_CUDA_PREFILL=1; do
  echo "qwen3-30b T=$T L=2 [$v] $(env $v timeout 30 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens $T --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "t=$(( $(date +%s) - t0 ))"
timeout $(( 125 - ($(date +%s) - t0) )) env CK_RUN_CASE=quick MOERT_PREFILL_NARROW=1 $B/tests/test_gpu_forward > $OUT/quick.log 2>&1
echo "quick-narrow rc=$? $(grep Checks $OUT/quick.log)"; grep -E ":F:|:E:" $OUT/quick.log | head -3
echo "total $(( $(date +%s) - t0 )) s"
