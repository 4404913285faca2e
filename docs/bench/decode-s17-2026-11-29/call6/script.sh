#!/usr/bin/env bash
# s17 call 6: the record's (call 5) Mixtral-8x7B T=32 at 718.8 us (1.061x) where call 2 had
# 659.1 with the same kernels at that size: 93fffce (build-gpu) against 4978ae3 (build-prev),
# T=16,32,64, three rounds.  Prediction: both ~659, the record's value a one-off.
set -u
t0=$(date +%s)
. tools/device-env.sh
for r in 1 2 3; do
  B=build-prev ab prev forward mixtral-8x7b 16,32,64
  B=build-gpu ab new forward mixtral-8x7b 16,32,64
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
