#!/usr/bin/env bash
# session 8, call 5: split-K decode v3 (clusters of 2 CTAs splitting K on sm_90): tests,
# forward bench fused 0/1 alternated (T=1,2), ncu of T=1, memcheck + racecheck of splitk
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run splitk 100 MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=0 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
grep -E "split-K" $OUT/splitk.log | head -3
for r in 1 2 3; do
  for f in 0 1; do
    echo "# fused=$f run $r" >> $OUT/bench.jsonl
    MOERT_CUDA_DEC_FUSED=$f timeout 60 build-gpu/moert bench --backend cuda --stage forward --tokens 1,2,4 --json >> $OUT/bench.jsonl 2>&1
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
timeout 90 $NCU --section SpeedOfLight --section Occupancy -k regex:moert_ --launch-skip 20 --launch-count 4 build-gpu/moert bench --backend cuda --stage forward --tokens 1 --iters 5 > $OUT/ncu-t1.txt 2>&1
grep -E "^  moert_|Duration|DRAM Throughput|Achieved Occupancy" $OUT/ncu-t1.txt | head -20
run quick 200 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for tool in memcheck racecheck synccheck; do
  s=$(date +%s)
  MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=0 CK_RUN_CASE=quick timeout 150 $S --tool $tool build-gpu/tests/test_gpu_forward > $OUT/$tool-splitk.log 2>&1
  echo "$tool rc=$? $(( $(date +%s) - s )) s"; grep -c "Passed" $OUT/$tool-splitk.log; tail -1 $OUT/$tool-splitk.log
done
echo "total $(( $(date +%s) - t0 )) s"
