#!/usr/bin/env bash
# Session 20, call 6 (the last device seconds): where the 192-row tiles win - call 5 had
# Qwen3-30B-A3B prefill T=2048 (128 rows an expert) 7 % faster, T=4096 (256) and Mixtral-8x7B
# T=512 slower.  Rows an expert 96-192 on Qwen3-30B-A3B, and the other layers at 128.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
export AB_TIMEOUT=40
for r in 1 2; do for v in 0 1; do
  ab tall-$v prefill qwen3-30b-a3b 1536,2048,2560,3072 MOERT_PREFILL_TALL=$v
  ab tall-$v prefill qwen3-235b-a22b 2048 MOERT_PREFILL_TALL=$v
  ab tall-$v prefill deepseek-v3 4096 MOERT_PREFILL_TALL=$v
done; echo "round $r $(( $(date +%s) - t0 )) s"; done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
