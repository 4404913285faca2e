#!/usr/bin/env bash
# s19 call 2: MOERT_M_SKIP (128-row tiles: a consumer with no row in the tile issues no wgmma).
# Prediction: where an expert's last 128-row tile has <= 64 rows (about 128 rows an expert:
# Mixtral-8x7B T=512, Qwen3-30B-A3B prefill T=2048; about 64: Mixtral T=256, Qwen3-30B-A3B
# T=1024, DeepSeek-V3 T=2048) that tile's MMAs halve; the gate/up GEMM of Mixtral T=512 ran at
# ~590 TFLOP/s counting the padding (tensor-bound), so 10-15 % off it there.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
for m in mixtral-8x7b:512 qwen3-30b-a3b:1024 qwen3-235b-a22b:2048; do for v in 0 1; do
  echo "${m%:*} T=${m#*:} skip=$v $(MOERT_PREFILL_M_SKIP=$v timeout 120 $B/moert run --backend cuda --model ${m%:*} --tokens ${m#*:} --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "bits done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  for v in 0 1; do
    ab skip$v forward mixtral-8x7b 256,512 MOERT_PREFILL_M_SKIP=$v
    ab skip$v prefill qwen3-30b-a3b 1024,2048,8192 MOERT_PREFILL_M_SKIP=$v
    ab skip$v prefill deepseek-v3 2048 MOERT_PREFILL_M_SKIP=$v
    ab skip$v prefill qwen3-235b-a22b 2048 MOERT_PREFILL_M_SKIP=$v
  done
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
run prefill 200 $B/tests/test_gpu_prefill
echo "total $(( $(date +%s) - t0 )) s"
