#!/usr/bin/env bash
# Call 3: moert_prefill_layer (MOERT_LAYER), both GEMMs of a layer in one persistent launch:
# work items from a ticket counter, gate/up items first; a down item's weights of its first
# STAGES steps issued at once, its h rows after a per-row-tile counter says its gate/up items
# are stored.  Default for the narrow tiles (Qwen3-30B-A3B T=1); MOERT_PREFILL_LAYER64=1 for
# the default 64-row tiles (an experiment).  Why: at T=1 the GEMMs take ~27 us (ncu: gate/up
# 17, down 10) of 32 for 75 MB, ~18 us at the copy rate; the down GEMM's ramp after the
# gate/up GEMM's tail is paid in full.  Prediction: T=1 32.0 -> ~28-29 us; same bits.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
for T in 1 2 8; do for v in "MOERT_PREFILL_LAYER=1" "MOERT_PREFILL_LAYER64=1"; do
  env $v timeout 30 $B/moert bench --backend cuda --stage forward --tokens $T --iters 5 --json > /dev/null 2>&1 || echo "bench $v T=$T rc=$?"
done; done
echo "smoke done $(( $(date +%s) - t0 )) s"
run prefill 150 $B/tests/test_gpu_prefill
run quick 120 CK_RUN_CASE=quick $B/tests/test_gpu_forward
run quick64 120 MOERT_PREFILL_LAYER64=1 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for T in 1 8 32; do for v in "MOERT_PREFILL_LAYER=0" "MOERT_PREFILL_LAYER=1 MOERT_PREFILL_LAYER64=1"; do
  echo "T=$T $v $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens $T --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  ab two forward qwen3-30b-a3b 1 MOERT_PREFILL_LAYER=0
  ab layer forward qwen3-30b-a3b 1
done
for r in 1 2; do
  ab two forward qwen3-30b-a3b 2,4,8,32,128 MOERT_PREFILL_LAYER64=0
  ab layer64 forward qwen3-30b-a3b 2,4,8,32,128 MOERT_PREFILL_LAYER64=1
  ab narrow forward qwen3-30b-a3b 2,4,8 MOERT_PREFILL_NARROW=1 MOERT_PREFILL_LAYER=0
  ab narrowlayer forward qwen3-30b-a3b 2,4,8 MOERT_PREFILL_NARROW=1 MOERT_PREFILL_LAYER=1
  echo "round $r $(( $(date +%s) - t0 )) s"
done
ab two forward qwen3-235b-a22b 1,8 MOERT_PREFILL_LAYER64=0
ab layer64 forward qwen3-235b-a22b 1,8 MOERT_PREFILL_LAYER64=1
ab two forward mixtral-8x7b 1,8 MOERT_PREFILL_LAYER64=0
ab layer64 forward mixtral-8x7b 1,8 MOERT_PREFILL_LAYER64=1
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
