#!/usr/bin/env bash
# For the tenth session's first device call (written at the end of the ninth, not run):
#   build main into build-gpu and branch exp/order-row-outer into build-order here, carry both
#   (["build-gpu", "build-order", ".device"]), then run this script on the device.
# 1. main: the GPU cases, including the forward case's new assertion on the row tiles from
#    routing (b7a9713) and every launch through moert_cuda_launch (3b6fb22), neither run on
#    a GPU yet;
# 2. the branch: the forward case (Mixtral, hidden 4096, now with the row tile outer for
#    64-row tiles), and `moert run` checksums with MOERT_PREFILL_ORDER=0 and =1, which must be
#    equal bit for bit (the work order does not change any element's arithmetic);
# 3. the branch's default against MOERT_PREFILL_ORDER=0, alternated (decode-log.md v10 call 7).
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks|ERROR SUMMARY' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run main-quick 200 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
run main-forward 240 CK_RUN_CASE=forward build-gpu/tests/test_gpu_forward
run main-prefill 200 build-gpu/tests/test_gpu_prefill
run order-forward 240 CK_RUN_CASE=forward build-order/tests/test_gpu_forward
for a in "mixtral-8x7b 16" "mixtral-8x7b 128" "qwen3-235b-a22b 256" "qwen3-235b-a22b 512"; do
  set -- $a
  for o in 0 1; do
    echo "$1 T=$2 ORDER=$o $(MOERT_PREFILL_ORDER=$o timeout 60 build-order/moert run --backend cuda \
      --model $1 --tokens $2 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror')"
  done
done
for r in 1 2 3; do
  for o in default 0; do
    for m in qwen3-235b-a22b mixtral-8x7b; do
      echo "# $m | $o | $r" >> $OUT/order-ab.jsonl
      if [ $o = default ]; then e=MOERT_X=1; else e=MOERT_PREFILL_ORDER=0; fi
      env $e timeout 40 build-order/moert bench --backend cuda --stage forward --model $m \
        --tokens 16,64,128,256,512 --json >> $OUT/order-ab.jsonl 2>&1
    done
  done
done
echo "total $(( $(date +%s) - t0 )) s"
