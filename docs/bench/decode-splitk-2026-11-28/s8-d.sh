#!/usr/bin/env bash
# session 8, call 4: split-K decode ring depths (MOERT_CUDA_DEC_FUSED_STAGES = gate/up x 10 + Wd)
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
for r in 1 2 3; do
  for v in 0 33 42 32 22 52 62; do
    echo "# stages=$v run $r" >> $OUT/bench.jsonl
    if [ $v = 0 ]; then e="MOERT_CUDA_DEC_FUSED=0"; else e="MOERT_CUDA_DEC_FUSED=1 MOERT_CUDA_DEC_FUSED_STAGES=$v"; fi
    env $e timeout 60 build-gpu/moert bench --backend cuda --stage forward --tokens 1,2 --json >> $OUT/bench.jsonl 2>&1
  done
done
python3 -c "
import json
cur=''
res={}
for l in open('$OUT/bench.jsonl'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); res.setdefault(cur,{}).setdefault(r['T'],[]).append(r['us'])
    elif l.strip(): print('!', l.strip()[:200])
for k,v in res.items(): print(k, v)
"
echo "total $(( $(date +%s) - t0 )) s"
