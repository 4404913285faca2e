#!/usr/bin/env bash
# twelfth session, call 5: the narrow gate/up GEMM at T=1 prefetches the down weights into L2
# (MOERT_PF_DOWN; hook MOERT_PREFILL_PF_DOWN=0|1|2): tests, dump, A/B, ncu
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
B=build-gpu
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks|ERROR SUMMARY' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
timeout 40 $B/moert bench --backend cuda --stage forward --tokens 1 --iters 5 --json > /dev/null 2>&1 || echo "bench T=1 rc=$?"
run prefill 120 $B/tests/test_gpu_prefill
grep -E "prefetched: [12]" -A1 $OUT/prefill.log | grep -E "checked" | head -3
run quick 100 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for v in MOERT_X=1 MOERT_PREFILL_PF_DOWN=0 MOERT_PREFILL_PF_DOWN=2; do
  echo "T=1 [$v] $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b --tokens 1 \
    --layers 1 --weight-sets 1 --dump $OUT/t1-${v#*=}.bin 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  for cfg in MOERT_PREFILL_PF_DOWN=1 MOERT_PREFILL_PF_DOWN=0 MOERT_PREFILL_PF_DOWN=2; do
    echo "# qwen3-30b-a3b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 40 $B/moert bench --backend cuda --stage forward --model qwen3-30b-a3b \
      --tokens 1,2 --json >> $OUT/ab.jsonl 2>&1
  done
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "ab done $(( $(date +%s) - t0 )) s"
run forward 170 CK_RUN_CASE=forward $B/tests/test_gpu_forward
for v in 1 0; do
  MOERT_PREFILL_PF_DOWN=$v timeout 60 /usr/local/cuda/bin/ncu --cache-control none --clock-control none \
    --section SpeedOfLight -k regex:moert_prefill_gemm --launch-skip 20 --launch-count 4 \
    $B/moert bench --backend cuda --stage forward --tokens 1 --iters 5 > $OUT/ncu-pf$v.txt 2>&1
  echo "ncu pf=$v: $(grep -E 'Duration|DRAM Throughput' $OUT/ncu-pf$v.txt | tr -s ' ' | tr '\n' ' ')"
done
echo "total $(( $(date +%s) - t0 )) s"
