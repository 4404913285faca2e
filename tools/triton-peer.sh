# triton-peer.sh — sourced by tools/bench-gpu.sh and tools/bench-prefill.sh:
#     triton_peer LOGS DEFAULT_T
# runs the Triton fused-MoE peer (tools/triton_moe_peer.py, or $TRITON_PEER: its two GEMM
# launches alone, in a CUDA graph) into LOGS/triton.jsonl where torch and triton are installed
# (the GPU machine), at $TRITON_T or DEFAULT_T, under $TRITON_TIMEOUT (300 s); elsewhere that
# file says why it did not run.  Its stderr goes to LOGS/triton.err.
triton_peer() {
  local logs=$1 tokens=${TRITON_T:-$2} peer=${TRITON_PEER:-tools/triton_moe_peer.py}
  if [ -f "$peer" ] && python3 -c "import torch, triton" 2>/dev/null; then
    PYTHONUNBUFFERED=1 timeout "${TRITON_TIMEOUT:-300}" python3 "$peer" --tokens "$tokens" \
      2>"$logs/triton.err" | tee "$logs/triton.jsonl"
  else
    echo "# no Triton peer run (no $peer, or no torch and triton here)" | tee "$logs/triton.jsonl"
  fi
}
