#!/usr/bin/env bash
# session 5, call 8: which of persistence, order and the fused gate/up loses at hidden > 2048
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $OUT/machine.txt; date -u >> $OUT/machine.txt
B="build-gpu/moert bench --backend cuda --json"
for cfg in "0 0 0" "1 0 0" "0 1 0" "0 0 1" "1 1 1"; do
  set -- $cfg
  E="MOERT_PREFILL_PERSISTENT=$1 MOERT_PREFILL_ORDER=$2 MOERT_PREFILL_FUSED_GU=$3"
  echo "# p$1o$2f$3" >> $OUT/bench.jsonl
  env $E timeout 100 $B --stage prefill --model deepseek-v3 --tokens 8192 --iters 6 >> $OUT/bench.jsonl 2>&1
  env $E timeout 60 $B --stage prefill --model qwen3-235b-a22b --tokens 4096 >> $OUT/bench.jsonl 2>&1
  echo "p$1o$2f$3 $(( $(date +%s) - t0 )) s"
done
for o in 0 1; do
  echo "# mixtral o$o" >> $OUT/bench.jsonl
  MOERT_PREFILL_ORDER=$o timeout 60 $B --stage forward --model mixtral-8x7b --tokens 256 >> $OUT/bench.jsonl 2>&1
done
python3 -c "
import json
cur=''
for l in open('$OUT/bench.jsonl'):
    if l.startswith('#'): cur=l.split()[1]+' '+(l.split()[2] if len(l.split())>2 else ''); continue
    if l.startswith('{'): r=json.loads(l); print(cur, r['model'][:14], r['T'], r['us'])
"
echo "total $(( $(date +%s) - t0 )) s"
