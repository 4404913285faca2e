# triton-peer.sh — sourced by tools/bench-gpu.sh and tools/bench-prefill.sh:
#     triton_peer LOGS DEFAULT_T [MODEL[:T,T...] ...]
# runs the Triton fused-MoE peer (tools/triton_moe_peer.py, or $TRITON_PEER: its two GEMM
# launches alone, in a CUDA graph) into LOGS/triton.jsonl where torch and triton are installed
# (the GPU machine), for each model named ($TRITON_MODELS, else the arguments after DEFAULT_T,
# else qwen3-30b-a3b) at its own T list after a colon, else $TRITON_T or DEFAULT_T, each model
# under $TRITON_TIMEOUT (300 s); elsewhere that file says why it did not run.  Its stderr goes
# to LOGS/triton.err.  The peer routes `moert bench`'s logits of its default seed (its
# --moert-seed 5): the same experts, rows per expert, as moert's line of each T.
#     triton_merge MOERT_JSONL TRITON_JSONL
# prints MOERT_JSONL's JSON lines with the peer's time of the same model and T merged in as
# peer_triton_fused_moe_us and speedup_vs_triton.
triton_peer() {
  local logs=$1 tokens=${TRITON_T:-$2} peer=${TRITON_PEER:-tools/triton_moe_peer.py} spec model t
  shift 2
  local models=${TRITON_MODELS:-${*:-qwen3-30b-a3b}}
  : >"$logs/triton.jsonl"
  : >"$logs/triton.err"
  if [ -f "$peer" ] && python3 -c "import torch, triton" 2>/dev/null; then
    for spec in $models; do
      model=${spec%%:*}
      t=$tokens
      [ "$spec" != "$model" ] && t=${spec#*:}
      PYTHONUNBUFFERED=1 timeout "${TRITON_TIMEOUT:-300}" python3 "$peer" --model "$model" \
        --tokens "$t" 2>>"$logs/triton.err" | tee -a "$logs/triton.jsonl"
    done
  else
    echo "# no Triton peer run (no $peer, or no torch and triton here)" | tee "$logs/triton.jsonl"
  fi
}
triton_merge() {
  python3 - "$1" "$2" <<'PY'
import json, sys
triton = {}
for line in open(sys.argv[2]):
    if line.startswith("{"):
        t = json.loads(line)
        if isinstance(t.get("triton_fused_moe_us"), (int, float)):
            triton[(t.get("model", "qwen3-30b-a3b"), t["T"])] = t
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    t = triton.get((r["model"], r["T"]))
    if t:  # its two GEMM launches alone (routing, alignment, activation and sum not counted)
        r["peer_triton_fused_moe_us"] = t["triton_fused_moe_us"]
        r["speedup_vs_triton"] = round(t["triton_fused_moe_us"] / r["us"], 3)
        # the experts its batch 0 touched: moert's own count where it routed moert's logits
        r["peer_triton_touched"] = t.get("touched")
        r["peer_triton_routing"] = t.get("routing", "random tokens")
    print(json.dumps(r))
PY
}
