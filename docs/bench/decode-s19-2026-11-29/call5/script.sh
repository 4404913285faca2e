#!/usr/bin/env bash
# s19 call 5: the multi-CTA router launched behind the layer before (PDL, waits first), its
# NaN tokens a CTA folded by the plan: no memset node, no plain launch.  Call 1's trace at
# Qwen3-30B-A3B T=512: 4.1 us from a layer's last kernel end to the next layer's first start
# (-1.6 at T=1, where the one-CTA route+plan is launched so).  Prediction: T=64-512 ~3 us
# faster (T=512 313.9 -> ~310.5), T <= 32 equal (the one-CTA path).  build-prev: the tree
# before (6a0c5c8's parent).
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
run forward 300 $B/tests/test_gpu_forward
echo "tests done $(( $(date +%s) - t0 )) s"
for m in qwen3-30b-a3b:512 mixtral-8x7b:512; do for b in build-prev build-gpu; do
  echo "${m%:*} T=${m#*:} $b $(timeout 60 $b/moert run --backend cuda --model ${m%:*} --tokens ${m#*:} --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
for r in 1 2; do
  for b in build-prev build-gpu; do
    B=$b ab $b forward qwen3-30b-a3b 16,64,256,512
    B=$b ab $b forward qwen3-235b-a22b 128,512
  done
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
trace q30-t512 qwen3-30b-a3b 512 2>&1 | tail -12
echo "total $(( $(date +%s) - t0 )) s"
