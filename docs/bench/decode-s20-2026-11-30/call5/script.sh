#!/usr/bin/env bash
# Session 20, call 5 (the last ~5 min of device time): 192-row tiles behind MOERT_PREFILL_TALL=1
# (three consumer warpgroups, 512 threads; gate/up 96 columns a matrix by one m64n192 wgmma,
# down 192 columns; a consumer without rows skips its wgmmas).  Their test cases first, then
# the bits (Mixtral T=512 with the hook: expected the unsplit 128-row tiles' db0f8f41c810fc6e),
# then a short A/B.  Prediction: Mixtral-8x7B T=512 ~980 -> ~870 us (the gate/up GEMM's tensor
# work 17 % less: an expert of 129-192 rows one tile of three blocks instead of two of two);
# Qwen3-30B-A3B prefill T=2048 within +-5 %.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
MOERT_PREFILL_CASE_BM=192 run prefill192 90 $B/tests/test_gpu_prefill
echo "mixtral T=512 tall=1 $(MOERT_PREFILL_TALL=1 timeout 60 $B/moert run --backend cuda --model mixtral-8x7b --tokens 512 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
echo "checks $(( $(date +%s) - t0 )) s"
export AB_TIMEOUT=40
for r in 1 2; do for v in 0 1; do
  ab tall-$v forward mixtral-8x7b 512 MOERT_PREFILL_TALL=$v
  ab tall-$v prefill qwen3-30b-a3b 2048,4096 MOERT_PREFILL_TALL=$v
done; echo "round $r $(( $(date +%s) - t0 )) s"; done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
