#!/usr/bin/env bash
# For the sixteenth session's first device call (written at the end of the fifteenth, not run:
# no device time left).  Build main into build-gpu here, copy ../shared/peers/torch_peers.py
# into .device/, carry ["build-gpu", ".device"], run this (about 3 minutes).
# 1. MOERT_PREFILL_COMBINE=1 (the combine in the narrow T=1 down GEMM, rows and weights in
#    shared memory, 8 rows in flight): prediction the same bits (test_quick_combine), T=1
#    28.7 -> ~28.2 us (call 10's first version: 28.9).
# 2. MOERT_CUDA_ROUTE_MULTI=1 (route + plan in one launch from 33 to 1024 tokens): prediction
#    the same plan as the host's (route 8/8, quick with it), T=128/256/512 about 4 us faster.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
for T in 64 512; do
  MOERT_CUDA_ROUTE_MULTI=1 timeout 30 $B/moert bench --backend cuda --stage forward --tokens $T \
    --iters 5 --json > /dev/null 2>&1 || echo "multi bench T=$T rc=$? (hang or fault?)"
done
run quick 150 CK_RUN_CASE=quick $B/tests/test_gpu_forward
run route-multi 120 MOERT_CUDA_ROUTE_MULTI=1 CK_RUN_CASE=route $B/tests/test_gpu_forward
run quick-multi 150 MOERT_CUDA_ROUTE_MULTI=1 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for T in 1 64 300 512; do for v in "MOERT_PREFILL_COMBINE=0" "MOERT_PREFILL_COMBINE=1 MOERT_CUDA_ROUTE_MULTI=1"; do
  echo "T=$T $v $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens $T --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  ab main forward qwen3-30b-a3b 1,2
  ab combine forward qwen3-30b-a3b 1,2 MOERT_PREFILL_COMBINE=1
  ab main forward qwen3-30b-a3b 64,128,256,512
  ab multi forward qwen3-30b-a3b 64,128,256,512 MOERT_CUDA_ROUTE_MULTI=1
  ab main-r forward qwen3-30b-a3b 128,512 MOERT_BENCH_SKIP=4
  ab multi-r forward qwen3-30b-a3b 128,512 MOERT_BENCH_SKIP=4 MOERT_CUDA_ROUTE_MULTI=1
  echo "round $r $(( $(date +%s) - t0 )) s"
done
# 3. MOERT_PREFILL_W_EVICT=2 (the down GEMM's weights evict_first only, where the rule gives
#    none): prediction T=512 -2..3 us (the combine's 17 MB of rows from L2), T=256 equal or worse
#    than the rule's both-GEMMs hint.
for r in 1 2; do
  ab main forward qwen3-30b-a3b 256,512
  ab evict-down forward qwen3-30b-a3b 256,512 MOERT_PREFILL_W_EVICT=2
done
for v in main multi; do
  e="MOERT_CUDA_ROUTE_MULTI=0"; [ $v = multi ] && e="MOERT_CUDA_ROUTE_MULTI=1"
  ab $v forward qwen3-235b-a22b 128,512 $e
  ab $v forward mixtral-8x7b 128,512 $e
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
