#!/usr/bin/env bash
# session 9, call 7: MOERT_PREFILL_ORDER=1 (row tile outer) against the default, Qwen3-235B-A22B
# and Mixtral-8x7B at T=16..512: with 64-row tiles on hidden 4096 the default is column outer
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
for r in 1 2; do
  for cfg in MOERT_X=1 MOERT_PREFILL_ORDER=1; do
    for m in qwen3-235b-a22b mixtral-8x7b; do
      echo "# $m | $cfg | $r" >> $OUT/ab.jsonl
      env $cfg timeout 30 build-gpu/moert bench --backend cuda --stage forward --model $m --tokens 16,64,128,256,512 --json >> $OUT/ab.jsonl 2>&1
      python3 -c "
import json
print('$m $cfg $r', [(r['T'], r['us']) for r in map(json.loads, [l for l in open('$OUT/ab.jsonl') if l.startswith('{')][-5:])])"
    done
  done
done
echo "total $(( $(date +%s) - t0 )) s"
