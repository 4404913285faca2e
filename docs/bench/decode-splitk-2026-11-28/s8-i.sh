#!/usr/bin/env bash
# session 8, call 9 (tree 6df753a+docs): the committed rule (T=1 split-K, T=2 two kernels)
# against forced settings, and the prefill GEMMs forced at Qwen3-30B-A3B decode sizes
# (MOERT_CUDA_PREFILL=1: TMA-fed weights) against the default, T=1,2,4,8
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
for r in 1 2 3; do
  for v in auto fused0 prefill; do
    case $v in auto) e="MOERT_X=1";; fused0) e="MOERT_CUDA_DEC_FUSED=0";; prefill) e="MOERT_CUDA_PREFILL=1";; esac
    echo "# v=$v run $r" >> $OUT/bench.jsonl
    env $e timeout 90 build-gpu/moert bench --backend cuda --stage forward --tokens 1,2,4,8 --json >> $OUT/bench.jsonl 2>&1
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
CK_RUN_CASE=quick MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=0 timeout 100 build-gpu/tests/test_gpu_forward > $OUT/splitk.log 2>&1; echo "splitk rc=$? $(grep Checks $OUT/splitk.log)"
echo "total $(( $(date +%s) - t0 )) s"
