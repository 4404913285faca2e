#!/usr/bin/env bash
# session 5, call 1: prefill work order (column tile outer vs row tile outer) A/B, the
# prefill GEMM tests with row order, and an ncu profile of the T=8192 layer's kernels
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; cat $OUT/machine.txt
run() { # name timeout env... cmd
  local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5
}
run prefill-order1 150 MOERT_PREFILL_ORDER=1 build-gpu/tests/test_gpu_prefill
run prefill-order1-pers 150 MOERT_PREFILL_ORDER=1 MOERT_PREFILL_PERSISTENT=1 build-gpu/tests/test_gpu_prefill
for r in 1 2; do
for o in 0 1; do
  echo "# order=$o r$r" >> $OUT/bench.jsonl
  MOERT_PREFILL_ORDER=$o timeout 90 build-gpu/moert bench --backend cuda --stage prefill --tokens 1024,2048,8192,32768 --json >> $OUT/bench.jsonl 2>&1
  echo "# order=$o persistent=1 r$r" >> $OUT/bench.jsonl
  MOERT_PREFILL_ORDER=$o MOERT_PREFILL_PERSISTENT=1 timeout 90 build-gpu/moert bench --backend cuda --stage prefill --tokens 2048,8192 --json >> $OUT/bench.jsonl 2>&1
done
done
echo "bench done $(( $(date +%s) - t0 )) s"
python3 -c "
import json,collections
cur=''; d=collections.OrderedDict()
for l in open('$OUT/bench.jsonl'):
    if l.startswith('#'): cur=' '.join(l.split()[1:-1]); continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault(r['T'], []).append('%s:%.1f'%(cur, r['us']))
for k,v in d.items(): print(k, ' | '.join(v))
"
for o in 0 1; do
  MOERT_PREFILL_ORDER=$o timeout 150 ncu --clock-control none --section SpeedOfLight --section ComputeWorkloadAnalysis \
    --section MemoryWorkloadAnalysis --section WarpStateStats --section LaunchStats --section Occupancy \
    -k regex:"moert_prefill_gemm|moert_combine|moert_route|moert_plan|moert_prefill_tiles" --launch-skip 6 --launch-count 8 \
    build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/ncu-order$o.txt 2>&1
  echo "ncu order $o rc=$? $(( $(date +%s) - t0 )) s"
done
grep -E "^  moert|Duration|DRAM Throughput|Compute \(SM\) Throughput|Memory Throughput|L2 Hit|Executed Ipc A" $OUT/ncu-order0.txt | head -80
echo "total $(( $(date +%s) - t0 )) s"
