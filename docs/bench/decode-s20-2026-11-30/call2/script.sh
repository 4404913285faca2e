#!/usr/bin/env bash
# Session 20, call 2: the 256-row tiles (MOERT_PREFILL_TALL=1, new) - their GPU tests, the
# same bits as the 128-row tiles, and an A/B at the sizes of about 128 rows an expert.
# Prediction: Mixtral-8x7B T=512 ~1000 -> ~880 us (gate/up 12 row tiles of 128 -> 8 of 256 with
# ~20 % fewer MMA rows, B read once an expert); Qwen3-30B-A3B prefill T=2048 ~430 -> ~395 us
# (~12 % less L2 traffic); T=1024 (64 rows) and DeepSeek-V3 T=2048 (64 rows) slower (twice the
# column tiles, A read twice as often).
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
run prefill 240 $B/tests/test_gpu_prefill
run forward 240 MOERT_PREFILL_TALL=1 $B/tests/test_gpu_forward
for m in "mixtral-8x7b 512" "mixtral-8x7b 1024" "qwen3-30b-a3b 2048" "qwen3-235b-a22b 2048"; do
  set -- $m
  for v in 0 1; do
    echo "$1 T=$2 tall=$v $(MOERT_PREFILL_TALL=$v timeout 120 $B/moert run --backend cuda --model $1 --tokens $2 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
  done
done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2; do for v in 0 1; do
  ab tall-$v forward mixtral-8x7b 256,512,1024 MOERT_PREFILL_TALL=$v
  ab tall-$v prefill mixtral-8x7b 2048,4096 MOERT_PREFILL_TALL=$v
  ab tall-$v prefill qwen3-30b-a3b 1024,2048,4096,8192 MOERT_PREFILL_TALL=$v
  ab tall-$v prefill qwen3-235b-a22b 1024,2048,4096 MOERT_PREFILL_TALL=$v
  ab tall-$v prefill deepseek-v3 2048 MOERT_PREFILL_TALL=$v
done; echo "round $r $(( $(date +%s) - t0 )) s"; done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
trace mix-t512-tall mixtral-8x7b 512 MOERT_PREFILL_TALL=1 2>&1 | tail -9
echo "total $(( $(date +%s) - t0 )) s"
