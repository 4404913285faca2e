#!/usr/bin/env bash
# session 7, call 7: route + plan in one CTA (T k <= 1024) against the multi-CTA route and
# the two-launch device plan (MOERT_CUDA_ROUTE_PLAN=0), alternated twice, at the sizes where
# the one-CTA kernel runs
set -u
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; cat $OUT/machine.txt
B=$OUT/bench.jsonl
for r in 1 2; do for v in "one:X=0" "two:MOERT_CUDA_ROUTE_PLAN=0"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name r$r" >> $B
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 1,8,16,32,64,128 --json >> $B 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage forward --model qwen3-235b-a22b --tokens 32,64,128 --json >> $B 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage forward --model mixtral-8x7b --tokens 64,128,256,512 --json >> $B 2>&1
done; done
python3 -c "
import json,collections
cur=''; d=collections.OrderedDict()
for l in open('$B'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault((r['model'][:10],r['T']), []).append('%s:%.1f'%(cur, r['us']))
for k,v in d.items(): print(k, ' '.join(v))
"
