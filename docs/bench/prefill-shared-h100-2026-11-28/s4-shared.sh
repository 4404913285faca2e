#!/usr/bin/env bash
# session 4, call 5: the shared expert on the prefill GEMMs (MOERT_CUDA_SHARED_PREFILL=1, the
# new default) against the tiled kernels (=0): tests, then the prefill stage of the two
# presets with a shared expert
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run quick 150 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
run forward 200 CK_RUN_CASE=forward build-gpu/tests/test_gpu_forward
run prefill 150 build-gpu/tests/test_gpu_prefill
grep -E "shared" $OUT/quick.log | head -8
for r in 1 2; do
  for f in 0 1; do
    for m in deepseek-v3 qwen2-57b-a14b; do
      echo "# shared_prefill=$f $m run $r" >> $OUT/bench.jsonl
      MOERT_CUDA_SHARED_PREFILL=$f timeout 90 build-gpu/moert bench --backend cuda --stage prefill --model $m --tokens 2048,8192 --json >> $OUT/bench.jsonl 2>&1
    done
  done
done
python3 -c "
import json
cur=''
for l in open('$OUT/bench.jsonl'):
    if l.startswith('#'): cur=l.strip(); continue
    if l.startswith('{'):
        r=json.loads(l); print(cur, r['model'][:12], r['T'], r['us'], r.get('tflops'), r.get('ratio'))
    elif l.strip(): print('  ', l.strip()[:200])
"
echo "total $(( $(date +%s) - t0 )) s"
