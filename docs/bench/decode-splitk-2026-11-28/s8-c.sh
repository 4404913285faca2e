#!/usr/bin/env bash
# session 8, call 3: split-K decode v2 (32-row slabs, Wd ring of its own issued before the
# gate/up phase, L2::256B, combine a column a lane; auto at T=1 only): tests, forward bench
# fused 0/1 alternated (T=1,2), the T=1..512 auto sweep, ncu of T=1
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run quick 200 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
for r in 1 2 3; do
  for f in 0 1; do
    echo "# fused=$f run $r" >> $OUT/bench.jsonl
    MOERT_CUDA_DEC_FUSED=$f timeout 60 build-gpu/moert bench --backend cuda --stage forward --tokens 1,2 --json >> $OUT/bench.jsonl 2>&1
  done
done
echo "# auto" >> $OUT/bench.jsonl
timeout 100 build-gpu/moert bench --backend cuda --stage forward --json >> $OUT/bench.jsonl 2>&1
python3 -c "
import json
cur=''
for l in open('$OUT/bench.jsonl'):
    if l.startswith('#'): cur=l.strip(); continue
    if l.startswith('{'):
        r=json.loads(l); print(cur, r['model'][:12], r['T'], r['us'], r.get('ratio'))
"
echo "bench done $(( $(date +%s) - t0 )) s"
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
timeout 90 $NCU --section SpeedOfLight --section Occupancy -k regex:moert_ --launch-skip 20 --launch-count 8 build-gpu/moert bench --backend cuda --stage forward --tokens 1 --iters 5 > $OUT/ncu-t1.txt 2>&1
grep -E "^  moert_|Duration|DRAM Throughput|Achieved Occupancy" $OUT/ncu-t1.txt | head -32
s=$(date +%s)
MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=0 CK_RUN_CASE=quick timeout 150 $(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer) --tool memcheck build-gpu/tests/test_gpu_forward > $OUT/memcheck-splitk.log 2>&1
echo "memcheck rc=$? $(( $(date +%s) - s )) s"; tail -2 $OUT/memcheck-splitk.log
s=$(date +%s)
MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=0 CK_RUN_CASE=quick timeout 150 $(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer) --tool racecheck build-gpu/tests/test_gpu_forward > $OUT/racecheck-splitk.log 2>&1
echo "racecheck rc=$? $(( $(date +%s) - s )) s"; tail -2 $OUT/racecheck-splitk.log
echo "total $(( $(date +%s) - t0 )) s"
