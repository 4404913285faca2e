#!/usr/bin/env bash
# session 4, call 7: the shared expert on the prefill GEMMs below T=64 too
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
for r in 1 2; do
  for mt in 64 1; do
    echo "# min_t=$mt run $r" >> $OUT/fwd.jsonl
    MOERT_CUDA_SHARED_PREFILL_MIN_T=$mt timeout 90 build-gpu/moert bench --backend cuda --stage forward --model qwen2-57b-a14b --tokens 1,2,4,8,16,32,64 --json >> $OUT/fwd.jsonl 2>&1
  done
done
python3 -c "
import json,collections
cur=''; d=collections.OrderedDict()
for l in open('$OUT/fwd.jsonl'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault((r['model'][:12], r['T']), []).append('%s:%.1f(%.3f)'%(cur, r['us'], r['ratio']))
for k,v in d.items(): print(k, ' '.join(v))
"
s=$(date +%s)
MOERT_CUDA_SHARED_PREFILL_MIN_T=1 CK_RUN_CASE=quick timeout 150 build-gpu/tests/test_gpu_forward > $OUT/quick-min1.log 2>&1
echo "quick min_t=1 rc=$? $(( $(date +%s) - s )) s $(grep Checks $OUT/quick-min1.log | tail -1)"; grep -E ":F:|:E:" $OUT/quick-min1.log | head -3
echo "total $(( $(date +%s) - t0 )) s"
