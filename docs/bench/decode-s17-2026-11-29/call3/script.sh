#!/usr/bin/env bash
# s17 call 3: the narrow down module built with the K split only where the layer takes it
# (ksplit_due at T=1; build-gpu) against 9dd60b0 (build-prev): prediction Qwen3-30B-A3B T=1
# back to 9dd60b0's ~28.5 us, Mixtral T=1 unchanged (~182).  The K-split hook at other decode
# sizes; ncu of Mixtral T=256 and Qwen3-30B-A3B T=512 (per-kernel durations, DRAM throughput).
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run quick 150 CK_RUN_CASE=quick $B/tests/test_gpu_forward
for m in qwen3-30b-a3b mixtral-8x7b; do for b in build-prev build-gpu; do
  echo "$m T=1 $b $(timeout 90 $b/moert run --backend cuda --model $m --tokens 1 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  B=build-prev ab prev forward qwen3-30b-a3b 1,2,4
  ab new forward qwen3-30b-a3b 1,2,4
  ab ks2 forward qwen3-30b-a3b 1 MOERT_PREFILL_KSPLIT=2
  ab narrow-ks2 forward qwen3-30b-a3b 2,4 MOERT_PREFILL_NARROW=1 MOERT_PREFILL_KSPLIT=2
  B=build-prev ab prev forward mixtral-8x7b 1,2
  ab new forward mixtral-8x7b 1,2
  ab ks2 forward mixtral-8x7b 2 MOERT_PREFILL_KSPLIT=2
  ab new forward qwen3-235b-a22b 1,2
  ab ks2 forward qwen3-235b-a22b 1,2 MOERT_PREFILL_KSPLIT=2
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for mt in mixtral-8x7b:256 qwen3-30b-a3b:512; do m=${mt%:*}; T=${mt#*:}
  timeout 120 $NCU --cache-control none --clock-control none --section SpeedOfLight -k regex:moert_ \
    --launch-skip 40 --launch-count 12 $B/moert bench --backend cuda --stage forward --model $m --tokens $T --iters 5 > $OUT/ncu-$m-t$T.txt 2>&1
  echo "== $m T=$T rc=$?"
  grep -E "^  moert_|Duration|DRAM Throughput|Compute \(SM\)" $OUT/ncu-$m-t$T.txt | sed -E "s/ +/ /g" | cut -c1-90 | head -40
done
echo "total $(( $(date +%s) - t0 )) s"
