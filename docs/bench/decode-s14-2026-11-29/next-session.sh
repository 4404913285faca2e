#!/usr/bin/env bash
# For the fifteenth session's first device call (written at the end of the fourteenth, not
# run: no device time left).  Build main into build-gpu here (cmake -S . -B build-gpu
# -DCMAKE_BUILD_TYPE=Release -DMOERT_BUILD_TOOLS=ON), copy ../shared/peers/torch_peers.py into
# .device/, carry ["build-gpu", ".device"], run this script on the device (about 3 minutes).
# 1. The narrow (T=1) tiles' maps alone at 128-byte L2 fetches (c55e36c, the default, never
#    run on a GPU): prediction T=1 ~31.4 us against ~32.1 with the hook at 256, T=2 equal.
# 2. The layer kernel with the GEMMs' 16-byte stores (MOERT_PREFILL_LAYER_WIDE=1, an
#    experiment compiled by test_nvrtc_prefill, two test_gpu_prefill cases, never run):
#    prediction - the layer kernel no longer 0.5-1.4 % slower at T=128-512, so the rule's
#    "fewer than 8 rows an expert" could go; no change at T <= 64.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
for T in 1 128 512; do
  MOERT_PREFILL_LAYER_WIDE=1 MOERT_PREFILL_LAYER64=1 MOERT_PREFILL_LAYER=1 timeout 30 $B/moert bench \
    --backend cuda --stage forward --tokens $T --iters 5 --json > /dev/null 2>&1 || echo "bench T=$T rc=$?"
done
run prefill 150 $B/tests/test_gpu_prefill
run quick 120 CK_RUN_CASE=quick $B/tests/test_gpu_forward
run quickwide 120 MOERT_PREFILL_LAYER_WIDE=1 MOERT_PREFILL_LAYER64=1 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for T in 1 32 512; do for v in "MOERT_PREFILL_LAYER64=0" "MOERT_PREFILL_LAYER64=1 MOERT_PREFILL_LAYER_WIDE=1 MOERT_PREFILL_LAYER=1"; do
  echo "T=$T $v $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens $T --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  ab fetch128 forward qwen3-30b-a3b 1,2
  ab fetch256 forward qwen3-30b-a3b 1,2 MOERT_PREFILL_L2_PROMOTION=256
done
for r in 1 2; do
  ab two forward qwen3-30b-a3b 8,32,64,128,256,512 MOERT_PREFILL_LAYER64=0
  ab layer4 forward qwen3-30b-a3b 8,32,64,128,256,512 MOERT_PREFILL_LAYER64=1
  ab layer16 forward qwen3-30b-a3b 8,32,64,128,256,512 MOERT_PREFILL_LAYER64=1 MOERT_PREFILL_LAYER_WIDE=1
  echo "round $r $(( $(date +%s) - t0 )) s"
done
for v in two layer16; do
  e="MOERT_PREFILL_LAYER64=0"; [ $v = layer16 ] && e="MOERT_PREFILL_LAYER64=1 MOERT_PREFILL_LAYER_WIDE=1"
  ab $v forward qwen3-235b-a22b 128,512 $e
  ab $v forward mixtral-8x7b 64,128 $e
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
