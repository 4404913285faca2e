#!/usr/bin/env bash
# session 6, call 3: 16-byte epilogue stores by default; GPU tests; 5 stages for 64-row tiles
# (decode sizes and T=1024); the hidden > 2048 rule against the Qwen3-30B defaults with the
# new epilogue; ncu detailed of both GEMMs at T=8192
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; cat $OUT/machine.txt
mkdir -p $OUT/logs
run() { # name timeout env... cmd
  local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/logs/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/logs/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/logs/$name.log | head -5
}
run gpu_prefill 150 build-gpu/tests/test_gpu_prefill
grep -E "^prefill|worst" $OUT/logs/gpu_prefill.log | paste - - | cut -c1-220
run forward_quick 150 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
run gpu_prefill_s5 150 MOERT_PREFILL_STAGES=5 MOERT_PREFILL_T=256 build-gpu/tests/test_gpu_prefill
echo "tests done $(( $(date +%s) - t0 )) s"
B=$OUT/bench.jsonl
for r in 1 2; do
for v in "s4:X=0" "s5:MOERT_PREFILL_STAGES=5"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name r$r" >> $B
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 16,32,64,128,256,512 --json >> $B 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage prefill --model qwen3-30b-a3b --tokens 1024,8192 --json >> $B 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage forward --model mixtral-8x7b --tokens 256,512 --json >> $B 2>&1
done
done
for v in "rule:X=0" "p1f1:MOERT_PREFILL_PERSISTENT=1 MOERT_PREFILL_FUSED_GU=1 MOERT_PREFILL_ORDER=1" "p0f1:MOERT_PREFILL_PERSISTENT=0 MOERT_PREFILL_FUSED_GU=1 MOERT_PREFILL_ORDER=1"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name" >> $B
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage prefill --model qwen3-235b-a22b --tokens 4096,16384 --json >> $B 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage prefill --model deepseek-v3 --tokens 8192 --json >> $B 2>&1
done
python3 -c "
import json,collections
cur=''; d=collections.OrderedDict()
for l in open('$B'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault((r['model'][:10],r['T']), []).append('%s:%.1f(%.3f)'%(cur, r['us'], r.get('ratio',0)))
for k,v in d.items(): print(k, ' '.join(v))
"
echo "bench done $(( $(date +%s) - t0 )) s"
timeout 150 ncu --clock-control none --set detailed -k regex:"moert_prefill_gemm|moert_combine" --launch-skip 3 --launch-count 3 \
    build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/logs/ncu-detailed.txt 2>&1
echo "ncu rc=$? $(( $(date +%s) - t0 )) s"
grep -E "^  moert|Duration|Compute \(SM\) Throughput|L2 Cache Throughput|DRAM Throughput|L2 Hit|Issue Slots Busy|Registers Per" $OUT/logs/ncu-detailed.txt | head -40
echo "total $(( $(date +%s) - t0 )) s"
