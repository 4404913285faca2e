#!/usr/bin/env bash
# Fifteenth session, call 4.  The routing kernels' warp arg-max as two redux.sync (largest
# key, then the lowest expert holding it) instead of five shuffle levels, and shifts for the
# plan's divisions by power-of-two heights; MOERT_ROUTE_REDUX=0 the shuffles.  Prediction:
# the same ids and weight bits (route 8/8 with signed-zero rows added, quick 19/19); T=1
# 31.1 -> ~30.4 us (eight rounds of ~165 -> ~90 cycles, the divisions ~0.2 us), T=2-32
# similar, T=128-512 about 0.5 us (the multi-CTA route has the same arg-max).
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run route 150 CK_RUN_CASE=route $B/tests/test_gpu_forward
run quick 150 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for T in 1 8 32 300; do for v in "MOERT_ROUTE_REDUX=0" "MOERT_ROUTE_REDUX=1"; do
  echo "T=$T $v $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens $T --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  ab redux forward qwen3-30b-a3b 1,2,8,32,128,512
  ab shfl forward qwen3-30b-a3b 1,2,8,32,128,512 MOERT_ROUTE_REDUX=0
  ab redux-r forward qwen3-30b-a3b 1,8,32 MOERT_BENCH_SKIP=4
  ab shfl-r forward qwen3-30b-a3b 1,8,32 MOERT_BENCH_SKIP=4 MOERT_ROUTE_REDUX=0
  echo "round $r $(( $(date +%s) - t0 )) s"
done
for v in redux shfl; do
  e="MOERT_ROUTE_REDUX=1"; [ $v = shfl ] && e="MOERT_ROUTE_REDUX=0"
  ab $v forward qwen3-235b-a22b 1,32 $e
  ab $v forward mixtral-8x7b 1,32 $e
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
