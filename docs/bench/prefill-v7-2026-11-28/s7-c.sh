#!/usr/bin/env bash
# session 7, call 3: the gate/up producer with per-item row sources (no shared-memory row
# list, no multiply per K step), setmaxnreg 48/224. GPU tests; base (HEAD, build-base) vs new
# (build-gpu) alternated twice; ncu source page of the new gate/up.
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; cat $OUT/machine.txt
mkdir -p $OUT/logs
run() { # name timeout env... cmd
  local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/logs/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/logs/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/logs/$name.log | head -5
  return $rc
}
run gpu_prefill 120 build-gpu/tests/test_gpu_prefill
run forward_quick 150 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
echo "tests done $(( $(date +%s) - t0 )) s"
B=$OUT/bench.jsonl
for r in 1 2; do
for v in base new; do
  bin=build-gpu/moert; [ $v = base ] && bin=build-base/moert
  echo "# $v r$r" >> $B
  timeout 90 $bin bench --backend cuda --stage prefill --model qwen3-30b-a3b --tokens 1024,2048,4096,8192,16384,32768 --json >> $B 2>&1
  timeout 60 $bin bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 32,128,256,512 --json >> $B 2>&1
  timeout 60 $bin bench --backend cuda --stage prefill --model qwen3-235b-a22b --tokens 4096 --json >> $B 2>&1
  timeout 60 $bin bench --backend cuda --stage prefill --model deepseek-v3 --tokens 8192 --json >> $B 2>&1
  timeout 60 $bin bench --backend cuda --stage forward --model mixtral-8x7b --tokens 256,512 --json >> $B 2>&1
done
done
python3 -c "
import json,collections
cur=''; d=collections.OrderedDict()
for l in open('$B'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault((r['stage'][:3], r['model'][:10],r['T']), []).append('%s:%.1f'%(cur, r['us']))
for k,v in d.items(): print(k, ' '.join(v))
"
echo "bench done $(( $(date +%s) - t0 )) s"
timeout 100 ncu --clock-control none --section WarpStateStats --section SourceCounters --page source --print-source sass --csv \
   -k regex:"moert_prefill_gemm" --launch-skip 2 --launch-count 1 \
   build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/logs/ncu-source-gu.csv 2> $OUT/logs/ncu-source-gu.err
echo "ncu rc=$? $(( $(date +%s) - t0 )) s"
timeout 100 ncu --clock-control none --section SpeedOfLight --section ComputeWorkloadAnalysis -k regex:"moert_prefill_gemm" --launch-skip 2 --launch-count 2 \
   build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/logs/ncu-sol.txt 2>&1
grep -E "^  moert|Duration|Compute \(SM\) Throughput|L2 Cache Throughput|DRAM Throughput|SM Busy" $OUT/logs/ncu-sol.txt | head -20
echo "total $(( $(date +%s) - t0 )) s"
