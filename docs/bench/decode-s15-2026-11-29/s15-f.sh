#!/usr/bin/env bash
# Fifteenth session, call 7 (after calls 5-6, the routing kernel's clock64 trace: its plan's
# loops took ~185 cycles an iteration - integer divisions by the block and tile heights,
# computed even where the shift was taken).  Now: the plan after the histogram as a template
# (plan_tail<P2>) with the shift chosen outside the loops, the prefix loops unrolled, the
# weights' sum shuffles unrolled (same order).  build-prev = c4e7ab1 (the redux arg-max).
# Prediction: the same bits; route_plan at T=1 from ~8600 to ~6000 cycles, the layer at T=1
# ~1 us faster, T=2-32 0.5-1 us.
set -u
t0=$(date +%s)
. tools/device-env.sh
run route 150 CK_RUN_CASE=route build-gpu/tests/test_gpu_forward
run quick 150 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
for T in 1 8 32 300; do for b in build-prev build-gpu; do
  echo "T=$T $b $(timeout 60 $b/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens $T --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
for T in 1 32; do MOERT_ROUTE_TRACE=1 timeout 60 build-gpu/moert run --backend cuda --model qwen3-30b-a3b --tokens $T --layers 4 --weight-sets 2 2>&1 | grep route_plan | tail -2; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  B=build-prev ab prev forward qwen3-30b-a3b 1,2,4,8,16,32,64
  B=build-gpu ab new forward qwen3-30b-a3b 1,2,4,8,16,32,64
  B=build-prev ab prev-r forward qwen3-30b-a3b 1,8,32 MOERT_BENCH_SKIP=4
  B=build-gpu ab new-r forward qwen3-30b-a3b 1,8,32 MOERT_BENCH_SKIP=4
  echo "round $r $(( $(date +%s) - t0 )) s"
done
for b in prev new; do
  B=build-$b; [ $b = new ] && B=build-gpu
  B=$B ab $b forward qwen3-235b-a22b 1,8 
  B=$B ab $b forward mixtral-8x7b 1,8
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
