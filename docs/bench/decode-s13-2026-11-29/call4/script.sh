#!/usr/bin/env bash
# Call 4: MOERT_EPI_ASYNC, the 128-row down GEMM's tile stored from a staging buffer by
# producer warps 1-3 while the consumers go on (3 stages instead of 4).  Prediction (call 3's
# ncu: the down GEMM at 77 % SM busy against the gate/up's 89 %, its K = 768 only 12 steps an
# item): the down GEMM at T=8192 349 -> ~315 us, the layer 1070 -> ~1035 us (578 -> ~597
# TFLOP/s); Mixtral T=256-1024 (K = 14336) unchanged.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
for T in 1024 8192; do  # a hang shows first here
  timeout 40 $B/moert bench --backend cuda --stage prefill --tokens $T --iters 5 --json > /dev/null 2>&1 || echo "bench T=$T rc=$?"
done
timeout 40 $B/moert bench --backend cuda --stage forward --model mixtral-8x7b --tokens 512 --iters 5 --json > /dev/null 2>&1 || echo "bench mixtral rc=$?"
run prefill 150 $B/tests/test_gpu_prefill
grep -E "^prefill T=" $OUT/prefill.log | head -20
run quick 100 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for m in "qwen3-30b-a3b 2048" "qwen3-30b-a3b 8192" "mixtral-8x7b 512"; do set -- $m
  for v in 0 1; do
    echo "$1 T=$2 async=$v $(MOERT_PREFILL_EPI_ASYNC=$v timeout 60 $B/moert run --backend cuda --model $1 \
      --tokens $2 --layers 1 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
  done
done
echo "tests done $(( $(date +%s) - t0 )) s"
b() { local tag=$1 stage=$2 model=$3 toks=$4; shift 4
  echo "# $model | $tag | $r" >> $OUT/ab.jsonl
  env "$@" timeout 90 $B/moert bench --backend cuda --stage $stage --model $model --tokens $toks \
    --json >> $OUT/ab.jsonl 2>&1; }
for r in 1 2; do
  for v in 1 0; do
    b async$v prefill qwen3-30b-a3b 1024,2048,4096,8192,16384 MOERT_PREFILL_EPI_ASYNC=$v
    b async$v forward mixtral-8x7b 256,512,1024 MOERT_PREFILL_EPI_ASYNC=$v
    b async$v forward qwen3-235b-a22b 512,2048 MOERT_PREFILL_EPI_ASYNC=$v
  done
  echo "round $r done $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl
/usr/local/cuda/bin/ncu --cache-control none --clock-control none --section SpeedOfLight \
  -k regex:moert_prefill_gemm --launch-skip 8 --launch-count 2 \
  $B/moert bench --backend cuda --stage prefill --tokens 8192 --iters 3 > $OUT/ncu-8192.txt 2>&1
grep -E "^  moert|Duration|SM Busy|Compute \(SM\)|L2 Cache Throughput" $OUT/ncu-8192.txt
run forward 170 CK_RUN_CASE=forward $B/tests/test_gpu_forward
echo "total $(( $(date +%s) - t0 )) s"
