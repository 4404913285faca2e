#!/usr/bin/env bash
# Call 4: the layer kernel after call 3 - no wait at a CTA's end (the ticket counter set back
# by its last draw, a row tile's counters by its last down item), a CTA's first item its own
# (no draw before the first load), counters a 32-byte sector apart; and the default 64-row
# tiles take it where both GEMMs have more items than SMs (layer_due).  Why: call 3 had it
# 2.1 us slower at T=1 (an end-of-kernel atomic round trip and reset on the last CTA's path was
# the guess) and faster at T=4-32 (3-6 %).  Prediction: T=1 at or below two launches (32.0);
# T=4-32 as call 3.
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
for T in 1 32; do for v in "MOERT_PREFILL_LAYER=0 MOERT_PREFILL_LAYER64=0" "MOERT_PREFILL_LAYER=1"; do
  echo "T=$T $v $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens $T --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  ab two forward qwen3-30b-a3b 1 MOERT_PREFILL_LAYER=0
  ab layer forward qwen3-30b-a3b 1 MOERT_PREFILL_LAYER=1
done
for r in 1 2; do
  ab two forward qwen3-30b-a3b 2,4,8,16,32,64,128,256,512 MOERT_PREFILL_LAYER64=0
  ab rule forward qwen3-30b-a3b 2,4,8,16,32,64,128,256,512
  ab layer64 forward qwen3-30b-a3b 2,16,64,256,512 MOERT_PREFILL_LAYER64=1
  echo "round $r $(( $(date +%s) - t0 )) s"
done
for v in two rule; do
  e="MOERT_PREFILL_LAYER64=0"; [ $v = rule ] && e=""
  ab $v forward qwen3-235b-a22b 1,8,32,128,512 $e
  ab $v forward mixtral-8x7b 1,8,64,256 $e
done
ab layer64 forward qwen3-235b-a22b 1,512 MOERT_PREFILL_LAYER64=1
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
