#!/usr/bin/env bash
# Call 5: is call 4's slower down GEMM the staged epilogue or its third stage?  ncu of both
# GEMMs at T=8192 for: direct stores with 4 stages (main), direct stores with 3 stages
# (MOERT_PREFILL_STAGES=3: the gate/up GEMM too), staged epilogue (3 stages).
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
for cfg in "MOERT_PREFILL_EPI_ASYNC=0" "MOERT_PREFILL_EPI_ASYNC=0 MOERT_PREFILL_STAGES=3" "MOERT_PREFILL_EPI_ASYNC=1"; do
  echo "== $cfg"
  env $cfg /usr/local/cuda/bin/ncu --cache-control none --clock-control none --section SpeedOfLight \
    -k regex:moert_prefill_gemm --launch-skip 8 --launch-count 2 \
    $B/moert bench --backend cuda --stage prefill --tokens 8192 --iters 3 > $OUT/ncu.txt 2>&1
  grep -E "Duration|SM Frequency|Compute \(SM\)" $OUT/ncu.txt | tr -s ' ' | paste - - - 
  cat $OUT/ncu.txt >> $OUT/ncu-all.txt
  env $cfg $B/moert bench --backend cuda --stage prefill --tokens 4096,8192 --json 2>&1 | grep '"us"' | cut -c1-80
done
echo "total $(( $(date +%s) - t0 )) s"
