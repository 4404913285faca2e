#!/usr/bin/env bash
# s18 call 3: the gate/up GEMM's first weights before its wait (predicted row tiles) and the
# plan kernels' trigger before their wait; build-prev = 3912ad1
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
run prefill 200 $B/tests/test_gpu_prefill
for m in qwen3-30b-a3b:128 qwen3-30b-a3b:512 qwen3-235b-a22b:256 mixtral-8x7b:64; do for b in build-prev build-gpu; do
  echo "${m%:*} T=${m#*:} $b $(timeout 60 $b/moert run --backend cuda --model ${m%:*} --tokens ${m#*:} --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
for m in qwen3-30b-a3b:32 qwen3-30b-a3b:1024 mixtral-8x7b:512; do
  echo "${m%:*} T=${m#*:} forced $(MOERT_PREFILL_PREDICT=1 timeout 60 build-gpu/moert run --backend cuda --model ${m%:*} --tokens ${m#*:} --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
  echo "${m%:*} T=${m#*:} prev   $(timeout 60 build-prev/moert run --backend cuda --model ${m%:*} --tokens ${m#*:} --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
echo "checks done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  B=build-prev ab prev forward qwen3-30b-a3b 64,128,256,512
  B=build-gpu ab new forward qwen3-30b-a3b 64,128,256,512
  B=build-gpu ab trig forward qwen3-30b-a3b 64,128,256,512 MOERT_PREFILL_GU_EARLY=0
  B=build-prev ab prev forward qwen3-235b-a22b 128,512
  B=build-gpu ab new forward qwen3-235b-a22b 128,512
  B=build-gpu ab trig forward qwen3-235b-a22b 128,512 MOERT_PREFILL_GU_EARLY=0
  B=build-prev ab prev forward mixtral-8x7b 32,64,128
  B=build-gpu ab new forward mixtral-8x7b 32,64,128
  B=build-prev ab prev prefill qwen3-30b-a3b 2048,8192
  B=build-gpu ab new prefill qwen3-30b-a3b 2048,8192
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
