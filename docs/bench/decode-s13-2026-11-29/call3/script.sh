#!/usr/bin/env bash
# Call 3: where the prefill GEMMs lose time at T=8192 (issue 5), main 0f0d131: ncu sections
# of the gate/up and the down GEMM (two launches each), and every kernel of one layer.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
NCU=/usr/local/cuda/bin/ncu
$B/moert bench --backend cuda --stage prefill --tokens 8192 --iters 5 --json 2>&1 | tail -2
$NCU --cache-control none --clock-control none \
  --section SpeedOfLight --section WarpStateStats --section SchedulerStats \
  --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section LaunchStats \
  --section Occupancy \
  -k regex:moert_prefill_gemm --launch-skip 8 --launch-count 4 \
  $B/moert bench --backend cuda --stage prefill --tokens 8192 --iters 3 > $OUT/ncu-8192.txt 2>&1
echo "ncu gemm rc=$? $(( $(date +%s) - t0 )) s"
$NCU --cache-control none --clock-control none --section SpeedOfLight -k regex:moert \
  --launch-skip 40 --launch-count 14 \
  $B/moert bench --backend cuda --stage prefill --tokens 8192 --iters 3 > $OUT/ncu-8192-all.txt 2>&1
echo "ncu all rc=$? $(( $(date +%s) - t0 )) s"
grep -E "^  moert|Duration|SM Busy|Compute \(SM\) Throughput|DRAM Throughput|Issue Slots Busy|No Eligible|Stall" $OUT/ncu-8192.txt | head -80
grep -E "^  moert|Duration" $OUT/ncu-8192-all.txt | paste - - | awk '{print $1, $(NF)}' | head -30
echo "total $(( $(date +%s) - t0 )) s"
