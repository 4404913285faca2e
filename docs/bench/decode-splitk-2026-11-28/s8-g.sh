#!/usr/bin/env bash
# session 8, call 7: split-K kernel gate/up ring shapes at T=1 (MOERT_CUDA_DF_EXP=U STAGES,
# an uncommitted experiment), forced; and an ncu profile of the default at T=1
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
for r in 1 2 3; do
  for v in off 13 14 15 12 22 23; do
    echo "# v=$v run $r" >> $OUT/bench.jsonl
    if [ $v = off ]; then e="MOERT_CUDA_DEC_FUSED=0"; else e="MOERT_CUDA_DEC_FUSED=1 MOERT_CUDA_DF_EXP=$v"; fi
    env $e timeout 60 build-gpu/moert bench --backend cuda --stage forward --tokens 1 --json >> $OUT/bench.jsonl 2>&1
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
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
timeout 120 $NCU --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats -k regex:moert_dec_fused --launch-skip 5 --launch-count 1 build-gpu/moert bench --backend cuda --stage forward --tokens 1 --iters 3 > $OUT/ncu-fused-t1.txt 2>&1
grep -E "Duration|DRAM Throughput|L2 Hit|Mem Busy|Max Bandwidth|Stall|Warp Cycles|Achieved" $OUT/ncu-fused-t1.txt | head -30
echo "total $(( $(date +%s) - t0 )) s"
