#!/usr/bin/env bash
# session 4, call 3: prefill-GEMM tile height and persistence at the decode T where they run
# (Qwen3-30B T >= 16, Mixtral and Qwen3-235B every T): MOERT_PREFILL_BM x MOERT_PREFILL_PERSISTENT
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
for cfg in "auto auto" "64 1" "64 0" "128 0" "128 1"; do
  set -- $cfg
  envs=""; [ $1 != auto ] && envs="MOERT_PREFILL_BM=$1 MOERT_PREFILL_PERSISTENT=$2"
  for m in qwen3-30b-a3b mixtral-8x7b qwen3-235b-a22b; do
    echo "# bm=$1 persistent=$2 $m" >> $OUT/bm.jsonl
    env $envs timeout 60 build-gpu/moert bench --backend cuda --stage forward --model $m --tokens 32,64,128,256,512 --json >> $OUT/bm.jsonl 2>&1
  done
done
python3 -c "
import json,collections
cur=''; d=collections.OrderedDict()
for l in open('$OUT/bm.jsonl'):
    if l.startswith('#'): cur=' '.join(l.split()[1:3]); continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault((r['model'][:12], r['T']), []).append('%s:%.1f(%.3f)'%(cur.replace('persistent=','p'), r['us'], r['ratio']))
for k,v in d.items(): print(k, ' '.join(v))
"
echo "total $(( $(date +%s) - t0 )) s"
