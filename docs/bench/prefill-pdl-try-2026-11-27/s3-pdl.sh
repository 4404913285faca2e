#!/usr/bin/env bash
# session 3: PDL for the prefill-GEMM chain (tiles, gate/up, down, combine): bench old/new, tests, sanitizers
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $OUT/machine.txt
for rep in 1 2; do for b in prev new; do
  dir=build-gpu; [ $b = prev ] && dir=build-gpu-prev
  echo "# $b rep $rep"; MOERT_CACHE_DIR=/tmp/jitc-$b $dir/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 16,32,64,128,256,512 --json
done; done > $OUT/bench-pdl.jsonl 2>&1
echo "bench $(( $(date +%s) - t0 )) s"
for b in prev new; do dir=build-gpu; [ $b = prev ] && dir=build-gpu-prev
  echo "# $b"; MOERT_CACHE_DIR=/tmp/jitc-$b $dir/moert run --backend cuda --layers 48 --tokens 32 2>&1 | grep -E "step|graph|floor"; done > $OUT/run48-pdl.txt 2>&1
cat $OUT/run48-pdl.txt; echo "run48 $(( $(date +%s) - t0 )) s"
python3 - $OUT/bench-pdl.jsonl <<'PY'
import json,sys
cur=None
for l in open(sys.argv[1]):
    if l.startswith('#'): cur=l.strip(); continue
    if l.startswith('{'):
        r=json.loads(l); print(cur, r['T'], r['us'], r['ratio'])
PY
export MOERT_CACHE_DIR=/tmp/jitc-new
timeout 200 build-gpu/tests/test_gpu_forward > $OUT/t-forward.log 2>&1; echo "test_gpu_forward rc=$? $(grep Checks $OUT/t-forward.log) $(( $(date +%s) - t0 )) s"
grep -E ":F:|:E:" $OUT/t-forward.log | head -3
MOERT_SANITIZE_ONLY='prefill' MOERT_SANITIZE_TIMEOUT=125 MOERT_SANITIZE_JOBS=12 OUT=/tmp/san timeout 175 tools/gpu-sanitize.sh build-gpu > /dev/null 2>&1
echo "sanitize rc=$? $(( $(date +%s) - t0 )) s"; cat /tmp/san/sanitize/summary.txt 2>/dev/null | tail -14; cp /tmp/san/sanitize-logs.tar.gz $OUT/ 2>/dev/null
echo "total $(( $(date +%s) - t0 )) s"
