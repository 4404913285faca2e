#!/usr/bin/env bash
# session 4, call 6: the shared expert on the prefill GEMMs at decode sizes (forward stage)
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
for r in 1 2; do
  for f in 0 1; do
    for m in qwen2-57b-a14b deepseek-v3; do
      echo "# shared_prefill=$f $m run $r" >> $OUT/fwd.jsonl
      MOERT_CUDA_SHARED_PREFILL=$f timeout 90 build-gpu/moert bench --backend cuda --stage forward --model $m --tokens 32,64,128,256,512 --json >> $OUT/fwd.jsonl 2>&1
    done
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
echo "total $(( $(date +%s) - t0 )) s"
