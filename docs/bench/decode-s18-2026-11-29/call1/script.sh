#!/usr/bin/env bash
# For the eighteenth session's first device call (written at the end of the seventeenth: its
# device time was spent).  Build main into build-gpu here and 4978ae3 into build-prev (a
# worktree, target moert_cli), copy ../shared/peers/torch_peers.py into .device/, carry
# ["build-gpu", "build-prev", ".device"], run this (about 8 minutes; split it if the per-call
# limit is 600 s).
# 1. Since call 8 only host code changed (the narrow tiles' two-round limit, c112229; the hook's
#    validation; moert_prefill_fill; the narrow tiles only with maps of the modules' boxes):
#    the suites first - test_gpu_prefill has eight new cases of the narrow widths (epi 10-13).
# 2. A/B at T=1-4 of the three models against 4978ae3 - prediction: call 8's numbers, but
#    Mixtral T=3 and Qwen3-235B-A22B T=3 now equal to 4978ae3 (default tiles there).
# 3. ncu at Qwen3-30B-A3B T=1-2 and Qwen3-235B-A22B T=1 on the narrow widths: how close each
#    GEMM now is to the DRAM peak, and the down GEMM's share (its narrow tiles keep 128 columns).
# 4. Other widths at T=2-4 (the rule picks 96 for Qwen3-30B-A3B and Qwen3-235B-A22B there).
# 5. The record with the peers (bench-gpu.sh).
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run forward 330 $B/tests/test_gpu_forward
run prefill 200 $B/tests/test_gpu_prefill
for m in qwen3-30b-a3b:3 mixtral-8x7b:3 qwen3-235b-a22b:3; do for b in build-prev build-gpu; do
  echo "${m%:*} T=${m#*:} $b $(timeout 60 $b/moert run --backend cuda --model ${m%:*} --tokens ${m#*:} --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  for m in qwen3-30b-a3b qwen3-235b-a22b mixtral-8x7b; do
    B=build-prev ab prev forward $m 1,2,3,4
    B=build-gpu ab new forward $m 1,2,3,4
  done
  ab bn112 forward qwen3-235b-a22b 2 MOERT_PREFILL_NARROW=1 MOERT_PREFILL_NARROW_BN=112
  ab bn128 forward qwen3-30b-a3b 2,4 MOERT_PREFILL_NARROW=1 MOERT_PREFILL_NARROW_BN=128
  ab bn80 forward qwen3-30b-a3b 2,4 MOERT_PREFILL_NARROW=1 MOERT_PREFILL_NARROW_BN=80
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
