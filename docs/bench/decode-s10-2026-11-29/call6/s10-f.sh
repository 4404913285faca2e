#!/usr/bin/env bash
# session 10, call 6: the narrow tiles (commit after 744b4a7 + docs): tests, checksums, A/B
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name --format=csv,noheader; date -u
B=build-gpu
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks|ERROR SUMMARY' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run prefill 90 $B/tests/test_gpu_prefill
grep "gate/up 64x64" $OUT/prefill.log | head -2
run quick-narrow 90 CK_RUN_CASE=quick MOERT_PREFILL_NARROW=1 $B/tests/test_gpu_forward
echo "t=$(( $(date +%s) - t0 ))"
for v in MOERT_X=1 MOERT_PREFILL_NARROW=0; do
  echo "qwen3-30b T=2 L=2 [$v] $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens 2 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
for r in 1 2; do
  for cfg in MOERT_X=1 MOERT_PREFILL_NARROW=0; do
    for m in qwen3-30b-a3b qwen3-235b-a22b; do
      echo "# $m | $cfg | $r" >> $OUT/ab.jsonl
      env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model $m \
        --tokens 1,2,4 --json >> $OUT/ab.jsonl 2>&1
    done
    echo "# qwen3-30b-a3b | $cfg MOERT_CUDA_PREFILL=1 | $r" >> $OUT/ab.jsonl
    env $cfg MOERT_CUDA_PREFILL=1 timeout 60 $B/moert bench --backend cuda --stage forward \
      --model qwen3-30b-a3b --tokens 1 --json >> $OUT/ab.jsonl 2>&1
  done
  echo "round $r t=$(( $(date +%s) - t0 ))"
done
for st in 4 8; do
  echo "# qwen3-30b-a3b | STAGES=$st | 1" >> $OUT/ab.jsonl
  env MOERT_PREFILL_NARROW_STAGES=$st timeout 60 $B/moert bench --backend cuda --stage forward \
    --model qwen3-30b-a3b --tokens 1,2 --json >> $OUT/ab.jsonl 2>&1
  echo "# qwen3-30b-a3b | STAGES=$st MOERT_CUDA_PREFILL=1 | 1" >> $OUT/ab.jsonl
  env MOERT_PREFILL_NARROW_STAGES=$st MOERT_CUDA_PREFILL=1 timeout 60 $B/moert bench --backend cuda \
    --stage forward --model qwen3-30b-a3b --tokens 1 --json >> $OUT/ab.jsonl 2>&1
done
python3 - $OUT/ab.jsonl <<'PY'
import json,sys
cur=None;res={}
for l in open(sys.argv[1]):
    if l.startswith('#'): p=[x.strip() for x in l[1:].split('|')]; cur=(p[0],p[1]); continue
    if l.startswith('{'):
        r=json.loads(l); res.setdefault((cur[0],r['T']),{}).setdefault(cur[1],[]).append((round(r['us'],2),r.get('ratio')))
    elif l.strip(): print('!', l.strip()[:200])
for k in sorted(res):
    print(k)
    for c,v in res[k].items(): print('   %-40s %s' % (c, v))
PY
echo "total $(( $(date +%s) - t0 )) s"
