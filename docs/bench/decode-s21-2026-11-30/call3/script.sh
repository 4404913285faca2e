#!/usr/bin/env bash
# Session 21, call 3 (after calls 1-2: the 192-row tiles' default rule passed both suites): the
# decode record (torch peers on Qwen3-30B-A3B; the Triton peer now on all three models at
# T = 1-512; the 48-layer step) and the prefill record (the dense GEMM, torch and Triton peers)
# of main's tree, each folder packed in one tar.  Prediction: decode as v21; prefill
# Qwen3-30B-A3B T=2048 ~7 % faster than v11 (the 192-row tiles); Triton ahead of moert at
# Qwen3-235B-A22B T=32-128 (call 2: 924 / 1077 against 991 / 1136 us).
# (next-session-record.sh of s20 emptied /tmp/rec between the two records: fixed here.)
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
W=/tmp/rec; rm -rf $W; mkdir -p $W/logs
OUT=$W/decode PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=110 \
  timeout 420 tools/bench-gpu.sh build-gpu .device/torch_peers.py > $W/logs/bench-decode.log 2>&1
echo "decode record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/decode/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.2f us x%.3f torch %s triton %s' % (r['us'], r.get('ratio',0), r.get('peer_torch_grouped_mm_us',''), r.get('peer_triton_fused_moe_us','')))
" 2>&1 | head -40
grep -E "step of|graph:|floor:" $W/decode/run48.txt | head -6
OUT=$W/prefill PEERS_TIMEOUT=120 PREFILL_MODELS="qwen3-30b-a3b qwen3-235b-a22b:2048,8192 deepseek-v3:2048,4096 mixtral-8x7b:2048" \
  timeout 150 tools/bench-prefill.sh build-gpu .device/torch_peers.py > $W/logs/bench-prefill.log 2>&1
echo "prefill record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/prefill/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.1f us %.1f TF x%.2f dense %.2f torch %s triton %s' % (r['us'], r.get('tflops',0), r.get('ratio',0), r.get('ratio_dense',0), r.get('peer_torch_grouped_mm_us',''), r.get('peer_triton_fused_moe_us','')))
" 2>&1
grep -E "^mm_tflops|^read_bw" $W/prefill/peers.txt
cd $W && tar cf $OUT/decode.tar decode && tar cf $OUT/prefill.tar prefill && tar cf $OUT/logs.tar logs
echo "total $(( $(date +%s) - t0 )) s"
