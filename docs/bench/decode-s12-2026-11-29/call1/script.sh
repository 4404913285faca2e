#!/usr/bin/env bash
# For the twelfth session's first device call (written at the end of the eleventh, not run):
#   build main into build-gpu here (cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release
#   -DMOERT_BUILD_TOOLS=ON), copy ../shared/peers/torch_peers.py into .device/, carry
#   ["build-gpu", ".device"], run this script on the device.
# 1. the GPU tests on ac4b48e's final rule (MOERT_EARLY on 64-row tiles only) and e6d6b07's
#    small-scratch case (forward), neither run on a GPU;
# 2. moert run --dump for a few (model, T): compare them here with the CPU backend's dumps of
#    the same commands (the weights are the same on every machine since 17c03b4), e.g.
#    build-gpu/moert run --backend cpu --model qwen3-30b-a3b --tokens 8 --layers 1 \
#      --weight-sets 1 --dump /tmp/cpu-q8.bin   (then a rel L2 of the two bf16 files)
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
B=build-gpu
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks|ERROR SUMMARY' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run prefill 100 $B/tests/test_gpu_prefill
run quick 120 CK_RUN_CASE=quick $B/tests/test_gpu_forward
run forward 240 CK_RUN_CASE=forward $B/tests/test_gpu_forward
for mt in qwen3-30b-a3b:1 qwen3-30b-a3b:8 qwen3-30b-a3b:512 mixtral-8x7b:1 mixtral-8x7b:128; do
  m=${mt%:*} T=${mt#*:}
  echo "$m T=$T L=1 $(timeout 90 $B/moert run --backend cuda --model $m --tokens $T --layers 1 \
    --weight-sets 1 --dump $OUT/dump-$m-$T.bin 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
echo "total $(( $(date +%s) - t0 )) s"
