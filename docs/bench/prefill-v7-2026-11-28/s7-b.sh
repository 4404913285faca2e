#!/usr/bin/env bash
# session 7, call 2: where the sm90 GEMMs' warps wait (Qwen3-30B-A3B T=8192, default kernels):
# ncu source page (SASS, stall samples per instruction) of gate/up and down, then the
# warp-state metrics; the baseline bench on this card
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; ncu --version | tail -1 >> $OUT/machine.txt; cat $OUT/machine.txt
mkdir -p $OUT/logs
B=$OUT/bench.jsonl
timeout 90 build-gpu/moert bench --backend cuda --stage prefill --model qwen3-30b-a3b --tokens 2048,8192,32768 --json >> $B 2>&1
grep -o '"T":[0-9]*,"us":[0-9.]*' $B
for k in 0 1; do
timeout 150 ncu --clock-control none --section WarpStateStats --section SourceCounters --page source --print-source sass --csv \
   -k regex:"moert_prefill_gemm" --launch-skip $((2+k)) --launch-count 1 \
   build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/logs/ncu-source-$k.csv 2> $OUT/logs/ncu-source-$k.err
echo "ncu source $k rc=$? $(( $(date +%s) - t0 )) s $(wc -l < $OUT/logs/ncu-source-$k.csv) lines"; head -c 600 $OUT/logs/ncu-source-$k.err
done
head -3 $OUT/logs/ncu-source-0.csv | cut -c1-600
timeout 150 ncu --clock-control none --section WarpStateStats --section SchedulerStats --section InstructionStats --print-details all \
   -k regex:"moert_prefill_gemm" --launch-skip 2 --launch-count 2 \
   build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/logs/ncu-warpstate.txt 2>&1
echo "ncu warpstate rc=$? $(( $(date +%s) - t0 )) s"
grep -iE "stall|Warp Cycles|Eligible|Issued Warp|No Eligible" $OUT/logs/ncu-warpstate.txt | head -60
echo "total $(( $(date +%s) - t0 )) s"
