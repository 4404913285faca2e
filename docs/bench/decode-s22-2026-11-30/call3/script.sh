#!/usr/bin/env bash
# s22 call 3: the records with the new methods - the Triton peer routing moert bench's logits
# (the same experts and rows per expert), the prefill stage timed as a graph of 4 layers back
# to back (per-call time as stream_us), the power as NVML's instant reading
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
W=/tmp/rec; rm -rf $W; mkdir -p $W/logs
OUT=$W/decode PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=110 \
  timeout 420 tools/bench-gpu.sh build-gpu .device/torch_peers.py > $W/logs/bench-decode.log 2>&1
echo "decode record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/decode/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.2f us x%.3f touched %s triton %s (%s) sm %s-%s %sW %s' % (r['us'], r.get('ratio',0), r.get('touched'), r.get('peer_triton_fused_moe_us',''), r.get('peer_triton_touched',''), r.get('sm_mhz_min'), r.get('sm_mhz_max'), r.get('power_w_max'), r.get('clock_events')))
" 2>&1 | head -40
grep -E "step of|graph:|floor:" $W/decode/run48.txt | head -6
OUT=$W/prefill PEERS_TIMEOUT=120 PREFILL_MODELS="qwen3-30b-a3b qwen3-235b-a22b:2048,8192 deepseek-v3:2048,4096 mixtral-8x7b:2048" \
  timeout 260 tools/bench-prefill.sh build-gpu .device/torch_peers.py > $W/logs/bench-prefill.log 2>&1
echo "prefill record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/prefill/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.1f us (per call %s) %.1f TF dense %.2f x%.3f triton %s (%s) sm %s-%s %sW %s' % (r['us'], r.get('stream_us'), r.get('tflops',0), r.get('ratio_dense',0), r.get('ratio',0), r.get('peer_triton_fused_moe_us',''), r.get('peer_triton_touched',''), r.get('sm_mhz_min'), r.get('sm_mhz_max'), r.get('power_w_max'), r.get('clock_events')))
" 2>&1
grep -E "^mm_tflops|^read_bw" $W/prefill/peers.txt
(cd $W && tar cf $OUT/decode.tar decode && tar cf $OUT/prefill.tar prefill && tar cf $OUT/logs.tar logs)
echo "total $(( $(date +%s) - t0 )) s"
