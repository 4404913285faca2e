#!/usr/bin/env bash
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for mt in qwen3-30b-a3b:1 qwen3-30b-a3b:2 qwen3-235b-a22b:1; do m=${mt%:*}; T=${mt#*:}
  timeout 100 $NCU --cache-control none --clock-control none --section SpeedOfLight -k regex:moert_ \
    --launch-skip 40 --launch-count 10 $B/moert bench --backend cuda --stage forward --model $m --tokens $T --iters 5 > $OUT/ncu-$m-t$T.txt 2>&1
  echo "== $m T=$T rc=$?"
  grep -E "^  moert_|Duration|DRAM Throughput" $OUT/ncu-$m-t$T.txt | sed -E "s/ +/ /g" | cut -c1-90 | head -24
done
echo "ncu done $(( $(date +%s) - t0 )) s"
PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=150 \
  tools/bench-gpu.sh build-gpu .device/torch_peers.py > $OUT/bench-gpu.txt 2>&1
echo "bench rc=$? $(( $(date +%s) - t0 )) s"
grep -E "step of|graph:|floor:" $OUT/bench-gpu.txt
rm -f $OUT/triton.err $OUT/triton.jsonl $OUT/moert+triton.jsonl $OUT/peers.txt
echo "total $(( $(date +%s) - t0 )) s"
