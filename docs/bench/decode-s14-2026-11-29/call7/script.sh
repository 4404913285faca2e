#!/usr/bin/env bash
# Call 7: the TMA maps' L2 promotion (MOERT_PREFILL_L2_PROMOTION = 256, the default, 128, 0).
# Why: call 1-2's ncu - moert's gate/up GEMM at T=32 has 25 % L2 hits (the peer 2 %) with the
# L2 92 % busy, and 4.1 against the peer's 4.42 TB/s; a 128-byte box row whose miss fetches
# 256 bytes makes the next K step's request a hit.  Prediction: if the hits cost L2
# throughput, T=32-512 a few per cent faster with 128; prefill equal.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
for v in 256 128; do
  echo "T=32 promo $v $(MOERT_PREFILL_L2_PROMOTION=$v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens 32 --layers 1 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
for r in 1 2; do for v in 256 128 0; do
  ab p$v forward qwen3-30b-a3b 1,8,32,128,512 MOERT_PREFILL_L2_PROMOTION=$v
  ab p$v prefill qwen3-30b-a3b 8192 MOERT_PREFILL_L2_PROMOTION=$v
done; echo "round $r $(( $(date +%s) - t0 )) s"; done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
