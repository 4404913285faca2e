#!/usr/bin/env bash
# session 7, call 8: the epilogue through shared memory (stmatrix, MOERT_PREFILL_EPI_WIDE=2)
# against the quad shuffles (1, the default): GPU prefill test (3 new cases), A/B twice, ncu
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; cat $OUT/machine.txt
timeout 120 build-gpu/tests/test_gpu_prefill > $OUT/gpu_prefill.log 2>&1; ok=$?
echo "gpu_prefill rc=$ok $(grep Checks $OUT/gpu_prefill.log)"; grep -E ":F:|:E:" $OUT/gpu_prefill.log | head
grep -B1 -A1 "stmatrix" $OUT/gpu_prefill.log | cut -c1-200
B=$OUT/bench.jsonl
if [ $ok = 0 ]; then
for r in 1 2; do for v in "e1:X=0" "e2:MOERT_PREFILL_EPI_WIDE=2"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name r$r" >> $B
  env $envs timeout 90 build-gpu/moert bench --backend cuda --stage prefill --model qwen3-30b-a3b --tokens 1024,2048,8192,32768 --json >> $B 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 64,128,256,512 --json >> $B 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage prefill --model qwen3-235b-a22b --tokens 4096 --json >> $B 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage prefill --model deepseek-v3 --tokens 8192 --json >> $B 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage forward --model mixtral-8x7b --tokens 256,512 --json >> $B 2>&1
done; done
python3 -c "
import json,collections
cur=''; d=collections.OrderedDict()
for l in open('$B'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault((r['stage'][:3],r['model'][:10],r['T']), []).append('%s:%.1f'%(cur, r['us']))
for k,v in d.items(): print(k, ' '.join(v))
"
MOERT_PREFILL_EPI_WIDE=2 timeout 100 ncu --clock-control none --section SpeedOfLight -k regex:"moert_prefill_gemm" --launch-skip 2 --launch-count 2 \
   build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/ncu-e2.txt 2>&1
timeout 100 ncu --clock-control none --section SpeedOfLight -k regex:"moert_prefill_gemm" --launch-skip 2 --launch-count 2 \
   build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/ncu-e1.txt 2>&1
grep -E "^  moert|Duration|Compute \(SM\) Throughput" $OUT/ncu-e1.txt $OUT/ncu-e2.txt
fi
echo "total $(( $(date +%s) - t0 )) s"
