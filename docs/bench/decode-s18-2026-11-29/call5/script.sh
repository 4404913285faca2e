#!/usr/bin/env bash
# s18 call 5: where the 128-rows-an-expert sizes go (Mixtral-8x7B T=512, Qwen3-30B-A3B prefill
# T=2048): ncu of the prefill GEMMs, SpeedOfLight + MemoryWorkloadAnalysis + ComputeWorkloadAnalysis
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for ms in mixtral-8x7b:512:forward qwen3-30b-a3b:2048:prefill qwen3-235b-a22b:2048:prefill; do
  IFS=: read m T st <<< "$ms"
  timeout 150 $NCU --cache-control none --clock-control none --section SpeedOfLight \
    --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis -k regex:moert_prefill_gemm \
    --launch-skip 8 --launch-count 4 $B/moert bench --backend cuda --stage $st --model $m --tokens $T --iters 3 > $OUT/ncu-$m-t$T.txt 2>&1
  echo "== $m T=$T $st rc=$?"
  grep -E "^  moert_|Duration|DRAM Throughput|L2 Cache Throughput|L1/TEX Cache Throughput|Compute \(SM\) Throughput|SM Busy|L2 Hit Rate|Issue Slots Busy|SM Frequency|Mem Busy|Max Bandwidth" $OUT/ncu-$m-t$T.txt | sed -E "s/ +/ /g" | cut -c1-90 | head -48
done
echo "total $(( $(date +%s) - t0 )) s"
