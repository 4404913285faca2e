#!/usr/bin/env bash
# eleventh session, call 8: MOERT_EARLY on 64-row tiles only: GPU tests, a short bench
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
run quick 100 CK_RUN_CASE=quick $B/tests/test_gpu_forward
timeout 60 $B/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 1,2,512,1024 --json > $OUT/bench.jsonl 2>&1
timeout 60 $B/moert bench --backend cuda --stage forward --model mixtral-8x7b --tokens 1,512 --json >> $OUT/bench.jsonl 2>&1
cut -c1-150 $OUT/bench.jsonl
echo "total $(( $(date +%s) - t0 )) s"
