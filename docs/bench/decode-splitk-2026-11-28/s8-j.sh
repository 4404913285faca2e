#!/usr/bin/env bash
# session 8, call 10 (the prefill GEMMs from T=2 on sm_90): tests (quick incl. the decode
# kernels forced, forward), the Qwen3-30B-A3B forward sweep and the 48-layer step
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt; date -u | tee -a $OUT/machine.txt
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
timeout 60 build-gpu/moert bench --backend cuda --stage forward --json > $OUT/bench.jsonl 2>&1
python3 -c "
import json
for l in open('$OUT/bench.jsonl'):
    if l.startswith('{'):
        r=json.loads(l); print(r['T'], r['us'], r['ratio'])
"
timeout 60 build-gpu/moert run --backend cuda --layers 48 --tokens 32 > $OUT/run48.txt 2>&1; tail -3 $OUT/run48.txt
run quick 200 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
grep -E "T=7 .*(prefill|decode)" $OUT/quick.log | head -4
run forward 220 CK_RUN_CASE=forward build-gpu/tests/test_gpu_forward
grep -E "Qwen3-30B-A3B bf16 softmax T=" $OUT/forward.log | head -6
echo "total $(( $(date +%s) - t0 )) s"
