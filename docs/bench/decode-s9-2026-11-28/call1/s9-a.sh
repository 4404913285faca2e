#!/usr/bin/env bash
# session 9, call 1: (a) main 18da6a8 on the GPU: quick + forward cases, memcheck of the
# splitk quick case; (b) branch exp/splitk-bulk2 (build-bulk): the bulk-fed split-K kernel
# (MOERT_CUDA_DEC_FUSED_BULK=1) under a timeout, sanitizers, T=1 alternated, ncu
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for c in quick forward; do
  CK_RUN_CASE=$c timeout 200 build-gpu/tests/test_gpu_forward > $OUT/main-$c.log 2>&1
  echo "main $c rc=$? $(grep Checks $OUT/main-$c.log) t=$(( $(date +%s) - t0 ))"; grep -E ":F:|:E:" $OUT/main-$c.log | head -5
done
MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=0 CK_RUN_CASE=quick timeout 200 $S --tool memcheck build-gpu/tests/test_gpu_forward > $OUT/main-memcheck.log 2>&1
echo "main memcheck rc=$? $(tail -1 $OUT/main-memcheck.log) t=$(( $(date +%s) - t0 ))"
B="MOERT_CUDA_DEC_FUSED_BULK=1 MOERT_QUICK_SPLITK=1 MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=0 CK_RUN_CASE=quick"
env $B timeout 60 build-bulk/tests/test_gpu_forward > $OUT/bulk-quick.log 2>&1
rc=$?; echo "bulk quick rc=$rc $(grep Checks $OUT/bulk-quick.log) t=$(( $(date +%s) - t0 ))"; grep -E ":F:|:E:" $OUT/bulk-quick.log | head -3
if [ $rc = 0 ]; then
  for tool in memcheck synccheck racecheck; do
    env $B timeout 150 $S --tool $tool build-bulk/tests/test_gpu_forward > $OUT/bulk-$tool.log 2>&1
    echo "bulk $tool rc=$? $(tail -1 $OUT/bulk-$tool.log) t=$(( $(date +%s) - t0 ))"
  done
fi
for r in 1 2 3; do
  for v in bulk cpasync off; do
    case $v in bulk) e="MOERT_CUDA_DEC_FUSED_BULK=1";; cpasync) e="MOERT_X=1";; off) e="MOERT_CUDA_DEC_FUSED=0";; esac
    echo "# $v $r" >> $OUT/bench.jsonl
    env $e timeout 60 build-bulk/moert bench --backend cuda --stage forward --tokens 1 --json >> $OUT/bench.jsonl 2>&1
  done
done
python3 - $OUT/bench.jsonl <<'PY'
import json,sys
cur='';res={}
for l in open(sys.argv[1]):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); res.setdefault(cur,[]).append((round(r.get('us',0),2), round(r.get('ratio',0),3)))
    elif l.strip(): print('!', l.strip()[:200])
for k,v in res.items(): print(k, v)
PY
for v in bulk cpasync; do
  case $v in bulk) e="MOERT_CUDA_DEC_FUSED_BULK=1";; cpasync) e="MOERT_X=1";; esac
  env $e timeout 90 $NCU --section SpeedOfLight --section Occupancy --section LaunchStats -k regex:moert_dec_fused --launch-skip 10 --launch-count 2 build-bulk/moert bench --backend cuda --stage forward --tokens 1 --iters 5 > $OUT/ncu-$v.txt 2>&1
  echo "ncu $v"; grep -E "Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Block Limit Shared" $OUT/ncu-$v.txt | head -12
done
echo "total $(( $(date +%s) - t0 )) s"
