#!/usr/bin/env bash
# s17 call 5: the narrow gate/up widths by rule (build-gpu, 93fffce) against 4978ae3 (build-prev):
# the forward suite, then A/B at T=1-4 of the three models, the narrow tiles at T=2 (hook), and
# the record with the peers.  Prediction: Mixtral T=1 ~172 against ~182, 235B T=1 ~80.6 against
# ~84.5, Qwen3-30B T=1 ~0.2 us faster, T>=2 equal.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run forward 330 $B/tests/test_gpu_forward
for m in qwen3-235b-a22b; do for b in build-prev build-gpu; do
  echo "$m T=1 $b $(timeout 90 $b/moert run --backend cuda --model $m --tokens 1 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  B=build-prev ab prev forward qwen3-30b-a3b 1,2,4
  ab new forward qwen3-30b-a3b 1,2,4
  ab narrow forward qwen3-30b-a3b 2 MOERT_PREFILL_NARROW=1
  B=build-prev ab prev forward qwen3-235b-a22b 1,2,4
  ab new forward qwen3-235b-a22b 1,2,4
  ab narrow forward qwen3-235b-a22b 2,4 MOERT_PREFILL_NARROW=1
  B=build-prev ab prev forward mixtral-8x7b 1,2,4
  ab new forward mixtral-8x7b 1,2,4
  ab narrow forward mixtral-8x7b 4 MOERT_PREFILL_NARROW=1
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=150 \
  tools/bench-gpu.sh build-gpu .device/torch_peers.py > $OUT/bench-gpu.txt 2>&1
echo "bench rc=$? $(( $(date +%s) - t0 )) s"
grep -E "step of|graph:|floor:" $OUT/bench-gpu.txt
rm -f $OUT/triton.err $OUT/triton.jsonl $OUT/moert+triton.jsonl $OUT/peers.txt
echo "total $(( $(date +%s) - t0 )) s"
