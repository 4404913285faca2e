#!/usr/bin/env bash
# For the eleventh session's first device call (written at the end of the tenth, not run):
#   build main into build-gpu here (cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release
#   -DMOERT_BUILD_TOOLS=ON), copy ../shared/peers/torch_peers.py into .device/, carry
#   ["build-gpu", ".device"], run this script on the device.
# 1. main's GPU cases: 5ab65bb (fused_due refactor, the t1 hook) and e4b411f / its map
#    buffer fix were never run on a GPU; quick, forward, prefill;
# 2. the narrow tiles at 8 stages under the tests (call 8 of the tenth session found no time);
# 3. MOERT_PREFILL_NARROW=t1 (the narrow prefill GEMMs at the split-K kernel's T): quick and
#    forward cases with it, checksums, and the A/B at T=1 against the default, three rounds;
# 4. MOERT_PREFILL_SKIP_IDLE=1 (below).
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
run forward-skip 240 CK_RUN_CASE=forward MOERT_PREFILL_SKIP_IDLE=1 $B/tests/test_gpu_forward
for r in 1 2; do
  for cfg in MOERT_X=1 MOERT_PREFILL_SKIP_IDLE=1; do
    echo "# mixtral-8x7b | $cfg | $r" >> $OUT/skip.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model mixtral-8x7b \
      --tokens 256,512,1024 --json >> $OUT/skip.jsonl 2>&1
    echo "# qwen3-30b-a3b | $cfg | $r" >> $OUT/skip.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage prefill --model qwen3-30b-a3b \
      --tokens 2048,8192 --json >> $OUT/skip.jsonl 2>&1
  done
done
for v in MOERT_X=1 "MOERT_PREFILL_NARROW=t1 MOERT_PREFILL_NARROW_STAGES=8"; do
  echo "qwen3-30b T=1 L=2 [$v] $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens 1 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
for r in 1 2 3; do
  for cfg in MOERT_X=1 "MOERT_PREFILL_NARROW=t1 MOERT_PREFILL_NARROW_STAGES=8" "MOERT_PREFILL_NARROW=1 MOERT_CUDA_PREFILL=1 MOERT_PREFILL_NARROW_STAGES=8"; do
    echo "# qwen3-30b-a3b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model qwen3-30b-a3b \
      --tokens 1,2 --json >> $OUT/ab.jsonl 2>&1
  done
done
python3 tools/ab-table.py $OUT/ab.jsonl $OUT/skip.jsonl
echo "total $(( $(date +%s) - t0 )) s"
