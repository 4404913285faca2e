#!/usr/bin/env bash
# twelfth session, call 2: stream-K in the sm_90a prefill GEMMs (MOERT_PREFILL_STREAMK, default
# 8 rounds): hang check, tests, dumps, A/B against 0 (off) and 64
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
for T in 1 2 4 8 32 128 512; do
  timeout 40 $B/moert bench --backend cuda --stage forward --tokens $T --iters 5 --json > /dev/null 2>&1 || echo "bench T=$T rc=$?"
done
echo "short benches done $(( $(date +%s) - t0 )) s"
run prefill 100 $B/tests/test_gpu_prefill
grep -E "stream-K|checked" $OUT/prefill.log | tail -16
run quick 120 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for mt in qwen3-30b-a3b:1 qwen3-30b-a3b:8 qwen3-30b-a3b:512 mixtral-8x7b:1 mixtral-8x7b:128; do
  m=${mt%:*} T=${mt#*:}
  echo "$m T=$T L=1 $(timeout 90 $B/moert run --backend cuda --model $m --tokens $T --layers 1 \
    --weight-sets 1 --dump $OUT/dump-$m-$T.bin 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  for cfg in MOERT_PREFILL_STREAMK=0 MOERT_PREFILL_STREAMK=8 MOERT_PREFILL_STREAMK=64; do
    [ $r = 2 ] && [ $cfg = MOERT_PREFILL_STREAMK=64 ] && continue
    echo "# qwen3-30b-a3b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 90 $B/moert bench --backend cuda --stage forward --model qwen3-30b-a3b \
      --json >> $OUT/ab.jsonl 2>&1
    [ $r = 2 ] && continue
    echo "# qwen3-235b-a22b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model qwen3-235b-a22b \
      --tokens 1,8,64,512 --json >> $OUT/ab.jsonl 2>&1
    echo "# mixtral-8x7b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model mixtral-8x7b \
      --tokens 1,8,64,256,512 --json >> $OUT/ab.jsonl 2>&1
  done
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "ab done $(( $(date +%s) - t0 )) s"
run forward 200 CK_RUN_CASE=forward $B/tests/test_gpu_forward
for v in MOERT_PREFILL_STREAMK=0 MOERT_PREFILL_STREAMK=8; do
  echo "48 layers T=32 [$v] $(env $v timeout 90 $B/moert run --backend cuda --layers 48 --tokens 32 2>&1 | grep -E 'step of|graph|floor|rror' | tr '\n' ' ')"
done
echo "total $(( $(date +%s) - t0 )) s"
