#!/usr/bin/env bash
# s19 call 7: the final tree, MOERT_M_SKIP at the prefill sizes calls 2-4 did not measure
# (two rounds, the skip off / the default)
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
for r in 1 2; do for v in 0 1; do
  ab skip$v prefill qwen3-30b-a3b 4096,16384 MOERT_PREFILL_M_SKIP=$v
  ab skip$v prefill deepseek-v3 8192 MOERT_PREFILL_M_SKIP=$v
  ab skip$v prefill qwen3-235b-a22b 1024 MOERT_PREFILL_M_SKIP=$v
done; echo "round $r $(( $(date +%s) - t0 )) s"; done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
