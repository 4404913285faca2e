#!/usr/bin/env bash
# session 6, call 1: prefill variants on sm_90a — K steps of 32 with the 64-byte swizzle
# (8-9 stages), ypair in bf16 read by moert_combine_act (16-byte loads), SiLU by tanh.approx;
# the GPU tests of each, the Qwen3-30B-A3B layer (two runs each), ncu per kernel
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
ALL="MOERT_PREFILL_YPAIR_ACT=1 MOERT_PREFILL_BK=32 MOERT_PREFILL_SILU_TANH=1"
run gpu_prefill 150 build-gpu/tests/test_gpu_prefill
grep -E "^prefill|worst" $OUT/gpu_prefill.log | paste - - | cut -c1-230
run forward_quick_all 150 CK_RUN_CASE=quick $ALL build-gpu/tests/test_gpu_forward
V=("base:X=0" "act:MOERT_PREFILL_YPAIR_ACT=1" "bk32:MOERT_PREFILL_BK=32" "bk32s8:MOERT_PREFILL_BK=32 MOERT_PREFILL_STAGES=8" \
   "tanh:MOERT_PREFILL_SILU_TANH=1" "all:$ALL")
for r in 1 2; do
for v in "${V[@]}"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name r$r" >> $OUT/bench.jsonl
  env $envs timeout 90 build-gpu/moert bench --backend cuda --stage prefill --tokens 2048,8192,32768 --json >> $OUT/bench.jsonl 2>&1
done
done
echo "bench done $(( $(date +%s) - t0 )) s"
for v in "base:X=0" "all:$ALL"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name" >> $OUT/bench-big.jsonl
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage prefill --model qwen3-235b-a22b --tokens 4096 --json >> $OUT/bench-big.jsonl 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage prefill --model deepseek-v3 --tokens 8192 --json >> $OUT/bench-big.jsonl 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 256,512 --json >> $OUT/bench-big.jsonl 2>&1
done
python3 -c "
import json,collections
for f in ['bench','bench-big']:
  cur=''; d=collections.OrderedDict()
  for l in open('$OUT/'+f+'.jsonl'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault((r['model'][:10],r['T']), []).append('%s:%.1f'%(cur, r['us']))
  for k,v in d.items(): print(k, ' '.join(v))
"
echo "big done $(( $(date +%s) - t0 )) s"
for v in "base:X=0" "all:$ALL"; do
  name=${v%%:*}; envs=${v#*:}
  env $envs timeout 100 ncu --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__registers_per_thread \
    -k regex:"moert_" --launch-skip 8 --launch-count 8 \
    build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/ncu-$name.txt 2>&1
  echo "== ncu $name rc=$? $(( $(date +%s) - t0 )) s"
  grep -E "^  moert|duration|registers" $OUT/ncu-$name.txt | paste - - - | awk '{print $1, $2, $(NF-4), $NF}' | head -10
done
echo "total $(( $(date +%s) - t0 )) s"
