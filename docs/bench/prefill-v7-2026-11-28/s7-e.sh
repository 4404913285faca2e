#!/usr/bin/env bash
# session 7, call 5 (record, tree 87e8d4a): GPU tests; the prefill record with the torch
# peers (tools/bench-prefill.sh); the decode record with the peers and the 48-layer step
# (tools/bench-gpu.sh); the sm80 kernel on this card, base (03b14c0) vs new, MOERT_PREFILL_SM80=1
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
ROOT=$OUT
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader > $ROOT/machine.txt
date -u >> $ROOT/machine.txt; cat $ROOT/machine.txt
mkdir -p $ROOT/logs
run() { # name timeout env... cmd
  local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $ROOT/logs/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $ROOT/logs/$name.log | tail -1)"
  grep -E ":F:|:E:" $ROOT/logs/$name.log | head -5
  return $rc
}
run gpu_prefill 100 build-gpu/tests/test_gpu_prefill
run forward_quick 100 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
run reliability 100 build-gpu/tests/test_gpu_reliability
echo "tests done $(( $(date +%s) - t0 )) s"
OUT=$ROOT/prefill PEERS_TIMEOUT=150 PREFILL_MODELS="qwen3-30b-a3b qwen3-235b-a22b:4096,16384 deepseek-v3:8192 mixtral-8x7b:4096" \
  timeout 280 tools/bench-prefill.sh build-gpu .device/torch_peers.py > $ROOT/logs/bench-prefill.log 2>&1
echo "prefill record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$ROOT/prefill/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.1f us %.1f TF x%.2f dense %.2f peer %s' % (r['us'], r.get('tflops',0), r.get('ratio',0), r.get('ratio_dense',0), r.get('peer_torch_grouped_mm_us','')))
" 2>&1 | head -20
OUT=$ROOT/decode PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm \
  timeout 240 tools/bench-gpu.sh build-gpu .device/torch_peers.py > $ROOT/logs/bench-decode.log 2>&1
echo "decode record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$ROOT/decode/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.2f us x%.3f peer %s' % (r['us'], r.get('ratio',0), r.get('peer_torch_grouped_mm_us','')))
" 2>&1 | head -40
tail -3 $ROOT/decode/run48.txt
B=$ROOT/sm80.jsonl
for r in 1 2; do for v in base new; do
  bin=build-gpu/moert; [ $v = base ] && bin=build-base/moert
  echo "# $v r$r" >> $B
  MOERT_PREFILL_SM80=1 timeout 60 $bin bench --backend cuda --stage prefill --model qwen3-30b-a3b --tokens 2048,8192 --json >> $B 2>&1
done; done
grep -o '^# .*\|"T":[0-9]*,"us":[0-9.]*' $B | paste -sd' ' | sed 's/# /\n# /g'
echo "total $(( $(date +%s) - t0 )) s"
