#!/usr/bin/env bash
# session 10, call 3: the branch with the tool's upload fix and the order rule by expert bytes
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name --format=csv,noheader; date -u
B=build-order
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks|ERROR SUMMARY' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run forward 240 CK_RUN_CASE=forward $B/tests/test_gpu_forward
run prefill-order0 120 MOERT_PREFILL_ORDER=0 $B/tests/test_gpu_prefill
run prefill-order0-np 120 MOERT_PREFILL_ORDER=0 MOERT_PREFILL_PERSISTENT=0 $B/tests/test_gpu_prefill
echo "t=$(( $(date +%s) - t0 ))"
for a in "mixtral-8x7b 128" "qwen3-235b-a22b 256" "qwen3-30b-a3b 512" "mixtral-8x7b 512"; do
  set -- $a
  for i in 1 2; do
    echo "$1 T=$2 L=2 #$i $(timeout 60 $B/moert run --backend cuda --model $1 --tokens $2 --layers 2 \
      --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
  done
done
echo "t=$(( $(date +%s) - t0 ))"
for r in 1 2; do
  for cfg in MOERT_X=1 MOERT_PREFILL_ORDER=1; do
    echo "# mixtral-8x7b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model mixtral-8x7b \
      --tokens 16,128,256,512,1024 --json >> $OUT/ab.jsonl 2>&1
    echo "# mixtral-8x7b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage prefill --model mixtral-8x7b \
      --tokens 4096 --json >> $OUT/ab.jsonl 2>&1
  done
  echo "round $r t=$(( $(date +%s) - t0 ))"
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
for m in qwen3-30b-a3b qwen3-235b-a22b mixtral-8x7b; do
  timeout 90 $B/moert bench --backend cuda --stage forward --model $m --json >> $OUT/v11.jsonl 2>&1
done
grep -h '^{' $OUT/v11.jsonl | python3 -c "
import json,sys
for l in sys.stdin:
    r=json.loads(l); print(r['model'], r['T'], round(r['us'],2), r.get('ratio'))"
echo "total $(( $(date +%s) - t0 )) s"
