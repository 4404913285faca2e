#!/usr/bin/env bash
# session 5, call 7: the plan with 1..8 groups a warp (short blocks at decode sizes): route
# tests (device plan = host plan), ncu durations, the forward bench at T=256, 512
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $OUT/machine.txt; date -u >> $OUT/machine.txt
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/$name.log | tail -1)"; grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run forward_route 100 CK_RUN_CASE=route build-gpu/tests/test_gpu_forward
run reliability 100 build-gpu/tests/test_gpu_reliability
run forward_quick 120 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
for T in 256 512 8192 32768; do
timeout 60 ncu --clock-control none --metrics gpu__time_duration.sum -k regex:"moert_plan" --launch-skip 4 --launch-count 2 \
    build-gpu/moert bench --backend cuda --stage prefill --tokens $T --iters 1 > $OUT/ncu-plan-$T.txt 2>&1
echo "T=$T $(grep -E "^  moert|duration" $OUT/ncu-plan-$T.txt | paste - - | awk '{printf "%s %s us; ", $1, $NF}')"
done
for r in 1 2; do timeout 60 build-gpu/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 256,512 --json >> $OUT/forward.jsonl 2>&1; done
python3 -c "
import json
for l in open('$OUT/forward.jsonl'):
    if l.startswith('{'): r=json.loads(l); print(r['model'][:14], r['T'], r['us'], r.get('ratio'))
"
echo "total $(( $(date +%s) - t0 )) s"
