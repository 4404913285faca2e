#!/usr/bin/env bash
# s17 call 7: hooks at the T=2-4 sizes still above their goals (Qwen3-30B-A3B T=2 1.27x, T=4
# 1.15x) and Qwen3-235B-A22B T=2 (narrow tiles 2 % faster in call 5): the narrow tiles at
# several gate/up widths, the layer kernel off.  93fffce (build-gpu), two rounds.
set -u
t0=$(date +%s)
. tools/device-env.sh
for r in 1 2; do
  ab main forward qwen3-30b-a3b 2,4
  ab narrow-bn96 forward qwen3-30b-a3b 2,4 MOERT_PREFILL_NARROW=1 MOERT_PREFILL_NARROW_BN=96
  ab narrow-bn48 forward qwen3-30b-a3b 4 MOERT_PREFILL_NARROW=1
  ab layer0 forward qwen3-30b-a3b 4 MOERT_PREFILL_LAYER64=0
  ab main forward qwen3-235b-a22b 2
  ab narrow-bn112 forward qwen3-235b-a22b 2 MOERT_PREFILL_NARROW=1 MOERT_PREFILL_NARROW_BN=112
  ab narrow-bn96 forward qwen3-235b-a22b 2 MOERT_PREFILL_NARROW=1
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
