#!/usr/bin/env bash
# The twenty-first session's second device call (after next-session.sh): the decode record
# (torch and Triton peers, the 48-layer step) and the prefill record (the dense GEMM, torch and
# Triton peers) of main's tree, as s20 call 3; each folder packed in one tar.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
W=/tmp/rec; rm -rf $W; mkdir -p $W/logs
OUT=$W/decode PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=150 \
  timeout 280 tools/bench-gpu.sh build-gpu .device/torch_peers.py > $W/logs/bench-decode.log 2>&1
echo "decode record rc=$? $(( $(date +%s) - t0 )) s"
grep -E "step of|graph:|floor:" $W/decode/run48.txt | head -6
W=/tmp/rec; rm -rf $W; mkdir -p $W/logs
OUT=$W/prefill PEERS_TIMEOUT=150 PREFILL_MODELS="qwen3-30b-a3b qwen3-235b-a22b:2048,8192 deepseek-v3:2048,4096 mixtral-8x7b:2048" \
  timeout 240 tools/bench-prefill.sh build-gpu .device/torch_peers.py > $W/logs/bench-prefill.log 2>&1
echo "prefill record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/prefill/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.1f us %.1f TF x%.2f dense %.2f torch %s triton %s' % (r['us'], r.get('tflops',0), r.get('ratio',0), r.get('ratio_dense',0), r.get('peer_torch_grouped_mm_us',''), r.get('peer_triton_fused_moe_us','')))
" 2>&1
cd $W && tar cf $OUT/decode.tar decode && tar cf $OUT/prefill.tar prefill && tar cf $OUT/logs.tar logs
echo "total $(( $(date +%s) - t0 )) s"
