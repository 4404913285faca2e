#!/usr/bin/env bash
# session 8, call 1: the split-K decode kernel (moert_dec_fused_1 + moert_combine_slabs):
# tests (quick incl. splitk), the forward bench alternated fused 0 / 1 / 1 without the L2
# prefetch, memcheck of the splitk quick case, then the forward case (graph replay T=4)
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
grep -E "split-K|decode\]" $OUT/quick.log | head -8
for r in 1 2; do
  for f in 0 1 p; do
    echo "# fused=$f run $r" >> $OUT/bench.jsonl
    if [ $f = p ]; then e="MOERT_CUDA_DEC_FUSED=1 MOERT_CUDA_DEC_FUSED_PREFETCH=0"; else e="MOERT_CUDA_DEC_FUSED=$f"; fi
    env $e timeout 60 build-gpu/moert bench --backend cuda --stage forward --tokens 1,2,4,8,16 --json >> $OUT/bench.jsonl 2>&1
  done
done
python3 -c "
import json
cur=''
for l in open('$OUT/bench.jsonl'):
    if l.startswith('#'): cur=l.strip(); continue
    if l.startswith('{'):
        r=json.loads(l); print(cur, r['model'][:12], r['T'], r['us'], r.get('ratio'))
"
echo "bench done $(( $(date +%s) - t0 )) s"
s=$(date +%s)
MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=0 CK_RUN_CASE=quick timeout 150 $(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer) --tool memcheck build-gpu/tests/test_gpu_forward > $OUT/memcheck-splitk.log 2>&1
echo "memcheck rc=$? $(( $(date +%s) - s )) s"; tail -3 $OUT/memcheck-splitk.log
run forward 240 CK_RUN_CASE=forward build-gpu/tests/test_gpu_forward
grep -E "graph replay" $OUT/forward.log | head
echo "total $(( $(date +%s) - t0 )) s"
