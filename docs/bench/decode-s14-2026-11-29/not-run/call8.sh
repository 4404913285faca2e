#!/usr/bin/env bash
# Not run (no device time left at the end of the fourteenth session).
# Call 8: the narrow (T=1) tiles' weight maps alone with 128-byte L2 fetches (call 7 had all
# maps so: T=1 -2 %, T=128-512 +0.3-0.9 %).  Prediction: T=1 ~31.4 us, T=2 unchanged.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run quick 100 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for r in 1 2; do
  ab new forward qwen3-30b-a3b 1,2
  ab old forward qwen3-30b-a3b 1,2 MOERT_PREFILL_L2_PROMOTION=256
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
