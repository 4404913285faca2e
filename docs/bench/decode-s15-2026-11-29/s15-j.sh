#!/usr/bin/env bash
# Fifteenth session, call 10 (the last ~240 s of device time): the combine folded into the
# narrow down GEMM at T=1 (MOERT_PREFILL_COMBINE=1, an experiment, off by default).
# Prediction: the same bits as the combine launch (test_quick_combine, moert run T=1);
# Qwen3-30B-A3B T=1 28.7 -> ~27.7 us (the combine's launch boundary and its own reads gone,
# a last-CTA tail added).
set -u
t0=$(date +%s)
. tools/device-env.sh
run quick 100 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
for v in 0 1; do
  echo "T=1 COMBINE=$v $(MOERT_PREFILL_COMBINE=$v timeout 40 build-gpu/moert run --backend cuda \
    --model qwen3-30b-a3b --tokens 1 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
for r in 1 2 3; do
  ab main forward qwen3-30b-a3b 1
  ab combine forward qwen3-30b-a3b 1 MOERT_PREFILL_COMBINE=1
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
