#!/usr/bin/env bash
# s16 call 5: MOERT_PREFILL_NARROW_DOWN_BN=64 (the narrow down GEMM at 64 columns: twice its
# items) against 128, where the narrow tiles run (Mixtral-8x7B T=1-2, Qwen3-30B-A3B T=1)
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run quick-bn64 150 MOERT_PREFILL_NARROW_DOWN_BN=64 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for m in "mixtral-8x7b 1" "mixtral-8x7b 2" "qwen3-30b-a3b 1"; do set -- $m; for v in MOERT_X=1 MOERT_PREFILL_NARROW_DOWN_BN=64; do
  echo "$1 T=$2 $v $(env $v timeout 90 $B/moert run --backend cuda --model $1 --tokens $2 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  ab main forward mixtral-8x7b 1,2
  ab bn64 forward mixtral-8x7b 1,2 MOERT_PREFILL_NARROW_DOWN_BN=64
  ab main forward qwen3-30b-a3b 1
  ab bn64 forward qwen3-30b-a3b 1 MOERT_PREFILL_NARROW_DOWN_BN=64
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
