#!/usr/bin/env bash
# session 9, call 6: the prefill GEMM shape hooks at Mixtral-8x7B and Qwen3-235B-A22B T=256/512
# (hidden 4096: 128-row tiles one CTA a tile, row tile outer, by default), two rounds
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name --format=csv,noheader; date -u
for r in 1 2; do
  for cfg in default "MOERT_PREFILL_BM=64" "MOERT_PREFILL_PERSISTENT=1" "MOERT_PREFILL_BM=64 MOERT_PREFILL_PERSISTENT=0" "MOERT_PREFILL_ORDER=0" "MOERT_PREFILL_FUSED_GU=1" "MOERT_PREFILL_PERSISTENT=1 MOERT_PREFILL_ORDER=1"; do
    for m in mixtral-8x7b qwen3-235b-a22b; do
      echo "# $m | $cfg | $r" >> $OUT/ab.jsonl
      env MOERT_X=1 $cfg timeout 40 build-gpu/moert bench --backend cuda --stage forward --model $m --tokens 256,512 --json >> $OUT/ab.jsonl 2>&1
    done
  done
  echo "round $r t=$(( $(date +%s) - t0 ))"
  [ $(( $(date +%s) - t0 )) -gt 170 ] && break
done
python3 - $OUT/ab.jsonl <<'PY'
import json,sys
cur=None;res={}
for l in open(sys.argv[1]):
    if l.startswith('#'): p=[x.strip() for x in l[1:].split('|')]; cur=(p[0],p[1]); continue
    if l.startswith('{'):
        r=json.loads(l); res.setdefault((cur[0],r['T']),{}).setdefault(cur[1],[]).append(r['us'])
    elif l.strip(): print('!', l.strip()[:200])
for k in sorted(res):
    print(k)
    for c,v in res[k].items(): print('   %-50s %s' % (c, [round(x,1) for x in v]))
PY
echo "total $(( $(date +%s) - t0 )) s"
