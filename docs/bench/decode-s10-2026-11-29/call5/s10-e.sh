#!/usr/bin/env bash
# session 10, call 5: main with persistent 128-row column-outer tiles (Mixtral): forward case,
# moert run checksum (must equal call 3's: the work order changes no element's arithmetic), A/B
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name --format=csv,noheader; date -u
B=build-gpu
for a in "mixtral-8x7b 512" "mixtral-8x7b 128"; do set -- $a
  echo "$1 T=$2 L=2 $(timeout 60 $B/moert run --backend cuda --model $1 --tokens $2 --layers 2 \
      --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"; done
for r in 1 2; do
  for cfg in MOERT_X=1 MOERT_PREFILL_PERSISTENT=0; do
    echo "# mixtral-8x7b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model mixtral-8x7b \
      --tokens 256,512,1024 --json >> $OUT/ab.jsonl 2>&1
    echo "# mixtral-8x7b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage prefill --model mixtral-8x7b \
      --tokens 4096 --json >> $OUT/ab.jsonl 2>&1
  done
done
python3 - $OUT/ab.jsonl <<'PY'
import json,sys
cur=None;res={}
for l in open(sys.argv[1]):
    if l.startswith('#'): p=[x.strip() for x in l[1:].split('|')]; cur=(p[0],p[1]); continue
    if l.startswith('{'):
        r=json.loads(l); res.setdefault((cur[0],r.get('stage',''),r['T']),{}).setdefault(cur[1],[]).append((round(r['us'],1),r.get('ratio'),r.get('tflops')))
    elif l.strip(): print('!', l.strip()[:200])
for k in sorted(res):
    print(k)
    for c,v in res[k].items(): print('   %-30s %s' % (c, v))
PY
echo "t=$(( $(date +%s) - t0 ))"
timeout 240 env CK_RUN_CASE=forward $B/tests/test_gpu_forward > $OUT/forward.log 2>&1; echo "forward rc=$? $(grep Checks $OUT/forward.log)"
grep -E ":F:|:E:" $OUT/forward.log | head
echo "total $(( $(date +%s) - t0 )) s"
