#!/usr/bin/env bash
# session 4, call 4: the tile height again where it looked to matter, each config twice
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
for r in 1 2; do
for cfg in "auto auto" "64 1" "128 1" "128 0"; do
  set -- $cfg
  envs=""; [ $1 != auto ] && envs="MOERT_PREFILL_BM=$1 MOERT_PREFILL_PERSISTENT=$2"
  echo "# bm=$1 persistent=$2 mixtral r$r" >> $OUT/bm2.jsonl
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage forward --model mixtral-8x7b --tokens 192,256,320,384,512 --json >> $OUT/bm2.jsonl 2>&1
  echo "# bm=$1 persistent=$2 qwen3 r$r" >> $OUT/bm2.jsonl
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 1024,2048 --json >> $OUT/bm2.jsonl 2>&1
done
done
python3 -c "
import json,collections
cur=''; d=collections.OrderedDict()
for l in open('$OUT/bm2.jsonl'):
    if l.startswith('#'): cur=' '.join(l.split()[1:3]); continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault((r['model'][:12], r['T']), []).append('%s:%.1f(%.3f)'%(cur.replace('persistent=','p'), r['us'], r['ratio']))
for k,v in d.items(): print(k, ' '.join(v))
"
echo "total $(( $(date +%s) - t0 )) s"
