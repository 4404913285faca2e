#!/usr/bin/env bash
# Fifteenth session, call 2.  (1) Where the layer's time goes beside the GEMMs, by difference:
# MOERT_BENCH_SKIP (new benchmark hook) 1 = no routing launch (the plan held stays), 2 = no
# combine, 4 = no expert GEMMs.  (2) MOERT_PREFILL_W_EVICT=1 (new, off): the weights' TMA loads
# marked L2 evict_first so that h and the rows the combine reads stay in L2.  Prediction: T=512
# 313.7 -> ~310 us (the combine's 17 MB and the down GEMM's 6 MB of h from L2), T=128 -1 us,
# T=1 equal; prefill T=8192 a few per cent (268 MB of rows: they cannot all stay).
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run prefillw 200 MOERT_PREFILL_W_EVICT=1 $B/tests/test_gpu_prefill
run quickw 150 MOERT_PREFILL_W_EVICT=1 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for T in 1 32 512 2048; do for v in "MOERT_PREFILL_W_EVICT=0" "MOERT_PREFILL_W_EVICT=1"; do
  echo "T=$T $v $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens $T --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  for k in 0 1 2 3 4 7; do ab skip$k forward qwen3-30b-a3b 1,2,4,8,32,128,512 MOERT_BENCH_SKIP=$k; done
  echo "skip round $r $(( $(date +%s) - t0 )) s"
done
for r in 1 2; do
  ab main forward qwen3-30b-a3b 1,8,32,128,256,512
  ab evict forward qwen3-30b-a3b 1,8,32,128,256,512 MOERT_PREFILL_W_EVICT=1
  echo "evict round $r $(( $(date +%s) - t0 )) s"
done
for r in 1 2; do
  ab main prefill qwen3-30b-a3b 2048,8192
  ab evict prefill qwen3-30b-a3b 2048,8192 MOERT_PREFILL_W_EVICT=1
  for k in 1 2 3 4; do ab skip$k prefill qwen3-30b-a3b 2048,8192 MOERT_BENCH_SKIP=$k; done
  echo "prefill round $r $(( $(date +%s) - t0 )) s"
done
for v in main evict; do
  e="MOERT_PREFILL_W_EVICT=0"; [ $v = evict ] && e="MOERT_PREFILL_W_EVICT=1"
  ab $v forward qwen3-235b-a22b 1,32,512 $e
  ab $v forward mixtral-8x7b 1,128,512 $e
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
