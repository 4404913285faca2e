#!/usr/bin/env bash
# Session 20, call 3: the 128-row down GEMM's K split by default where ksplit128_due (the
# module built with it only where a forward up to max_tokens takes it: ksplit128_built);
# MOERT_PREFILL_KSPLIT128=0 the old path.  Quick forward cases, the bits (=1 the same as the
# default, =0 close), an A/B of two rounds, then the v21 records with the peers: the decode
# one (tools/bench-gpu.sh: torch, Triton, the 48-layer step) and the prefill one
# (tools/bench-prefill.sh), each folder packed in one tar (the tool's file count).
# Prediction: Mixtral-8x7B T=512 ~1.4 % faster (call 1), other shapes unchanged.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
CK_RUN_CASE=quick run quick 120 $B/tests/test_gpu_forward
for v in "" 0 1; do
  echo "mixtral T=512 KSPLIT128=$v $(MOERT_PREFILL_KSPLIT128=$v timeout 120 $B/moert run --backend cuda --model mixtral-8x7b --tokens 512 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
echo "qwen30b T=2048 $(timeout 120 $B/moert run --backend cuda --model qwen3-30b-a3b --tokens 2048 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
echo "checks $(( $(date +%s) - t0 )) s"
for r in 1 2; do for v in 1 0; do
  ab k128-$v forward mixtral-8x7b 256,512,1024 MOERT_PREFILL_KSPLIT128=$v
  ab k128-$v prefill mixtral-8x7b 2048 MOERT_PREFILL_KSPLIT128=$v
  ab k128-$v forward qwen3-30b-a3b 1,512 MOERT_PREFILL_KSPLIT128=$v
done; echo "round $r $(( $(date +%s) - t0 )) s"; done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
W=/tmp/rec; rm -rf $W; mkdir -p $W/logs
OUT=$W/decode PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=150 \
  timeout 280 tools/bench-gpu.sh build-gpu .device/torch_peers.py > $W/logs/bench-decode.log 2>&1
echo "decode record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/decode/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.2f us x%.3f torch %s triton %s' % (r['us'], r.get('ratio',0), r.get('peer_torch_grouped_mm_us',''), r.get('peer_triton_fused_moe_us','')))
" 2>&1 | head -40
grep -E "step of|graph:|floor:" $W/decode/run48.txt | head -6
OUT=$W/prefill PEERS_TIMEOUT=150 PREFILL_MODELS="qwen3-30b-a3b qwen3-235b-a22b:2048,8192 deepseek-v3:2048 mixtral-8x7b:2048" \
  timeout 240 tools/bench-prefill.sh build-gpu .device/torch_peers.py > $W/logs/bench-prefill.log 2>&1
echo "prefill record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/prefill/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.1f us %.1f TF x%.2f dense %.2f torch %s triton %s' % (r['us'], r.get('tflops',0), r.get('ratio',0), r.get('ratio_dense',0), r.get('peer_torch_grouped_mm_us',''), r.get('peer_triton_fused_moe_us','')))
" 2>&1
grep -E "^mm_tflops|^read_bw" $W/prefill/peers.txt
cd $W && tar cf $OUT/decode.tar decode && tar cf $OUT/prefill.tar prefill && tar cf $OUT/logs.tar logs
echo "total $(( $(date +%s) - t0 )) s"
