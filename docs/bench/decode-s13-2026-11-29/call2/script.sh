#!/usr/bin/env bash
# The thirteenth session's second device call (after next-session.sh; same build and carry):
# MOERT_PREFILL_KSPLIT=2, the down GEMM's K in two parts summed by the combine (compiled in
# only when set; docs/prefill.md, decode-log.md v13): the forward tests with it, then its
# A/B.  Prediction: Mixtral-8x7B T=512 (192 down items for 132 SMs) and T=256 5-9 % faster;
# small T slower (twice the partial rows for the combine).  (test_gpu_prefill's two K-split
# cases ran in next-session.sh: they do not need the hook.)
set -u
t0=$(date +%s)
. tools/device-env.sh # the /work/main link, the JIT cache, the card, run()
B=build-gpu
for T in 8 256 512; do  # a hang shows first here
  MOERT_PREFILL_KSPLIT=2 timeout 40 $B/moert bench --backend cuda --stage forward \
    --model mixtral-8x7b --tokens $T --iters 5 --json > /dev/null 2>&1 || echo "bench T=$T rc=$?"
done
run quick 100 MOERT_PREFILL_KSPLIT=2 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for v in MOERT_X=1 MOERT_PREFILL_KSPLIT=2; do
  echo "mixtral T=512 [$v] $(env $v timeout 60 $B/moert run --backend cuda --model mixtral-8x7b \
    --tokens 512 --layers 1 --weight-sets 1 --dump $OUT/m512-${v#*=}.bin 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
echo "tests done $(( $(date +%s) - t0 )) s"
b() { local tag=$1 model=$2 toks=$3; shift 3
  echo "# $model | $tag | $r" >> $OUT/ab.jsonl
  env "$@" timeout 60 $B/moert bench --backend cuda --stage forward --model $model --tokens $toks \
    --json >> $OUT/ab.jsonl 2>&1; }
for r in 1 2; do
  b ks1 mixtral-8x7b 8,64,256,512,1024 MOERT_X=1
  b ks2 mixtral-8x7b 8,64,256,512,1024 MOERT_PREFILL_KSPLIT=2
  [ $r = 2 ] && continue
  b ks1 qwen3-30b-a3b 1,8,64,512,8192 MOERT_X=1
  b ks2 qwen3-30b-a3b 1,8,64,512,8192 MOERT_PREFILL_KSPLIT=2
  b ks1 qwen3-235b-a22b 8,256,512 MOERT_X=1
  b ks2 qwen3-235b-a22b 8,256,512 MOERT_PREFILL_KSPLIT=2
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "ab done $(( $(date +%s) - t0 )) s"
run forward 170 MOERT_PREFILL_KSPLIT=2 CK_RUN_CASE=forward $B/tests/test_gpu_forward
echo "total $(( $(date +%s) - t0 )) s"
# here: tools/dump-compare.py m512-2.bin m512-1.bin (and against the CPU backend's
#   build-gpu/moert run --backend cpu --model mixtral-8x7b --tokens 512 --layers 1 --weight-sets 1 --dump ...)
