#!/usr/bin/env bash
# s16 call 4: the narrow tiles where the default down GEMM has fewer items than half the SMs,
# the layer kernel where it has half of them or more (build-gpu) against 9dd60b0 (build-prev);
# the GPU suites on the new rules; then the record with the peers.
set -u
t0=$(date +%s)
. tools/device-env.sh
run forward 400 build-gpu/tests/test_gpu_forward
run prefill 200 build-gpu/tests/test_gpu_prefill
for m in mixtral-8x7b; do for T in 1 2 3 4; do for b in build-prev build-gpu; do
  echo "$m T=$T $b $(timeout 90 $b/moert run --backend cuda --model $m --tokens $T --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  B=build-prev ab prev forward mixtral-8x7b 1,2,3,4,8
  B=build-gpu ab new forward mixtral-8x7b 1,2,3,4,8
  B=build-prev ab prev forward qwen3-235b-a22b 1,2,4
  B=build-gpu ab new forward qwen3-235b-a22b 1,2,4
  B=build-prev ab prev forward qwen3-30b-a3b 1,2,4
  B=build-gpu ab new forward qwen3-30b-a3b 1,2,4
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl
PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=150 \
  tools/bench-gpu.sh build-gpu .device/torch_peers.py > $OUT/bench-gpu.txt 2>&1
echo "bench rc=$? $(( $(date +%s) - t0 )) s"
tail -45 $OUT/bench-gpu.txt
ls $OUT
echo "total $(( $(date +%s) - t0 )) s"
