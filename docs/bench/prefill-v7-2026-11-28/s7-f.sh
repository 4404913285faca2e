#!/usr/bin/env bash
# session 7, call 6: the prefill record again (call 5's files were left out by the count limit)
set -u
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
PEERS_TIMEOUT=150 PREFILL_MODELS="qwen3-30b-a3b qwen3-235b-a22b:4096,16384 deepseek-v3:8192 mixtral-8x7b:4096" \
  timeout 280 tools/bench-prefill.sh build-gpu .device/torch_peers.py > $OUT/bench-prefill.log 2>&1
echo "rc=$?"
python3 -c "
import json
for l in open('$OUT/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.1f us %.1f TF x%.2f dense %.2f peer %s' % (r['us'], r.get('tflops',0), r.get('ratio',0), r.get('ratio_dense',0), r.get('peer_torch_grouped_mm_us','')))
"
grep -E "^mm_tflops|^read_bw" $OUT/peers.txt
