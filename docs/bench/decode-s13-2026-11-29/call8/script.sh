#!/usr/bin/env bash
# Call 8: MOERT_PREFILL_ATOMS=2|4, K steps of 2 or 4 swizzle atoms (256 / 512 contiguous bytes
# of each weight row asked for at once instead of 128) with as many times fewer stages.
# Why: call 7's Triton peer streams the T <= 128 weights faster than moert's TMA GEMMs (its
# best blocks read 256-512 bytes of a row per step); v2 of this log found 128-byte runs per
# row slow for the cp.async kernels.  Prediction: T=1-8 a few us faster if DRAM locality is
# what holds the GEMMs at 60-80 % of the peak; nothing at T >= 2048.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
for a in 4 2; do for T in 1 8 512; do  # a hang shows first here
  MOERT_PREFILL_ATOMS=$a timeout 40 $B/moert bench --backend cuda --stage forward --tokens $T --iters 5 --json > /dev/null 2>&1 || echo "bench atoms=$a T=$T rc=$?"
done; done
run prefill4 100 MOERT_PREFILL_ATOMS=4 $B/tests/test_gpu_prefill
run prefill2 100 MOERT_PREFILL_ATOMS=2 $B/tests/test_gpu_prefill
run quick4 100 MOERT_PREFILL_ATOMS=4 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for a in 1 4; do
  echo "T=1 atoms=$a $(MOERT_PREFILL_ATOMS=$a timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens 1 --layers 1 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
echo "tests done $(( $(date +%s) - t0 )) s"
b() { local tag=$1 stage=$2 model=$3 toks=$4; shift 4
  echo "# $model | $tag | $r" >> $OUT/ab.jsonl
  env "$@" timeout 60 $B/moert bench --backend cuda --stage $stage --model $model --tokens $toks \
    --json >> $OUT/ab.jsonl 2>&1; }
for r in 1 2; do
  for a in 1 2 4; do b at$a forward qwen3-30b-a3b 1,2,4,8,32,128,512 MOERT_PREFILL_ATOMS=$a; done
  echo "round $r $(( $(date +%s) - t0 )) s"
done
for a in 1 4; do
  b at$a forward qwen3-235b-a22b 1,8,128 MOERT_PREFILL_ATOMS=$a
  b at$a forward mixtral-8x7b 1,8 MOERT_PREFILL_ATOMS=$a
done
for a in 1 2; do b at$a prefill qwen3-30b-a3b 2048,8192 MOERT_PREFILL_ATOMS=$a; done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
