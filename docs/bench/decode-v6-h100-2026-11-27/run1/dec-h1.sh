#!/usr/bin/env bash
# decode v6 call 1: bench new vs old (HEAD build) and the env variants, ncu T=1/8, GPU tests
set -u
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
B=build-gpu-dec; O=build-gpu-dec-old; M=qwen3-30b-a3b; TS=1,2,4,8,16
mkdir -p $OUT/logs
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv > $OUT/logs/smi.txt 2>&1
bench() { # tag, binary, tokens, env...
  local tag=$1 bin=$2 ts=$3; shift 3
  env "$@" $bin/moert bench --backend cuda --stage forward --model $M --tokens $ts --json > $OUT/logs/b-$tag.jsonl 2>&1
  echo "[$(el)s] $tag: $(python3 -c "
import json,sys
print(' '.join('%d:%.2f/%.3f'%(r['T'],r['us'],r['ratio']) for r in map(json.loads,(l for l in open('$OUT/logs/b-$tag.jsonl') if l.startswith('{')))))")"
}
bench new   $B 1,2,4,8,16,32,64,128,256,512
bench old   $O $TS
bench d64off $B $TS MOERT_CUDA_DOWN64=0
bench d64on  $B $TS MOERT_CUDA_DOWN64=1
bench nosplit $B $TS MOERT_CUDA_COMBINE_SPLIT=0
bench old2  $O $TS
bench new2  $B $TS
for c in route quick forward; do
  left=$(( 270 - $(el) )); [ $left -lt 20 ] && { echo "no time for $c"; continue; }
  CK_RUN_CASE=$c timeout $left $B/tests/test_gpu_forward > $OUT/logs/t-$c.log 2>&1; rc=$?
  echo "[$(el)s] $c rc=$rc $(grep -E 'Checks' $OUT/logs/t-$c.log)"; grep -E ":F:|:E:" $OUT/logs/t-$c.log | head -5
done
for bt in "$B 1" "$O 1" "$B 8"; do set -- $bt; b=$1; T=$2
  left=$(( 292 - $(el) )); [ $left -lt 15 ] && { echo "no time for ncu $b $T"; continue; }
  timeout $left ncu --clock-control none --metrics gpu__time_duration.sum -k regex:moert --launch-count 12 --csv $b/moert bench --backend cuda --stage forward --model $M --tokens $T --iters 1 --json > $OUT/logs/ncu-$b-t$T.csv 2>/dev/null
  python3 -c "
import csv
rows=[r for r in csv.reader(l for l in open('$OUT/logs/ncu-$b-t$T.csv') if l.startswith('\"'))]
h=rows[0]; ki=h.index('Kernel Name'); vi=h.index('Metric Value')
print('$b T=$T', [(r[ki][:22], r[vi]) for r in rows[1:]][-4:])
" 2>&1 | tail -1
done
echo "[$(el)s] ncu done"
tar -C $OUT -czf $OUT/logs.tgz logs && rm -rf $OUT/logs
echo "total $(el) s"
