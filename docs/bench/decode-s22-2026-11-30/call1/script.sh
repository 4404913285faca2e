#!/usr/bin/env bash
# For the twenty-second session's first device call (written at the end of the twenty-first).
# Build main into build-gpu here (install Check first: apt-get install -y check, or the GPU
# suites are not built; cmake --build build-gpu -j2; tools/build-trace.sh build-gpu), copy
# ../shared/peers/torch_peers.py into .device/, carry ["build-gpu", ".device"], run this
# (about 8 minutes).
# 1. The records with the clocks (moert bench's sm_mhz_min/max, power_w_max, clock_events,
#    315f99a) and the Triton prefill peer at T=1024-8192 (issue 5 asks 1.2x from T=1024):
#    decode (torch, Triton on all three models, the 48-layer step) and prefill.
# 2. Which settings lower Mixtral-8x7B T=512's power at the 700 W cap (s21 calls 5-7: SM
#    1350-1635 MHz there): A/B two rounds of the default against the L2 fetch of 128 bytes or
#    none, the two gate/up wgmmas, 3 stages, the 192-row tiles; each line carries its clocks.
#    Prediction: any setting that moves fewer bytes through L2 runs at a higher clock; whether
#    that buys time is the question.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
W=/tmp/rec; rm -rf $W; mkdir -p $W/logs
OUT=$W/decode PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=110 \
  timeout 420 tools/bench-gpu.sh build-gpu .device/torch_peers.py > $W/logs/bench-decode.log 2>&1
echo "decode record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/decode/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.2f us x%.3f triton %s sm %s-%s %s' % (r['us'], r.get('ratio',0), r.get('peer_triton_fused_moe_us',''), r.get('sm_mhz_min'), r.get('sm_mhz_max'), r.get('clock_events')))
" 2>&1 | head -40
grep -E "step of|graph:|floor:" $W/decode/run48.txt | head -6
OUT=$W/prefill PEERS_TIMEOUT=120 PREFILL_MODELS="qwen3-30b-a3b qwen3-235b-a22b:2048,8192 deepseek-v3:2048,4096 mixtral-8x7b:2048" \
  timeout 200 tools/bench-prefill.sh build-gpu .device/torch_peers.py > $W/logs/bench-prefill.log 2>&1
echo "prefill record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/prefill/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.1f us %.1f TF dense %.2f triton %s sm %s-%s %s' % (r['us'], r.get('tflops',0), r.get('ratio_dense',0), r.get('peer_triton_fused_moe_us',''), r.get('sm_mhz_min'), r.get('sm_mhz_max'), r.get('clock_events')))
" 2>&1
grep -E "^mm_tflops|^read_bw" $W/prefill/peers.txt
(cd $W && tar cf $OUT/decode.tar decode && tar cf $OUT/prefill.tar prefill && tar cf $OUT/logs.tar logs)
export AB_TIMEOUT=60
for r in 1 2; do
  ab mix-default forward mixtral-8x7b 512
  ab mix-l2-128 forward mixtral-8x7b 512 MOERT_PREFILL_L2_PROMOTION=128
  ab mix-l2-0 forward mixtral-8x7b 512 MOERT_PREFILL_L2_PROMOTION=0
  ab mix-2wgmma forward mixtral-8x7b 512 MOERT_PREFILL_FUSED_GU=0
  ab mix-3stages forward mixtral-8x7b 512 MOERT_PREFILL_STAGES=3
  ab mix-tall forward mixtral-8x7b 512 MOERT_PREFILL_TALL=1
done
python3 -c "
import json
tag = None
for l in open('$OUT/ab.jsonl'):
    if l.startswith('#'): tag = l.split('|')[1].strip(); continue
    if l.startswith('{'):
        r=json.loads(l); print(tag, r['T'], r['us'], r['stream_us'], r.get('sm_mhz_min'), r.get('sm_mhz_max'), r.get('power_w_max'), r.get('clock_events'))
"
echo "total $(( $(date +%s) - t0 )) s"
