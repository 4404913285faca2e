#!/usr/bin/env bash
# s16 call 6: the narrow down GEMM's K in two parts (ksplit_due: Mixtral-8x7B T=1), the
# combine adding the parts; tests, then A/B against MOERT_PREFILL_KSPLIT=0
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run prefill 200 $B/tests/test_gpu_prefill
run quick-ks2 150 MOERT_PREFILL_KSPLIT=2 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for v in MOERT_PREFILL_KSPLIT=0 MOERT_X=1; do
  echo "mixtral T=1 $v $(env $v timeout 90 $B/moert run --backend cuda --model mixtral-8x7b --tokens 1 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  ab main forward mixtral-8x7b 1,2
  ab ks0 forward mixtral-8x7b 1,2 MOERT_PREFILL_KSPLIT=0
  ab main forward qwen3-30b-a3b 1
  ab ks2 forward qwen3-30b-a3b 1 MOERT_PREFILL_KSPLIT=2
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
