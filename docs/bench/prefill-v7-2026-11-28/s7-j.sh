#!/usr/bin/env bash
# session 7, call 10 (record on an H100, tree 19391ee): the decode
# record with the peers and the 48-layer step (tools/bench-gpu.sh), the prefill record with
# the peers (tools/bench-prefill.sh); each folder packed in one tar (the tool's file count)
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
W=/tmp/rec; rm -rf $W; mkdir -p $W/logs
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; cat $OUT/machine.txt
run() { # name timeout env... cmd
  local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $W/logs/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $W/logs/$name.log | tail -1)"
  grep -E ":F:|:E:" $W/logs/$name.log | head -5
}


OUT=$W/decode PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm \
  timeout 240 tools/bench-gpu.sh build-gpu .device/torch_peers.py > $W/logs/bench-decode.log 2>&1
echo "decode record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/decode/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.2f us x%.3f peer %s' % (r['us'], r.get('ratio',0), r.get('peer_torch_grouped_mm_us','')))
" 2>&1 | head -40
tail -3 $W/decode/run48.txt
OUT=$W/prefill PEERS_TIMEOUT=150 PREFILL_MODELS="qwen3-30b-a3b qwen3-235b-a22b:4096,16384 deepseek-v3:8192 mixtral-8x7b:4096" \
  timeout 200 tools/bench-prefill.sh build-gpu .device/torch_peers.py > $W/logs/bench-prefill.log 2>&1
echo "prefill record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/prefill/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.1f us %.1f TF x%.2f dense %.2f peer %s' % (r['us'], r.get('tflops',0), r.get('ratio',0), r.get('ratio_dense',0), r.get('peer_torch_grouped_mm_us','')))
"
grep -E "^mm_tflops|^read_bw" $W/prefill/peers.txt
cd $W && tar cf $OUT/decode.tar decode && tar cf $OUT/prefill.tar prefill && tar cf $OUT/logs.tar logs
echo "total $(( $(date +%s) - t0 )) s"
