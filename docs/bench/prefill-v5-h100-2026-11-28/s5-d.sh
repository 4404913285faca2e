#!/usr/bin/env bash
# session 5, call 4: the new prefill defaults (persistent, row tile outer, 128-row gate/up as
# one wgmma, approximate-divide SiLU) against the old ones on every model; the GPU tests
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
run gpu_prefill 150 build-gpu/tests/test_gpu_prefill
run gpu_forward 300 build-gpu/tests/test_gpu_forward
run gpu_prefill_bf 150 MOERT_PREFILL_YPAIR_BF16=1 build-gpu/tests/test_gpu_prefill
run gpu_forward_quick_bf 150 CK_RUN_CASE=quick MOERT_PREFILL_YPAIR_BF16=1 build-gpu/tests/test_gpu_forward
run gpu_forward_fwd_bf 150 CK_RUN_CASE=forward MOERT_PREFILL_YPAIR_BF16=1 build-gpu/tests/test_gpu_forward
OLD128="MOERT_PREFILL_PERSISTENT=0 MOERT_PREFILL_ORDER=0 MOERT_PREFILL_FUSED_GU=0"
OLD64="MOERT_PREFILL_PERSISTENT=1 MOERT_PREFILL_ORDER=0 MOERT_PREFILL_FUSED_GU=0"
B="build-gpu/moert bench --backend cuda --json"
for r in 1 2; do
  for v in new newbf old; do
    e128=""; e64=""; [ $v = old ] && { e128=$OLD128; e64=$OLD64; }
    [ $v = newbf ] && { e128="MOERT_PREFILL_YPAIR_BF16=1"; e64=$e128; }
    echo "# $v r$r" >> $OUT/bench.jsonl
    env $e64 timeout 60 $B --stage prefill --model qwen3-30b-a3b --tokens 1024 >> $OUT/bench.jsonl 2>&1
    env $e128 timeout 90 $B --stage prefill --model qwen3-30b-a3b --tokens 2048,4096,8192,16384,32768 >> $OUT/bench.jsonl 2>&1
    env $e128 timeout 90 $B --stage prefill --model qwen3-235b-a22b --tokens 4096,16384 >> $OUT/bench.jsonl 2>&1
    env $e128 timeout 120 $B --stage prefill --model deepseek-v3 --tokens 8192 >> $OUT/bench.jsonl 2>&1
    env $e64 timeout 60 $B --stage forward --model mixtral-8x7b --tokens 192,256,512 >> $OUT/bench.jsonl 2>&1
    env $e64 timeout 60 $B --stage forward --model qwen3-30b-a3b --tokens 256,512 >> $OUT/bench.jsonl 2>&1
  done
  echo "bench r$r $(( $(date +%s) - t0 )) s"
done
python3 -c "
import json,collections
cur=''; d=collections.OrderedDict()
for l in open('$OUT/bench.jsonl'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault((r['model'][:14], r['T']), []).append('%s:%.1f(%.2f)'%(cur, r['us'], r.get('ratio',0)))
for k,v in d.items(): print(k, ' '.join(v))
"
timeout 100 ncu --clock-control none --section WarpStateStats --section SourceCounters --section SpeedOfLight -k regex:"moert_plan_assign" --launch-skip 2 --launch-count 1 \
    build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/ncu-assign.txt 2>&1
echo "ncu rc=$?"
echo "total $(( $(date +%s) - t0 )) s"
