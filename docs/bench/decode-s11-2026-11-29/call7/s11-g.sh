#!/usr/bin/env bash
# eleventh session, call 7: MOERT_EARLY at the 128-row sizes (call 5: one round only)
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
B=build-gpu
for r in 1 2 3; do
  for cfg in MOERT_X=1 MOERT_PREFILL_EARLY=0; do
    echo "# mixtral-8x7b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model mixtral-8x7b \
      --tokens 256,512 --json >> $OUT/ab.jsonl 2>&1
    echo "# qwen3-235b-a22b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model qwen3-235b-a22b \
      --tokens 256,512 --json >> $OUT/ab.jsonl 2>&1
    echo "# qwen3-30b-a3b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage prefill --model qwen3-30b-a3b \
      --tokens 1024,8192 --json >> $OUT/ab.jsonl 2>&1
  done
  echo "round $r t=$(( $(date +%s) - t0 ))"
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
