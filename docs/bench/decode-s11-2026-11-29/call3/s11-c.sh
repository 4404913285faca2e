#!/usr/bin/env bash
# eleventh session, call 3: the narrow tiles at T=1 by default (8 stages), skip-idle removed
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
run quick 120 CK_RUN_CASE=quick $B/tests/test_gpu_forward
run forward 200 CK_RUN_CASE=forward $B/tests/test_gpu_forward
run prefill 100 $B/tests/test_gpu_prefill
run quick-n0 120 CK_RUN_CASE=quick MOERT_PREFILL_NARROW=0 $B/tests/test_gpu_forward
for v in MOERT_X=1 MOERT_PREFILL_NARROW=0; do
  echo "qwen3-30b T=1 L=2 [$v] $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens 1 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
for r in 1 2 3; do
  for cfg in MOERT_X=1 MOERT_PREFILL_NARROW=0; do
    echo "# qwen3-30b-a3b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model qwen3-30b-a3b \
      --tokens 1,2 --json >> $OUT/ab.jsonl 2>&1
  done
done
for r in 1 2; do
  for cfg in MOERT_X=1 MOERT_PREFILL_BM=64 MOERT_PREFILL_BM=128; do
    echo "# mixtral-8x7b | $cfg | $r" >> $OUT/bm.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model mixtral-8x7b \
      --tokens 256,512,1024 --json >> $OUT/bm.jsonl 2>&1
    echo "# qwen3-235b-a22b | $cfg | $r" >> $OUT/bm.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model qwen3-235b-a22b \
      --tokens 256,512 --json >> $OUT/bm.jsonl 2>&1
    echo "# qwen3-30b-a3b | $cfg | $r" >> $OUT/bm.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model qwen3-30b-a3b \
      --tokens 256,512,1024 --json >> $OUT/bm.jsonl 2>&1
  done
done
python3 tools/ab-table.py $OUT/ab.jsonl $OUT/bm.jsonl
echo "tools: $(which nsys ncu 2>&1 | tr '\n' ' ') $(ls -d /usr/local/cuda*/bin/nsys /opt/nvidia/nsight* 2>/dev/null | tr '\n' ' ')"
echo "total $(( $(date +%s) - t0 )) s"
