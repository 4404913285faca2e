#!/usr/bin/env bash
# s18 call 10: the down GEMM's h by cp.async (only the tile's rows) instead of a 128-row TMA box
# at the 128-rows-an-expert sizes (call 5: L2-bound; a partial second tile loads a whole box)
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
for r in 1 2; do
  ab main forward mixtral-8x7b 512
  ab dncp forward mixtral-8x7b 512 MOERT_PREFILL_DOWN_TMA=0
  ab main prefill qwen3-30b-a3b 2048,8192
  ab dncp prefill qwen3-30b-a3b 2048,8192 MOERT_PREFILL_DOWN_TMA=0
  ab main prefill qwen3-235b-a22b 2048
  ab dncp prefill qwen3-235b-a22b 2048 MOERT_PREFILL_DOWN_TMA=0
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
