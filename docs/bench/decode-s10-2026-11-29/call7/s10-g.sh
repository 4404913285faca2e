#!/usr/bin/env bash
# session 10, call 7: Qwen3-30B-A3B T=1, split-K (default) against the narrow prefill tiles, three rounds
set -u
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
for r in 1 2 3; do
  for cfg in MOERT_X=1 "MOERT_PREFILL_NARROW=1 MOERT_CUDA_PREFILL=1 MOERT_PREFILL_NARROW_STAGES=8" "MOERT_PREFILL_NARROW=1 MOERT_CUDA_PREFILL=1"; do
    echo "[$cfg] $(env $cfg timeout 30 build-gpu/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 1 --json 2>&1 | grep '^{' | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["us"], r["ratio"])')"
  done
done
