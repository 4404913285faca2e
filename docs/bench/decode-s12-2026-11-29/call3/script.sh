#!/usr/bin/env bash
# twelfth session, call 3: stream-K only below sk_pct % of the SMs in items (default 50);
# same-call A/B: the old tree (build-old = 8a7aeb3), new with 0 / 50 / 200
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
B=build-gpu
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks|ERROR SUMMARY' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
for T in 1 2 4 8; do
  timeout 40 $B/moert bench --backend cuda --stage forward --model mixtral-8x7b --tokens $T --iters 5 --json > /dev/null 2>&1 || echo "bench T=$T rc=$?"
done
run quick 120 CK_RUN_CASE=quick $B/tests/test_gpu_forward
echo "tests done $(( $(date +%s) - t0 )) s"
b() { local tag=$1 bin=$2 model=$3 toks=$4; shift 4
  echo "# $model | $tag | $r" >> $OUT/ab.jsonl
  env "$@" timeout 60 $bin/moert bench --backend cuda --stage forward --model $model --tokens $toks --json >> $OUT/ab.jsonl 2>&1; }
for r in 1 2; do
  b old build-old qwen3-30b-a3b 1,2,4,8,64 MOERT_X=1
  b new0 $B qwen3-30b-a3b 1,2,4,8,64 MOERT_PREFILL_STREAMK=0
  b new50 $B qwen3-30b-a3b 1,2,4,8,64 MOERT_X=1
  b old build-old mixtral-8x7b 1,2,4,8 MOERT_X=1
  b new0 $B mixtral-8x7b 1,2,4,8 MOERT_PREFILL_STREAMK=0
  b new50 $B mixtral-8x7b 1,2,4,8 MOERT_X=1
  [ $r = 2 ] && continue
  b new200 $B mixtral-8x7b 1,2,4,8 MOERT_PREFILL_STREAMK=200
  b old build-old qwen3-235b-a22b 1,2,4 MOERT_X=1
  b new50 $B qwen3-235b-a22b 1,2,4 MOERT_X=1
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
