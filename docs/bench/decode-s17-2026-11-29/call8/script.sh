#!/usr/bin/env bash
# s17 call 8: the narrow tiles at T=2-4 by rule, a second narrow module (build-gpu, the commit
# after 93fffce) against 4978ae3 (build-prev): the forward suite, checksums, A/B at T=1-4.
# Prediction: Qwen3-30B T=2 ~44.7 / 45.9, T=4 ~75.5 / 78.0, T=1 28.4 / 28.7; 235B T=1 ~80.5 /
# 83.5, T=2 ~148 / 151; Mixtral T=1 ~171 / 182; T=3 (not measured before) no slower.
set -u
t0=$(date +%s)
. tools/device-env.sh
run forward 200 build-gpu/tests/test_gpu_forward
for m in qwen3-30b-a3b:2 qwen3-30b-a3b:4 mixtral-8x7b:3; do for b in build-prev build-gpu; do
  echo "${m%:*} T=${m#*:} $b $(timeout 60 $b/moert run --backend cuda --model ${m%:*} --tokens ${m#*:} --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  B=build-prev ab prev forward qwen3-30b-a3b 1,2,3,4
  B=build-gpu ab new forward qwen3-30b-a3b 1,2,3,4
  B=build-prev ab prev forward qwen3-235b-a22b 1,2,3
  B=build-gpu ab new forward qwen3-235b-a22b 1,2,3
  B=build-prev ab prev forward mixtral-8x7b 1,3
  B=build-gpu ab new forward mixtral-8x7b 1,3
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
