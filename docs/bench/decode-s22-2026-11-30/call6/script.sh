#!/usr/bin/env bash
# s22 call 6: the Triton prefill peer where no record has it yet - Qwen3-30B-A3B T=16384 and
# 32768 (issue 5 asks 1.2x at every T from 1024), Qwen3-235B-A22B T=2048/8192, Mixtral-8x7B
# T=2048 - with moert's prefill lines (graph-timed, clocks) and the torch peer of the same run
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
W=/tmp/rec2; rm -rf $W; mkdir -p $W
S="qwen3-30b-a3b:16384,32768 qwen3-235b-a22b:2048,8192 mixtral-8x7b:2048"
OUT=$W/prefill PEERS_TIMEOUT=150 PEERS_T=16384,32768 TRITON_TIMEOUT=200 TRITON_MODELS="$S" PREFILL_MODELS="$S" \
  timeout 540 tools/bench-prefill.sh build-gpu .device/torch_peers.py > $W/bench-prefill.log 2>&1
echo "prefill rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/prefill/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.1f us (per call %s) %.1f TF dense %.2f x%.3f triton %s (%s) x%s torch %s sm %s-%s %sW %s' % (r['us'], r.get('stream_us'), r.get('tflops',0), r.get('ratio_dense',0), r.get('ratio',0), r.get('peer_triton_fused_moe_us',''), r.get('peer_triton_touched',''), r.get('speedup_vs_triton',''), r.get('peer_torch_grouped_mm_us',''), r.get('sm_mhz_min'), r.get('sm_mhz_max'), r.get('power_w_max'), r.get('clock_events')))
" 2>&1
grep -E "^mm_tflops|^read_bw" $W/prefill/peers.txt
tail -3 $W/prefill/triton.err
(cd $W && tar cf $OUT/prefill.tar prefill bench-prefill.log)
echo "total $(( $(date +%s) - t0 )) s"
