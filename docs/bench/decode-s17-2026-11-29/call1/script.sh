#!/usr/bin/env bash
# s17 call 1 (parts 1-2 of decode-s16-2026-11-29/next-session.sh): the GPU suites on the final
# form of the K split (2e98c11 + 6d360f7, never run on a GPU), then main (build-gpu, 9b1f2bd)
# against 9dd60b0 (build-prev) at Qwen3-30B-A3B T=1,2,8,128,512 and Mixtral-8x7B T=1,2,4.
# Prediction: Qwen3 equal; Mixtral T=1 ~187 us against ~205.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run forward 330 $B/tests/test_gpu_forward
run prefill 200 $B/tests/test_gpu_prefill
run quick-ks2 150 MOERT_PREFILL_KSPLIT=2 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for v in MOERT_PREFILL_KSPLIT=0 MOERT_X=1; do
  echo "mixtral T=1 $v $(env $v timeout 90 $B/moert run --backend cuda --model mixtral-8x7b --tokens 1 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  B=build-prev ab prev forward qwen3-30b-a3b 1,2,8,128,512
  B=build-gpu ab new forward qwen3-30b-a3b 1,2,8,128,512
  B=build-prev ab prev forward mixtral-8x7b 1,2,4
  B=build-gpu ab new forward mixtral-8x7b 1,2,4
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
