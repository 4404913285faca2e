#!/usr/bin/env bash
# Call 7: the Triton fused-MoE peer (tools/triton_moe_peer.py, new) beside moert on the same
# card in one call: main's kernels (0f0d131's, v12's), Qwen3-30B-A3B bf16.  The peer times its
# two GEMM launches alone in a CUDA graph (as issue 4 quotes such a kernel), each T with the
# fastest of 8 block shapes per GEMM.
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
$B/moert bench --backend cuda --stage forward --tokens 1,8,32,128,512 --json > $OUT/moert-forward.jsonl 2>&1
$B/moert bench --backend cuda --stage prefill --tokens 2048,8192 --json > $OUT/moert-prefill.jsonl 2>&1
cut -c1-120 $OUT/moert-forward.jsonl $OUT/moert-prefill.jsonl | grep '"us"'
echo "moert done $(( $(date +%s) - t0 )) s"
PYTHONUNBUFFERED=1 timeout 330 python3 tools/triton_moe_peer.py --tokens 1,8,32,128,512,2048,8192 \
  > $OUT/triton.jsonl 2> $OUT/triton.err
echo "peer rc=$? $(( $(date +%s) - t0 )) s"; cat $OUT/triton.jsonl; tail -5 $OUT/triton.err
