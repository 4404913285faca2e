#!/usr/bin/env bash
# session 10, call 2: moert run checksums (hidden 4096 wrong/NaN in call 1) under each hook
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name --format=csv,noheader
B=${B:-build-order}
for a in "mixtral-8x7b 128" "qwen3-235b-a22b 256" "qwen3-235b-a22b 512" "mixtral-8x7b 512" "qwen3-30b-a3b 512"; do
  set -- $a
  for L in 1 2; do
    for v in MOERT_X=1 MOERT_X=2 MOERT_PREFILL_ORDER=0 MOERT_PREFILL_ORDER=1 MOERT_CUDA_ROUTE_TILES=0 \
             "MOERT_CUDA_PREFILL_PDL=0 MOERT_CUDA_PDL=0" MOERT_CUDA_PREFILL=0 MOERT_PREFILL_PERSISTENT=0 MOERT_PREFILL_BM=128; do
      echo "$1 T=$2 L=$L [$v] $(env $v timeout 60 $B/moert run --backend cuda --model $1 --tokens $2 \
        --layers $L --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
    done
  done
  echo "t=$(( $(date +%s) - t0 ))"
  [ $(( $(date +%s) - t0 )) -gt 400 ] && break
done
echo "total $(( $(date +%s) - t0 )) s"
