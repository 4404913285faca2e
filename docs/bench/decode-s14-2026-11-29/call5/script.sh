#!/usr/bin/env bash
# Call 5: main at d09f07a (the layer kernel where layer_due, A_SKIP, h by cp.async at 64-row
# tiles) - the GPU tests, then the record: tools/bench-gpu.sh (three models x ten T, the torch
# and Triton peers in the same run, the 48-layer step).
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
run prefill 120 $B/tests/test_gpu_prefill
run quick 100 CK_RUN_CASE=quick $B/tests/test_gpu_forward
run forward 170 $B/tests/test_gpu_forward
echo "tests done $(( $(date +%s) - t0 )) s"
PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm TRITON_TIMEOUT=150 \
  tools/bench-gpu.sh build-gpu .device/torch_peers.py > $OUT/bench-gpu.txt 2>&1
echo "bench rc=$? $(( $(date +%s) - t0 )) s"
grep -E '"T"' $OUT/bench.jsonl | python3 -c "
import json,sys
for l in sys.stdin:
    r=json.loads(l); print(r['model'], r['T'], r['us'], r.get('ratio'), r.get('peer_triton_fused_moe_us'), r.get('peer_torch_grouped_mm_us'))"
tail -3 $OUT/run48.txt
echo "total $(( $(date +%s) - t0 )) s"
