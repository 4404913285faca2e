#!/usr/bin/env bash
# s22 call 2: where Qwen3-30B-A3B's prefill sizes spend their time (T=512, 1024, 2048 timelines;
# ncu of the two GEMMs at T=1024 and 2048), and which NVML power reading follows a short load
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
python3 docs/bench/decode-s22-2026-11-30/call2/nvml_power.py > $OUT/nvml-power.txt 2>&1; tail -3 $OUT/nvml-power.txt; head -1 $OUT/nvml-power.txt
for T in 512 1024 2048 4096; do trace q30-t$T qwen3-30b-a3b $T | sed -n 3,11p; done
trace q30-t1024-bm64 qwen3-30b-a3b 1024 MOERT_PREFILL_BM=64 | sed -n 3,11p
trace q30-t1024-noskip qwen3-30b-a3b 1024 MOERT_PREFILL_M_SKIP=0 | sed -n 3,11p
echo "traces $(( $(date +%s) - t0 )) s"
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for T in 512 1024 2048; do
  timeout 120 $NCU --cache-control none --clock-control none --section SpeedOfLight \
    --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis -k regex:moert_prefill_gemm \
    --launch-skip 8 --launch-count 2 $B/moert bench --backend cuda --stage prefill --model qwen3-30b-a3b --tokens $T --iters 3 > $OUT/ncu-q30-t$T.txt 2>&1
  echo "== T=$T rc=$?"
  grep -E "^  moert_|Duration|DRAM Throughput|L2 Cache Throughput|Compute \(SM\) Throughput|SM Busy|L2 Hit Rate|Issue Slots Busy|SM Frequency|Mem Busy|Max Bandwidth|Memory Throughput" $OUT/ncu-q30-t$T.txt | sed -E "s/ +/ /g" | cut -c1-90 | head -30
done
echo "total $(( $(date +%s) - t0 )) s"
