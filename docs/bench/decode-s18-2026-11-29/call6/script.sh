#!/usr/bin/env bash
# s18 call 6: the L2-bound 128-rows-an-expert sizes (call 5's ncu: L2 throughput 82-96 %):
# the weight maps' L2 fetch size and the fused gate/up wgmma where the default leaves it off
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
for r in 1 2; do
  ab main forward mixtral-8x7b 256,512
  ab l2p128 forward mixtral-8x7b 256,512 MOERT_PREFILL_L2_PROMOTION=128
  ab l2p0 forward mixtral-8x7b 256,512 MOERT_PREFILL_L2_PROMOTION=0
  ab fusedgu forward mixtral-8x7b 256,512 MOERT_PREFILL_FUSED_GU=1
  ab stages3 forward mixtral-8x7b 512 MOERT_PREFILL_STAGES=3
  ab main prefill qwen3-30b-a3b 2048,8192
  ab l2p128 prefill qwen3-30b-a3b 2048,8192 MOERT_PREFILL_L2_PROMOTION=128
  ab l2p0 prefill qwen3-30b-a3b 2048,8192 MOERT_PREFILL_L2_PROMOTION=0
  ab main prefill qwen3-235b-a22b 2048
  ab l2p128 prefill qwen3-235b-a22b 2048 MOERT_PREFILL_L2_PROMOTION=128
  ab fusedgu prefill qwen3-235b-a22b 2048 MOERT_PREFILL_FUSED_GU=1
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
