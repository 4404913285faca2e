#!/usr/bin/env bash
# For the fourteenth session's first device call (written at the end of the thirteenth, not
# run): build main into build-gpu here (cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release
# -DMOERT_BUILD_TOOLS=ON), copy ../shared/peers/torch_peers.py into .device/, carry
# ["build-gpu", ".device"], run this script on the device (about 3 minutes).
# Then the experiment MOERT_PREFILL_NARROW_BN=32 (tests, checksum, A/B).
# Why (decode-log.md v14, Next): the Triton fused-MoE peer's two GEMMs alone beat moert's
# whole layer up to T=128 on the H200 (25.9 against 32.5 us at T=1, 244.7 against 272.0 at
# T=32).  Before any new kernel: the same ncu sections for moert's GEMMs and the peer's, at
# T=1 and T=32, with the peer's best block shapes of call 7 - DRAM throughput, bytes and
# CTAs per SM, the time to the first byte, stall reasons.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
NCU="/usr/local/cuda/bin/ncu --cache-control none --clock-control none --section SpeedOfLight
  --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section WarpStateStats
  --section SchedulerStats"
for T in 1 32; do
  # moert: steady-state launches of both GEMMs (the bench's host-routing pass launches them plainly)
  $NCU -k regex:moert_prefill_gemm --launch-skip 20 --launch-count 4 \
    $B/moert bench --backend cuda --stage forward --tokens $T --iters 5 > $OUT/ncu-moert-t$T.txt 2>&1
  echo "moert T=$T rc=$? $(( $(date +%s) - t0 )) s"
done
# the peer: its best shapes of call 7 (triton-peer-h200-2026-11-29.jsonl)
$NCU -k regex:moe_gemm --launch-skip 8 --launch-count 4 \
  python3 tools/triton_moe_peer.py --tokens 1 --cfg1 16,64,256,1,4,3 --cfg2 16,64,128,1,4,3 \
  --profile 8 > $OUT/ncu-triton-t1.txt 2>&1
echo "triton T=1 rc=$? $(( $(date +%s) - t0 )) s"
$NCU -k regex:moe_gemm --launch-skip 8 --launch-count 4 \
  python3 tools/triton_moe_peer.py --tokens 32 --cfg1 16,64,128,1,4,3 --cfg2 16,128,128,1,4,3 \
  --profile 8 > $OUT/ncu-triton-t32.txt 2>&1
echo "triton T=32 rc=$? $(( $(date +%s) - t0 )) s"
# the experiment MOERT_PREFILL_NARROW_BN=32 (gate/up items of 32 columns at T=1, as many
# weight rows as the peer's fastest T=1 block; compiled here, not run on a GPU): its tests,
# the same bits at T=1, then A/B.  Prediction: T=1 gate/up 18 -> ~16 us if the item size is
# what the peer's lead comes from, the layer 32.4 -> ~30.5 us.
run prefill 120 $B/tests/test_gpu_prefill
run quick 100 MOERT_PREFILL_NARROW_BN=32 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for v in 64 32; do
  echo "T=1 narrow bn=$v $(MOERT_PREFILL_NARROW_BN=$v timeout 60 $B/moert run --backend cuda \
    --model qwen3-30b-a3b --tokens 1 --layers 1 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
for r in 1 2; do for v in 64 32; do
  ab bn$v forward qwen3-30b-a3b 1,2 MOERT_PREFILL_NARROW_BN=$v  # T=2 takes the default tiles: a control
done; done
python3 tools/ab-table.py $OUT/ab.jsonl
for f in $OUT/ncu-*.txt; do
  echo "== $(basename $f)"
  grep -E "^  [a-z_]+.*\(|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Dynamic Shared|Grid Size|Block Size|Stall|No Eligible" $f | tr -s ' ' | head -40
done
echo "total $(( $(date +%s) - t0 )) s"
