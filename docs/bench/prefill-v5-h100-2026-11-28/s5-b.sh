#!/usr/bin/env bash
# session 5, call 2: the two-launch device plan (route tests: device plan = host plan),
# prefill variants (order, persistent, gate+up as one n256 wgmma), per-kernel durations
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
run forward-route 200 CK_RUN_CASE=route build-gpu/tests/test_gpu_forward
run reliability 200 build-gpu/tests/test_gpu_reliability
run forward-quick 150 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
run prefill-fused 150 MOERT_PREFILL_ORDER=1 MOERT_PREFILL_FUSED_GU=1 build-gpu/tests/test_gpu_prefill
run prefill-fused-pers 150 MOERT_PREFILL_ORDER=1 MOERT_PREFILL_FUSED_GU=1 MOERT_PREFILL_PERSISTENT=1 build-gpu/tests/test_gpu_prefill
V=("o0:MOERT_PREFILL_ORDER=0" "o1:MOERT_PREFILL_ORDER=1" "o1p:MOERT_PREFILL_ORDER=1 MOERT_PREFILL_PERSISTENT=1" \
   "o1f:MOERT_PREFILL_ORDER=1 MOERT_PREFILL_FUSED_GU=1" "o1fp:MOERT_PREFILL_ORDER=1 MOERT_PREFILL_FUSED_GU=1 MOERT_PREFILL_PERSISTENT=1")
for r in 1 2; do
for v in "${V[@]}"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name r$r" >> $OUT/bench.jsonl
  env $envs timeout 90 build-gpu/moert bench --backend cuda --stage prefill --tokens 1024,2048,8192,32768 --json >> $OUT/bench.jsonl 2>&1
done
done
echo "bench done $(( $(date +%s) - t0 )) s"
python3 -c "
import json,collections
cur=''; d=collections.OrderedDict()
for l in open('$OUT/bench.jsonl'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault(r['T'], []).append('%s:%.1f'%(cur, r['us']))
for k,v in d.items(): print(k, ' '.join(v))
"
for v in "${V[@]}"; do
  name=${v%%:*}; envs=${v#*:}
  env $envs timeout 100 ncu --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__registers_per_thread \
    -k regex:"moert_" --launch-skip 8 --launch-count 8 \
    build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/ncu-$name.txt 2>&1
  echo "== ncu $name rc=$? $(( $(date +%s) - t0 )) s"
  grep -E "^  moert|duration|registers" $OUT/ncu-$name.txt | paste - - - | awk '{print $1, $2, $(NF-4), $NF}' | head -10
done
timeout 100 ncu --clock-control none --metrics gpu__time_duration.sum -k regex:"moert_" --launch-skip 8 --launch-count 12 \
    build-gpu/moert bench --backend cuda --stage forward --tokens 512 --iters 1 > $OUT/ncu-t512.txt 2>&1
grep -E "^  moert|duration" $OUT/ncu-t512.txt | paste - - | awk '{print $1, $2, $(NF)}' | head -12
echo "total $(( $(date +%s) - t0 )) s"
