#!/usr/bin/env bash
# session 8, call 2: split-K decode variants: slab 16/32 x Wd L2::256B 0/1 against the two
# decode kernels (T=1..8, alternated twice); splitk tests at slab 16 and 32; ncu durations
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run splitk32 120 MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=0 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
run splitk16 120 MOERT_CUDA_DEC_FUSED_SLAB=16 MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=0 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
for r in 1 2; do
  for v in "0 32 0" "1 16 0" "1 16 1" "1 32 0" "1 32 1"; do
    set -- $v
    echo "# fused=$1 slab=$2 l2=$3 run $r" >> $OUT/bench.jsonl
    MOERT_CUDA_DEC_FUSED=$1 MOERT_CUDA_DEC_FUSED_SLAB=$2 MOERT_CUDA_DEC_FUSED_L2=$3 timeout 60 build-gpu/moert bench --backend cuda --stage forward --tokens 1,2,4,8 --json >> $OUT/bench.jsonl 2>&1
  done
done
python3 -c "
import json
cur=''
for l in open('$OUT/bench.jsonl'):
    if l.startswith('#'): cur=l.strip(); continue
    if l.startswith('{'):
        r=json.loads(l); print(cur, r['model'][:12], r['T'], r['us'], r.get('ratio'))
"
echo "bench done $(( $(date +%s) - t0 )) s"
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for v in "0 32" "1 32" "1 16"; do
  set -- $v
  for T in 1 4; do
    MOERT_CUDA_DEC_FUSED=$1 MOERT_CUDA_DEC_FUSED_SLAB=$2 timeout 90 $NCU --section SpeedOfLight --section LaunchStats --section Occupancy -k regex:moert_ --launch-skip 20 --launch-count 6 build-gpu/moert bench --backend cuda --stage forward --tokens $T --iters 5 > $OUT/ncu-f$1-s$2-t$T.txt 2>&1
    echo "== fused=$1 slab=$2 T=$T"
    grep -E "^  moert_|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Registers Per" $OUT/ncu-f$1-s$2-t$T.txt | head -40
  done
done
echo "total $(( $(date +%s) - t0 )) s"
