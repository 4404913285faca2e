#!/usr/bin/env bash
# decode v6 call 2: final tree (route_plan small + PDL, combine split, down prefetch):
# bench new vs old (HEAD build) and prefetch off, then the GPU tests
set -u
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
B=build-gpu-dec; O=build-gpu-dec-old; M=qwen3-30b-a3b; TS=1,2,4,8,16
mkdir -p $OUT/logs
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,temperature.gpu --format=csv > $OUT/logs/smi.txt 2>&1
bench() { # tag, binary, tokens, env...
  local tag=$1 bin=$2 ts=$3; shift 3
  env "$@" $bin/moert bench --backend cuda --stage forward --model $M --tokens $ts --json > $OUT/logs/b-$tag.jsonl 2>&1
  echo "[$(el)s] $tag: $(python3 -c "
import json,sys
print(' '.join('%d:%.2f/%.3f'%(r['T'],r['us'],r['ratio']) for r in map(json.loads,(l for l in open('$OUT/logs/b-$tag.jsonl') if l.startswith('{')))))")"
}
bench new   $B 1,2,4,8,16,32,64,128,256,512
bench old   $O $TS
bench pfoff $B 1,2,4 MOERT_CUDA_PREFETCH_DOWN=0
bench new2  $B 1,2,4
bench pfoff2 $B 1,2,4 MOERT_CUDA_PREFETCH_DOWN=0
bench old2  $O 1,2,4
for c in route quick forward; do
  left=$(( 250 - $(el) )); [ $left -lt 20 ] && { echo "no time for $c"; continue; }
  CK_RUN_CASE=$c timeout $left $B/tests/test_gpu_forward > $OUT/logs/t-$c.log 2>&1; rc=$?
  echo "[$(el)s] $c rc=$rc $(grep -E 'Checks' $OUT/logs/t-$c.log)"; grep -E ":F:|:E:" $OUT/logs/t-$c.log | head -5
done
for p in test_gpu_reliability test_gpu_prefill; do
  left=$(( 262 - $(el) )); [ $left -lt 8 ] && { echo "no time for $p"; continue; }
  timeout $left $B/tests/$p > $OUT/logs/$p.log 2>&1; rc=$?
  echo "[$(el)s] $p rc=$rc $(grep -E 'Checks' $OUT/logs/$p.log)"; grep -E ":F:|:E:" $OUT/logs/$p.log | head -5
done
tar -C $OUT -czf $OUT/logs.tgz logs && rm -rf $OUT/logs
echo "total $(el) s"
