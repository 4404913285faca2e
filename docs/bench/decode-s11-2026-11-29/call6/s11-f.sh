#!/usr/bin/env bash
# eleventh session, call 6: MOERT_EARLY with its launch rule (down GEMM by PDL only with work
# for half of the SMs; narrow tiles without it): tests, the v12 record with the torch peer, A/B
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
B=build-gpu
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks|ERROR SUMMARY' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run quick 120 CK_RUN_CASE=quick $B/tests/test_gpu_forward
run prefill 100 $B/tests/test_gpu_prefill
echo "T=1 L=1 $(timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b --tokens 1 --layers 1 \
  --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
echo "mixtral T=1 L=1 $(timeout 60 $B/moert run --backend cuda --model mixtral-8x7b --tokens 1 --layers 1 \
  --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
mkdir -p $OUT/rec
OUT=$OUT/rec PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm \
  bash tools/bench-gpu.sh build-gpu .device/torch_peers.py > $OUT/rec/stdout.txt 2>&1
echo "record t=$(( $(date +%s) - t0 ))"; grep -E "step of|graph|floor" $OUT/rec/run48.txt
for r in 1 2; do
  for cfg in MOERT_X=1 MOERT_PREFILL_EARLY=0; do
    echo "# qwen3-30b-a3b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model qwen3-30b-a3b \
      --tokens 1,2,32 --json >> $OUT/ab.jsonl 2>&1
    echo "# mixtral-8x7b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model mixtral-8x7b \
      --tokens 1,2,4 --json >> $OUT/ab.jsonl 2>&1
    echo "# qwen3-235b-a22b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 $B/moert bench --backend cuda --stage forward --model qwen3-235b-a22b \
      --tokens 1,2 --json >> $OUT/ab.jsonl 2>&1
  done
done
python3 tools/ab-table.py $OUT/ab.jsonl
python3 - $OUT/rec/bench.jsonl <<'PY'
import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l); print(r['model'][:14], r['T'], round(r['us'],2), r['ratio'], r.get('peer_torch_grouped_mm_us',''))
PY
echo "total $(( $(date +%s) - t0 )) s"
