#!/usr/bin/env bash
# Call 6: MOERT_CLUSTER_A, the 128-row down GEMM in clusters of two CTAs (one row tile, two
# column tiles) sharing their A tile by TMA multicast.  Prediction (calls 3-5: the down GEMM
# at T=8192 fed at 78 % of the L2 throughput, 8 % slower with 3 stages than 4, so bound by
# bytes to the SM; A is 16 of a stage's 48 KB): the down GEMM 349 -> ~320 us, the layer
# ~3 % faster at T >= 2048; nothing at 64-row sizes; Qwen3-235B T=2048 (one CTA a tile) too.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
for T in 1024 8192; do  # a hang shows first here
  timeout 40 $B/moert bench --backend cuda --stage prefill --tokens $T --iters 5 --json 2>&1 | grep -E '"us"' | cut -c1-90 || echo "bench T=$T rc=$?"
done
run prefill 150 $B/tests/test_gpu_prefill
grep -E "^prefill T=" $OUT/prefill.log | head -20
run quick 100 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for m in "qwen3-30b-a3b 2048" "qwen3-30b-a3b 8192" "qwen3-235b-a22b 2048"; do set -- $m
  for v in 0 1; do
    echo "$1 T=$2 cluster=$v $(MOERT_PREFILL_CLUSTER_A=$v timeout 60 $B/moert run --backend cuda --model $1 \
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
    b cl$v prefill qwen3-30b-a3b 1024,2048,4096,8192,16384 MOERT_PREFILL_CLUSTER_A=$v
    b cl$v forward qwen3-235b-a22b 512,2048 MOERT_PREFILL_CLUSTER_A=$v
  done
  echo "round $r done $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl
for v in 1 0; do
  MOERT_PREFILL_CLUSTER_A=$v /usr/local/cuda/bin/ncu --cache-control none --clock-control none --section SpeedOfLight \
    -k regex:moert_prefill_gemm --launch-skip 8 --launch-count 2 \
    $B/moert bench --backend cuda --stage prefill --tokens 8192 --iters 3 > $OUT/ncu-8192-cl$v.txt 2>&1
  echo "cluster=$v"; grep -E "Duration|SM Frequency|Compute \(SM\)|L2 Cache Throughput" $OUT/ncu-8192-cl$v.txt | tr -s ' ' | paste - - - -
done
run forward 170 CK_RUN_CASE=forward $B/tests/test_gpu_forward
echo "total $(( $(date +%s) - t0 )) s"
