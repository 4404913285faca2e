#!/usr/bin/env bash
# eleventh session, call 5: MOERT_EARLY (down GEMM launched at the gate/up GEMM's start, its
# first weight tiles before its wait): tests under timeouts, checksums, A/B; T=1 dumps
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
# a hang shows first here: one bench line of each T under a short timeout
for T in 1 2 8 32 128 512; do
  timeout 40 $B/moert bench --backend cuda --stage forward --tokens $T --iters 5 --json > /dev/null 2>&1 || echo "bench T=$T rc=$?"
done
echo "short benches done $(( $(date +%s) - t0 )) s"
run quick 120 CK_RUN_CASE=quick $B/tests/test_gpu_forward
run prefill 100 $B/tests/test_gpu_prefill
run forward 200 CK_RUN_CASE=forward $B/tests/test_gpu_forward
for v in MOERT_X=1 MOERT_PREFILL_EARLY=0 MOERT_PREFILL_NARROW=0 MOERT_CUDA_PREFILL=0; do
  echo "T=1 L=1 [$v] $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens 1 --layers 1 --weight-sets 1 --dump $OUT/t1-${v%%=*}.bin 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
for v in MOERT_X=1 MOERT_PREFILL_EARLY=0; do
  echo "T=512 L=2 [$v] $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens 512 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
for r in 1 2; do
  for cfg in MOERT_X=1 MOERT_PREFILL_EARLY=0; do
    echo "# qwen3-30b-a3b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 90 $B/moert bench --backend cuda --stage forward --model qwen3-30b-a3b \
      --json >> $OUT/ab.jsonl 2>&1
    [ $r = 2 ] && continue
    echo "# qwen3-235b-a22b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model qwen3-235b-a22b \
      --tokens 1,8,64,512 --json >> $OUT/ab.jsonl 2>&1
    echo "# mixtral-8x7b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model mixtral-8x7b \
      --tokens 1,8,64,512 --json >> $OUT/ab.jsonl 2>&1
  done
done
python3 tools/ab-table.py $OUT/ab.jsonl
for v in MOERT_X=1 MOERT_PREFILL_EARLY=0; do
  echo "48 layers T=32 [$v] $(env $v timeout 90 $B/moert run --backend cuda --layers 48 --tokens 32 2>&1 | grep -E 'step of|graph|floor|rror' | tr '\n' ' ')"
done
echo "total $(( $(date +%s) - t0 )) s"
