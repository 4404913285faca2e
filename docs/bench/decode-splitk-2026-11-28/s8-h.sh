#!/usr/bin/env bash
# session 8, call 8: the split-K kernel forced on Qwen3-235B-A22B and Mixtral-8x7B at T=1,2
# (MOERT_CUDA_PREFILL=0 MOERT_CUDA_DEC_FUSED=1) against the default (prefill GEMMs there)
# and the two decode kernels (MOERT_CUDA_PREFILL=0 MOERT_CUDA_DEC_FUSED=0)
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
for r in 1 2; do
  for v in default splitk dec; do
    case $v in default) e="MOERT_X=1";; splitk) e="MOERT_CUDA_PREFILL=0 MOERT_CUDA_DEC_FUSED=1";; dec) e="MOERT_CUDA_PREFILL=0 MOERT_CUDA_DEC_FUSED=0";; esac
    for m in qwen3-235b-a22b mixtral-8x7b; do
      echo "# v=$v run $r" >> $OUT/bench.jsonl
      env $e timeout 90 build-gpu/moert bench --backend cuda --stage forward --model $m --tokens 1,2 --json >> $OUT/bench.jsonl 2>&1
    done
  done
done
python3 -c "
import json
cur=''
res={}
for l in open('$OUT/bench.jsonl'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); res.setdefault((r['model'][:8],cur),{}).setdefault(r['T'],[]).append((r['us'],r['ratio']))
    elif l.strip(): print('!', l.strip()[:200])
for k,v in sorted(res.items()): print(k, v)
"
echo "total $(( $(date +%s) - t0 )) s"
