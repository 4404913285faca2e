#!/usr/bin/env bash
# s16 call 3: where Mixtral-8x7B and Qwen3-235B-A22B lose at T=1-4: per-kernel ncu durations
# and DRAM throughput, and the paths' A/B (main 9dd60b0)
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for m in mixtral-8x7b qwen3-235b-a22b; do for T in 1 4; do
  timeout 100 $NCU --cache-control none --clock-control none --section SpeedOfLight -k regex:moert_ \
    --launch-skip 40 --launch-count 10 $B/moert bench --backend cuda --stage forward --model $m --tokens $T --iters 5 > $OUT/ncu-$m-t$T.txt 2>&1
  echo "== $m T=$T rc=$?"
  grep -E "^  moert_|Duration|DRAM Throughput|Grid Size" $OUT/ncu-$m-t$T.txt | sed -E "s/ +/ /g" | cut -c1-100 | head -24
done; done
echo "ncu done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  for m in mixtral-8x7b qwen3-235b-a22b; do
    ab main forward $m 1,2,4
    ab narrow forward $m 1,2,4 MOERT_PREFILL_NARROW=1
    ab layer forward $m 1,2,4 MOERT_PREFILL_LAYER64=1
    ab decode forward $m 1,2,4 MOERT_CUDA_PREFILL=0
    ab skip4 forward $m 1,2,4 MOERT_BENCH_SKIP=4
  done
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "total $(( $(date +%s) - t0 )) s"
