#!/usr/bin/env bash
# s18 call 8: the fused gate/up wgmma at every hidden size (main after call 7): the prefill
# suite (new cases epi 14-15), the same bits with the hook off, then the record with the peers
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
run prefill 240 $B/tests/test_gpu_prefill
for m in mixtral-8x7b:512 qwen3-235b-a22b:2048 deepseek-v3:2048; do for v in 0 1; do
  echo "${m%:*} T=${m#*:} FUSED_GU=$v $(MOERT_PREFILL_FUSED_GU=$v timeout 90 $B/moert run --backend cuda --model ${m%:*} --tokens ${m#*:} --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "checks $(( $(date +%s) - t0 )) s"
PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=150 \
  tools/bench-gpu.sh build-gpu .device/torch_peers.py > $OUT/bench-gpu.txt 2>&1
echo "bench rc=$? $(( $(date +%s) - t0 )) s"
grep -E "step of|graph:|floor:" $OUT/bench-gpu.txt
grep -E '"model":"mixtral' $OUT/bench-gpu.txt | grep -E '"T":(256|512)' | cut -c1-150
rm -f $OUT/triton.err $OUT/triton.jsonl $OUT/moert+triton.jsonl $OUT/peers.txt
echo "total $(( $(date +%s) - t0 )) s"
