#!/usr/bin/env bash
# Session 20, call 4: the final tree (the K split's rule at a fifth: only Mixtral-8x7B T=512 of
# the sizes measured) - both GPU suites, the bits at T=512 (split) and 1024 (not, the same as
# MOERT_PREFILL_KSPLIT128=0), and the A/B once more.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
run prefill 240 $B/tests/test_gpu_prefill
run forward 280 $B/tests/test_gpu_forward
for t in 512 1024; do for v in "" 0; do
  echo "mixtral T=$t KSPLIT128=$v $(MOERT_PREFILL_KSPLIT128=$v timeout 120 $B/moert run --backend cuda --model mixtral-8x7b --tokens $t --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "checks $(( $(date +%s) - t0 )) s"
for r in 1 2; do for v in 1 0; do
  ab k128-$v forward mixtral-8x7b 256,512,1024 MOERT_PREFILL_KSPLIT128=$v
done; echo "round $r $(( $(date +%s) - t0 )) s"; done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
