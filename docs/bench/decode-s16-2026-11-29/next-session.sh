#!/usr/bin/env bash
# For the seventeenth session's first device call (written at the end of the sixteenth: its
# device time was spent).  Build main into build-gpu here and 9dd60b0 into build-prev (a
# worktree, target moert_cli), copy ../shared/peers/torch_peers.py into .device/, carry
# ["build-gpu", "build-prev", ".device"], run this (about 6 minutes).
# 1. 2e98c11's final form of the K split (only the narrow down module built for it, the
#    two-part combine its own kernel) has not run on a GPU: the suites first.
# 2. Call 8's question: Qwen3-30B-A3B T=1 and 512 0.5 % slower than 9dd60b0 with the split as
#    a run-time branch everywhere - prediction: equal now (the default modules' PTX is
#    9dd60b0's); Mixtral T=1 ~187 us against ~205.
# 3. MOERT_PREFILL_GU_BN64=256 (prepared after the last call, not run on a GPU): 64-row gate/up
#    tiles of 256 columns (n128 wgmmas, two 128-row boxes a matrix, 3 stages).  Prediction: with
#    MOERT_PREFILL_BM=64, Mixtral-8x7B T=512 from ~1140 to ~800-900 us (the padding of 128-row
#    tiles at 128 +- 11 rows an expert is the cost, and 64-row tiles ran n64 wgmmas); T=256 a
#    few per cent; Qwen3-30B-A3B T=256-512 (64-row tiles already) equal or better; at
#    T=1024-2048 (64 and 128 rows an expert: 128-row tiles by pick_bm, half of them nearly
#    empty at 128 +- 11) 64-row tiles with it might beat 128 (issue 5: T=1024 within 1.1x of
#    the floor, T=2048 1.2x faster than Triton's GEMMs).
# 4. The record with the peers (bench-gpu.sh).
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run forward 330 $B/tests/test_gpu_forward
run prefill 200 $B/tests/test_gpu_prefill
run quick-ks2 150 MOERT_PREFILL_KSPLIT=2 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for v in MOERT_PREFILL_KSPLIT=0 MOERT_X=1; do
  echo "mixtral T=1 $v $(env $v timeout 90 $B/moert run --backend cuda --model mixtral-8x7b --tokens 1 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  B=build-prev ab prev forward qwen3-30b-a3b 1,2,8,128,512
  B=build-gpu ab new forward qwen3-30b-a3b 1,2,8,128,512
  B=build-prev ab prev forward mixtral-8x7b 1,2,4
  B=build-gpu ab new forward mixtral-8x7b 1,2,4
done
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
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=150 \
  tools/bench-gpu.sh build-gpu .device/torch_peers.py > $OUT/bench-gpu.txt 2>&1
echo "bench rc=$? $(( $(date +%s) - t0 )) s"
grep -E "step of|graph:|floor:" $OUT/bench-gpu.txt
echo "total $(( $(date +%s) - t0 )) s"
