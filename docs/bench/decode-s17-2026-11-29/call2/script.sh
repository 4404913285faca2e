#!/usr/bin/env bash
# s17 call 2 (parts 3-4 of decode-s16-2026-11-29/next-session.sh): MOERT_PREFILL_GU_BN64=256
# (64-row gate/up tiles of 256 columns; never run on a GPU) - quick suite, Mixtral T=512
# checksums, A/B at Mixtral / Qwen3-30B / Qwen3-235B T=128-2048; call 1's Qwen3-30B T=1 question
# (0.3 us slower than 9dd60b0) with the split hook off; then the record with the peers.
# Prediction: Mixtral T=512 ~1140 -> 800-900 us with BM=64.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run quick-bn64 150 MOERT_PREFILL_GU_BN64=256 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for v in MOERT_X=1 "MOERT_PREFILL_GU_BN64=256 MOERT_PREFILL_BM=64" MOERT_PREFILL_BM=64; do
  echo "mixtral T=512 $v $(env $v timeout 90 $B/moert run --backend cuda --model mixtral-8x7b --tokens 512 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
for r in 1 2; do
  ab main forward mixtral-8x7b 256,512,1024
  ab bm64 forward mixtral-8x7b 256,512,1024 MOERT_PREFILL_BM=64
  ab bn256-bm64 forward mixtral-8x7b 256,512,1024 MOERT_PREFILL_GU_BN64=256 MOERT_PREFILL_BM=64
  ab main forward qwen3-30b-a3b 128,512,1024,2048
  ab bn256 forward qwen3-30b-a3b 128,512 MOERT_PREFILL_GU_BN64=256
  ab bm64 forward qwen3-30b-a3b 1024,2048 MOERT_PREFILL_BM=64
  ab bn256-bm64 forward qwen3-30b-a3b 1024,2048 MOERT_PREFILL_GU_BN64=256 MOERT_PREFILL_BM=64
  ab main forward qwen3-235b-a22b 512,1024,2048
  ab bn256 forward qwen3-235b-a22b 512 MOERT_PREFILL_GU_BN64=256
  ab bn256-bm64 forward qwen3-235b-a22b 1024,2048 MOERT_PREFILL_GU_BN64=256 MOERT_PREFILL_BM=64
  B=build-prev ab prev forward qwen3-30b-a3b 1
  ab new forward qwen3-30b-a3b 1
  ab ks0 forward qwen3-30b-a3b 1 MOERT_PREFILL_KSPLIT=0
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=150 \
  tools/bench-gpu.sh build-gpu .device/torch_peers.py > $OUT/bench-gpu.txt 2>&1
echo "bench rc=$? $(( $(date +%s) - t0 )) s"
grep -E "step of|graph:|floor:" $OUT/bench-gpu.txt
echo "total $(( $(date +%s) - t0 )) s"
