#!/usr/bin/env bash
# Session 20, call 7 (the last device seconds): the 192-row tiles by default where tall_due
# (112 < rows an expert <= 176, row-outer gate/up grid).  Bits of Qwen3-30B-A3B T=2048 (now
# 192-row tiles; expected the 128-row tiles' 6093fb7742363364), one A/B round.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
echo "qwen30b T=2048 default $(timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b --tokens 2048 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
export AB_TIMEOUT=40
for v in "" 0; do
  ab tall-d$v prefill qwen3-30b-a3b 2048,2560,4096 MOERT_PREFILL_TALL=$v
  ab tall-d$v forward mixtral-8x7b 512 MOERT_PREFILL_TALL=$v
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
