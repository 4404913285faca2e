#!/usr/bin/env bash
# s18 call 7: the fused gate/up wgmma (MOERT_PREFILL_FUSED_GU=1) at hidden sizes above 2048,
# where the default leaves it off (call 6: Mixtral-8x7B T=512 1013-1015 against 1128-1133 us)
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
for r in 1 2; do
  ab main forward mixtral-8x7b 512,1024
  ab fusedgu forward mixtral-8x7b 512,1024 MOERT_PREFILL_FUSED_GU=1
  ab both forward mixtral-8x7b 512 MOERT_PREFILL_FUSED_GU=1 MOERT_PREFILL_L2_PROMOTION=128
  ab main prefill mixtral-8x7b 2048,8192
  ab fusedgu prefill mixtral-8x7b 2048,8192 MOERT_PREFILL_FUSED_GU=1
  ab main prefill qwen3-235b-a22b 1024,4096,8192
  ab fusedgu prefill qwen3-235b-a22b 1024,4096,8192 MOERT_PREFILL_FUSED_GU=1
  ab main prefill deepseek-v3 2048,8192
  ab fusedgu prefill deepseek-v3 2048,8192 MOERT_PREFILL_FUSED_GU=1
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
