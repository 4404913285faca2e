#!/usr/bin/env bash
# s16 call 2: MOERT_ROUTE_PF=n (route_plan publishes the touched experts; the gate/up GEMM's
# CTAs prefetch n K steps of their first item into L2 before their wait).
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run route-pf 120 MOERT_ROUTE_PF=8 CK_RUN_CASE=route $B/tests/test_gpu_forward
run quick-pf 150 MOERT_ROUTE_PF=8 CK_RUN_CASE=quick $B/tests/test_gpu_forward
run quick 150 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for T in 1 2 8 32; do for v in "MOERT_ROUTE_PF=0" "MOERT_ROUTE_PF=8" "MOERT_ROUTE_PF=32"; do
  echo "T=$T $v $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens $T --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  ab main forward qwen3-30b-a3b 1,2,4,8,16,32
  ab pf4 forward qwen3-30b-a3b 1,2,4,8,16,32 MOERT_ROUTE_PF=4
  ab pf8 forward qwen3-30b-a3b 1,2,4,8,16,32 MOERT_ROUTE_PF=8
  ab pf16 forward qwen3-30b-a3b 1,2,4,8,16,32 MOERT_ROUTE_PF=16
  ab pf32 forward qwen3-30b-a3b 1,2,4,8,16,32 MOERT_ROUTE_PF=32
  echo "round $r $(( $(date +%s) - t0 )) s"
done
for r in 1 2; do
  ab main forward qwen3-235b-a22b 1,8,32
  ab pf8 forward qwen3-235b-a22b 1,8,32 MOERT_ROUTE_PF=8
  ab pf32 forward qwen3-235b-a22b 1,8,32 MOERT_ROUTE_PF=32
  ab main forward mixtral-8x7b 1,8,32
  ab pf8 forward mixtral-8x7b 1,8,32 MOERT_ROUTE_PF=8
  ab pf32 forward mixtral-8x7b 1,8,32 MOERT_ROUTE_PF=32
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
