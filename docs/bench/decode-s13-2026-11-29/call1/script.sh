#!/usr/bin/env bash
# For the thirteenth session's first device call (written at the end of the twelfth, not run;
# next-session-b.sh is the second):
#   build main into build-gpu here (cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release
#   -DMOERT_BUILD_TOOLS=ON), copy ../shared/peers/torch_peers.py into .device/, carry
#   ["build-gpu", ".device"], run this script on the device.
# Two experiments prepared at the end of the twelfth session, both compiled in only when
# their hook is set (docs/prefill.md, decode-log.md v13), neither run on a GPU yet:
# 1. MOERT_PREFILL_PF_AHEAD=n, the L2 prefetch ahead of the ring.  Prediction: the decode
#    sizes' GEMMs (47-80 % of the DRAM peak at T <= 8) closer to the copy rate; T=1 from
#    32.3 us towards 27, T=2-8 a few per cent; nothing at T >= 32.
# 2. MOERT_PREFILL_KSPLIT=2, the down GEMM's K in two parts summed by the combine: here only
#    test_gpu_prefill's two cases (they set it themselves); next-session-b.sh for the rest.
set -u
t0=$(date +%s)
. tools/device-env.sh # the /work/main link, the JIT cache, the card, run()
B=build-gpu
for T in 1 2 8 32 512; do  # a hang shows first here
  MOERT_PREFILL_PF_AHEAD=8 timeout 40 $B/moert bench --backend cuda --stage forward --tokens $T \
    --iters 5 --json > /dev/null 2>&1 || echo "bench T=$T rc=$?"
done
run prefill 120 MOERT_PREFILL_PF_AHEAD=8 $B/tests/test_gpu_prefill
run quick 100 MOERT_PREFILL_PF_AHEAD=8 CK_RUN_CASE=quick $B/tests/test_gpu_forward
grep -E "K in 2 parts" -A1 $OUT/prefill.log | grep checked
echo "T=1 $(MOERT_PREFILL_PF_AHEAD=8 timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
  --tokens 1 --layers 1 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ') (main: fnv64 1e4d7fde1f7b1693)"
echo "tests done $(( $(date +%s) - t0 )) s"
b() { local tag=$1 model=$2 toks=$3; shift 3
  echo "# $model | $tag | $r" >> $OUT/ab.jsonl
  env "$@" timeout 60 $B/moert bench --backend cuda --stage forward --model $model --tokens $toks \
    --json >> $OUT/ab.jsonl 2>&1; }
for r in 1 2; do
  for n in 0 4 8 16; do b pf$n qwen3-30b-a3b 1,2,4,8,32,512 MOERT_PREFILL_PF_AHEAD=$n; done
  [ $r = 2 ] && continue
  for n in 0 8; do
    b pf$n mixtral-8x7b 1,8,512 MOERT_PREFILL_PF_AHEAD=$n
    b pf$n qwen3-235b-a22b 1,8,512 MOERT_PREFILL_PF_AHEAD=$n
  done
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "ab done $(( $(date +%s) - t0 )) s"
run forward 170 MOERT_PREFILL_PF_AHEAD=8 CK_RUN_CASE=forward $B/tests/test_gpu_forward
echo "total $(( $(date +%s) - t0 )) s"
