#!/usr/bin/env bash
# Call 2: MOERT_PREFILL_A_SKIP (the gathered A's padding rows not copied at all, where a
# zero-byte cp.async was issued for each) and MOERT_PREFILL_DOWN_TMA=0 at 64-row tiles (h by
# cp.async of the tile's own rows, where the TMA box of 64 rows also read the next experts'
# rows from L2).  Why: call 1's ncu at T=32 - moert's gate/up GEMM 176 us at 4.13 TB/s with
# 25 % L2 hits and L2 at 91.6 % of its peak, the Triton peer's 162 us at 4.42 TB/s with 2 %
# hits.  Prediction: gate/up toward the peer's rate, T=8-128 a few per cent faster; the same
# bits (the valid rows' data are unchanged).
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
for T in 1 32 512; do timeout 40 $B/moert bench --backend cuda --stage forward --tokens $T --iters 5 --json > /dev/null 2>&1 || echo "bench T=$T rc=$?"; done
run prefill 150 $B/tests/test_gpu_prefill
run quick 120 CK_RUN_CASE=quick $B/tests/test_gpu_forward
run forward 200 $B/tests/test_gpu_forward
for T in 1 32; do for v in "MOERT_PREFILL_A_SKIP=0 MOERT_PREFILL_DOWN_TMA=1" "MOERT_PREFILL_A_SKIP=1"; do
  echo "T=$T $v $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens $T --layers 1 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
NCU="/usr/local/cuda/bin/ncu --cache-control none --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis"
for v in "MOERT_PREFILL_A_SKIP=0 MOERT_PREFILL_DOWN_TMA=1" "MOERT_PREFILL_A_SKIP=1"; do
  tag=$(echo $v | tr -dc 'A-Z0-9=' | tr '=' '-')
  env $v $NCU -k regex:moert_prefill_gemm --launch-skip 20 --launch-count 2 \
    $B/moert bench --backend cuda --stage forward --tokens 32 --iters 5 > $OUT/ncu-t32-$tag.txt 2>&1
done
echo "ncu done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  ab old forward qwen3-30b-a3b 1,2,4,8,32,128,512 MOERT_PREFILL_A_SKIP=0 MOERT_PREFILL_DOWN_TMA=1
  ab skip forward qwen3-30b-a3b 1,2,4,8,32,128,512 MOERT_PREFILL_A_SKIP=1 MOERT_PREFILL_DOWN_TMA=1
  ab new forward qwen3-30b-a3b 1,2,4,8,32,128,512
  echo "round $r $(( $(date +%s) - t0 )) s"
done
for v in old new; do
  e=""; [ $v = old ] && e="MOERT_PREFILL_A_SKIP=0 MOERT_PREFILL_DOWN_TMA=1"
  ab $v forward qwen3-235b-a22b 1,8,128 $e
  ab $v forward mixtral-8x7b 1,8,512 $e
  ab $v prefill qwen3-30b-a3b 2048,8192 $e
done
python3 tools/ab-table.py $OUT/ab.jsonl
for f in $OUT/ncu-*.txt; do echo "== $(basename $f)"
  grep -E "^  [a-z_]+.*\(|Duration|DRAM Throughput|L2 Cache Throughput|L2 Hit Rate" $f | tr -s ' '; done
echo "total $(( $(date +%s) - t0 )) s"
