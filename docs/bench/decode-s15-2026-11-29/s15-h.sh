#!/usr/bin/env bash
# Fifteenth session, call 8: a3d29da (each touched expert's lists by the thread of its first
# pair; the redux arg-max over per-lane sorted lists) against c4ed5e2 (build-prev), then the
# record: tools/bench-gpu.sh (three models x ten T, the torch and Triton peers in the same
# run, the 48-layer step).  Prediction: the same bits; T=1 29.4 -> ~28.8 us (the experts'
# loop ~1400 -> ~300 cycles, the arg-max ~1650 -> ~1200).
set -u
t0=$(date +%s)
. tools/device-env.sh
run prefill 150 build-gpu/tests/test_gpu_prefill
run route 120 CK_RUN_CASE=route build-gpu/tests/test_gpu_forward
run quick 120 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
for T in 1 8 32 300; do for b in build-prev build-gpu; do
  echo "T=$T $b $(timeout 60 $b/moert run --backend cuda --model qwen3-30b-a3b \
    --tokens $T --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
MOERT_ROUTE_TRACE=1 timeout 60 build-gpu/moert run --backend cuda --model qwen3-30b-a3b --tokens 1 --layers 4 --weight-sets 2 2>&1 | grep route_plan | tail -2
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2 3; do
  B=build-prev ab prev forward qwen3-30b-a3b 1,2,8,32,128
  B=build-gpu ab new forward qwen3-30b-a3b 1,2,8,32,128
  B=build-prev ab prev-r forward qwen3-30b-a3b 1,8,32 MOERT_BENCH_SKIP=4
  B=build-gpu ab new-r forward qwen3-30b-a3b 1,8,32 MOERT_BENCH_SKIP=4
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "ab done $(( $(date +%s) - t0 )) s"
PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=150 \
  tools/bench-gpu.sh build-gpu .device/torch_peers.py > $OUT/bench-gpu.txt 2>&1
echo "bench rc=$? $(( $(date +%s) - t0 )) s"
grep -E '"T"' $OUT/bench.jsonl | python3 -c "
import json,sys
for l in sys.stdin:
    r=json.loads(l); print(r['model'], r['T'], r['us'], r.get('ratio'), r.get('stream_us'), r.get('peer_triton_fused_moe_us'), r.get('peer_torch_grouped_mm_us'))"
tail -4 $OUT/run48.txt
rm -f $OUT/run48.txt $OUT/triton.err $OUT/moert+triton.jsonl
echo "total $(( $(date +%s) - t0 )) s"
