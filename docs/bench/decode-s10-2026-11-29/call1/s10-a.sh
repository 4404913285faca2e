#!/usr/bin/env bash
# session 10, call 1: next-session.sh of the ninth session (main's GPU cases; the branch's
# forward case, checksums, A/B), plus a matrix of the work-order / persistence hooks at
# hidden 4096 (Mixtral-8x7B, Qwen3-235B-A22B) and DeepSeek-V3 prefill T=1024 (64-row tiles).
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks|ERROR SUMMARY' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run main-quick 200 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
run main-forward 240 CK_RUN_CASE=forward build-gpu/tests/test_gpu_forward
run main-prefill 200 build-gpu/tests/test_gpu_prefill
run order-forward 240 CK_RUN_CASE=forward build-order/tests/test_gpu_forward
echo "t=$(( $(date +%s) - t0 ))"
for a in "mixtral-8x7b 16" "mixtral-8x7b 128" "qwen3-235b-a22b 256" "qwen3-235b-a22b 512"; do
  set -- $a
  for o in 0 1; do
    echo "$1 T=$2 ORDER=$o $(MOERT_PREFILL_ORDER=$o timeout 60 build-order/moert run --backend cuda \
      --model $1 --tokens $2 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror')"
  done
done
echo "t=$(( $(date +%s) - t0 ))"
for r in 1 2; do
  for cfg in MOERT_X=1 MOERT_PREFILL_ORDER=0 MOERT_PREFILL_PERSISTENT=1 "MOERT_PREFILL_PERSISTENT=1 MOERT_PREFILL_ORDER=0" "MOERT_PREFILL_BM=64 MOERT_PREFILL_ORDER=0"; do
    for m in qwen3-235b-a22b mixtral-8x7b; do
      echo "# $m | $cfg | $r" >> $OUT/ab.jsonl
      env $cfg timeout 60 build-order/moert bench --backend cuda --stage forward --model $m \
        --tokens 16,128,256,512,1024 --json >> $OUT/ab.jsonl 2>&1
    done
    echo "# deepseek-v3 | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 build-order/moert bench --backend cuda --stage prefill --model deepseek-v3 \
      --tokens 1024 --json >> $OUT/ab.jsonl 2>&1
  done
  echo "round $r t=$(( $(date +%s) - t0 ))"
  [ $(( $(date +%s) - t0 )) -gt 420 ] && break
done
python3 - $OUT/ab.jsonl <<'PY'
import json,sys
cur=None;res={}
for l in open(sys.argv[1]):
    if l.startswith('#'): p=[x.strip() for x in l[1:].split('|')]; cur=(p[0],p[1]); continue
    if l.startswith('{'):
        r=json.loads(l); res.setdefault((cur[0],r['T']),{}).setdefault(cur[1],[]).append((round(r['us'],1),r.get('ratio')))
    elif l.strip(): print('!', l.strip()[:200])
for k in sorted(res):
    print(k)
    for c,v in res[k].items(): print('   %-50s %s' % (c, v))
PY
echo "total $(( $(date +%s) - t0 )) s"
