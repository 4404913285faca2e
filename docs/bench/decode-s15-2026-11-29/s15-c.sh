#!/usr/bin/env bash
# Fifteenth session, call 3.  (1) w_evict as a launch parameter (the weights' TMA loads
# evict_first where h + the combine's rows + x take at most a third of the L2: w_evict_due),
# the default now; MOERT_PREFILL_W_EVICT=0 the old loads.  Prediction: call 2's evict numbers
# at T=1-256 (30.6 / 122.0 / 263 / 296 / 303 us), T=512 and prefill unchanged against =0.
# (2) MOERT_BENCH_SKIP=8: an empty PDL link before the routing - what a launch boundary costs.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run prefill 200 $B/tests/test_gpu_prefill
run quick 150 CK_RUN_CASE=quick $B/tests/test_gpu_forward
run route 150 CK_RUN_CASE=route $B/tests/test_gpu_forward
for T in 1 32 256 512; do for v in "MOERT_PREFILL_W_EVICT=0" "MOERT_PREFILL_W_EVICT=-"; do
  echo "T=$T $v $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens $T --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  ab rule forward qwen3-30b-a3b 1,2,4,8,16,32,64,128,256,512
  ab off forward qwen3-30b-a3b 1,2,4,8,16,32,64,128,256,512 MOERT_PREFILL_W_EVICT=0
  ab skip8 forward qwen3-30b-a3b 1,8,32,128,512 MOERT_BENCH_SKIP=8
  ab skip9 forward qwen3-30b-a3b 1,8,32,128,512 MOERT_BENCH_SKIP=9
  echo "round $r $(( $(date +%s) - t0 )) s"
done
for v in rule off; do
  e="MOERT_PREFILL_W_EVICT=-"; [ $v = off ] && e="MOERT_PREFILL_W_EVICT=0"
  ab $v forward qwen3-235b-a22b 1,8,32,128,512 $e
  ab $v forward mixtral-8x7b 1,8,128,256,512 $e
  ab $v prefill qwen3-30b-a3b 1024,8192 $e
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
