#!/usr/bin/env bash
# s17 call 4: the narrow gate/up tiles at other widths (MOERT_PREFILL_NARROW_BN=n; 0 = the
# width whose T=1 items fill the SMs best: Qwen3-30B-A3B 48 (128 items against 96 at 64),
# Qwen3-235B-A22B 96 (128 against 96 with the default tiles), Mixtral-8x7B 112 (256 against 448
# in 4 rounds)).  Prediction: Qwen3-30B T=1 28.7 -> ~26.5 us; 235B T=1 with the narrow tiles
# ~84 -> ~78 unless the narrow down GEMM loses it; Mixtral T=1 a few us.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run quick-bn0 150 MOERT_PREFILL_NARROW_BN=0 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for m in qwen3-30b-a3b mixtral-8x7b; do for v in MOERT_X=1 MOERT_PREFILL_NARROW_BN=0 MOERT_PREFILL_NARROW_BN=80; do
  echo "$m T=1 $v $(env $v timeout 90 $B/moert run --backend cuda --model $m --tokens 1 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
for v in MOERT_X=1 "MOERT_PREFILL_NARROW=1" "MOERT_PREFILL_NARROW=1 MOERT_PREFILL_NARROW_BN=0"; do
  echo "235b T=1 $v $(env $v timeout 90 $B/moert run --backend cuda --model qwen3-235b-a22b --tokens 1 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  ab main forward qwen3-30b-a3b 1,2
  ab bn0 forward qwen3-30b-a3b 1,2 MOERT_PREFILL_NARROW_BN=0
  ab bn80 forward qwen3-30b-a3b 1 MOERT_PREFILL_NARROW_BN=80
  ab main forward mixtral-8x7b 1,2
  ab bn0 forward mixtral-8x7b 1,2 MOERT_PREFILL_NARROW_BN=0
  ab bn80 forward mixtral-8x7b 1,2 MOERT_PREFILL_NARROW_BN=80
  ab main forward qwen3-235b-a22b 1
  ab narrow forward qwen3-235b-a22b 1 MOERT_PREFILL_NARROW=1
  ab narrow-bn0 forward qwen3-235b-a22b 1 MOERT_PREFILL_NARROW=1 MOERT_PREFILL_NARROW_BN=0
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
