#!/usr/bin/env bash
# For the fourteenth session's first device call (written at the end of the thirteenth, not
# run): build main into build-gpu here (cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release
# -DMOERT_BUILD_TOOLS=ON), copy ../shared/peers/torch_peers.py into .device/, carry
# ["build-gpu", ".device"], run this script on the device (about 3 minutes).
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
for f in $OUT/ncu-*.txt; do
  echo "== $(basename $f)"
  grep -E "^  [a-z_]+.*\(|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Dynamic Shared|Grid Size|Block Size|Stall|No Eligible" $f | tr -s ' ' | head -40
done
echo "total $(( $(date +%s) - t0 )) s"
