#!/usr/bin/env bash
# session 5, final call: the committed tree (two-launch plan, prefill v5 with the hidden-size
# rule): GPU tests, the prefill benchmark with the peers, the decode-size forward bench
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
run() { # name timeout env... cmd
  local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5
}
run gpu_prefill 120 build-gpu/tests/test_gpu_prefill
run forward_quick 120 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
run forward_route 100 CK_RUN_CASE=route build-gpu/tests/test_gpu_forward
PEERS_TIMEOUT=150 PREFILL_MODELS="qwen3-30b-a3b qwen3-235b-a22b:4096,16384 deepseek-v3:8192" \
  timeout 330 tools/bench-prefill.sh build-gpu .device/torch_peers.py > $OUT/bench-prefill.log 2>&1
echo "prefill bench rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$OUT/bench.jsonl'):
    r=json.loads(l); print(r['model'][:14], r['T'], r['us'], r.get('tflops'), r.get('ratio'), r.get('ratio_dense'), r.get('peer_torch_grouped_mm_us'))
"
timeout 60 build-gpu/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 1,32,128,256,512 --json > $OUT/forward.jsonl 2>&1
timeout 60 build-gpu/moert bench --backend cuda --stage forward --model mixtral-8x7b --tokens 192,256,512 --json >> $OUT/forward.jsonl 2>&1
python3 -c "
import json
for l in open('$OUT/forward.jsonl'):
    if l.startswith('{'): r=json.loads(l); print(r['model'][:14], r['T'], r['us'], r.get('ratio'))
"
echo "total $(( $(date +%s) - t0 )) s"
