#!/usr/bin/env bash
# eleventh session, call 4: T=1 one-layer checksums; per-kernel durations (ncu) at decode sizes
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
B=build-gpu
for L in 1 2; do for v in MOERT_X=1 MOERT_PREFILL_NARROW=0; do
  echo "qwen3-30b T=1 L=$L [$v] $(env $v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens 1 --layers $L --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for T in 1 2 8 32 512; do
  timeout 100 $NCU --cache-control none --clock-control none --section SpeedOfLight -k regex:moert_ \
    --launch-skip 40 --launch-count 10 $B/moert bench --backend cuda --stage forward --tokens $T --iters 5 > $OUT/ncu-t$T.txt 2>&1
  echo "== T=$T rc=$?"
  grep -E "^  moert_|Duration|DRAM Throughput" $OUT/ncu-t$T.txt | sed -E "s/ +/ /g" | cut -c1-90 | head -30
done
echo "total $(( $(date +%s) - t0 )) s"
