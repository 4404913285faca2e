#!/usr/bin/env bash
# session 5, call 9: the final rule above hidden 2048 (128-row: one CTA per tile, row tile outer)
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $OUT/machine.txt; date -u >> $OUT/machine.txt
timeout 60 env CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward > $OUT/quick.log 2>&1; echo "quick rc=$? $(grep Checks $OUT/quick.log)"
B="build-gpu/moert bench --backend cuda --json"
timeout 60 $B --stage prefill --model qwen3-235b-a22b --tokens 4096,16384 >> $OUT/bench.jsonl 2>&1
timeout 60 $B --stage prefill --model deepseek-v3 --tokens 8192 --iters 6 >> $OUT/bench.jsonl 2>&1
timeout 30 $B --stage forward --model mixtral-8x7b --tokens 256,512 >> $OUT/bench.jsonl 2>&1
python3 -c "
import json
for l in open('$OUT/bench.jsonl'):
    if l.startswith('{'): r=json.loads(l); print(r['model'][:14], r['T'], r['us'], r.get('ratio'))
"
echo "total $(( $(date +%s) - t0 )) s"
