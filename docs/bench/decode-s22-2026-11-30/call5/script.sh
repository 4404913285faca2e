#!/usr/bin/env bash
# s22 call 5: why the Triton GEMMs stream faster at decode sizes with the same routing
# (call 3: Mixtral-8x7B T=8 620 us against moert's 656, Qwen3-30B-A3B T=32 246.9 against
# 258.4): ncu of both kernels' launches, the same metrics (DRAM bytes and throughput, L2 hit
# rate, grid, shared memory)
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sector_hit_rate.pct,lts__t_bytes.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,launch__block_size,launch__shared_mem_per_block_dynamic,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active,sm__cycles_elapsed.avg.per_second
for spec in "mixtral-8x7b 8 16,64,256,1,4,3 16,128,256,1,4,3" "qwen3-30b-a3b 32 16,64,256,1,4,3 16,128,128,1,4,3" "qwen3-235b-a22b 32 16,128,256,1,4,3 16,64,256,1,4,3"; do
  read m T c1 c2 <<< "$spec"
  timeout 150 $NCU --cache-control none --clock-control none --metrics $M -k regex:moert_prefill \
    --launch-skip 20 --launch-count 4 $B/moert bench --backend cuda --stage forward --model $m --tokens $T --iters 5 > $OUT/ncu-moert-$m-t$T.txt 2>&1
  echo "== moert $m T=$T rc=$?"
  grep -E "^  moert_|gpu__time|dram__|lts__|sm__|launch__" $OUT/ncu-moert-$m-t$T.txt | sed -E "s/ +/ /g" | head -60
  timeout 150 $NCU --cache-control none --clock-control none --metrics $M -k regex:moe_gemm \
    --launch-skip 2 --launch-count 4 python3 tools/triton_moe_peer.py --model $m --tokens $T --cfg1 $c1 --cfg2 $c2 --profile 4 > $OUT/ncu-triton-$m-t$T.txt 2>&1
  echo "== triton $m T=$T rc=$?"
  grep -E "^  moe_gemm|gpu__time|dram__|lts__|sm__|launch__" $OUT/ncu-triton-$m-t$T.txt | sed -E "s/ +/ /g" | head -60
  echo "$(( $(date +%s) - t0 )) s"
done
