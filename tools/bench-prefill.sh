#!/usr/bin/env bash
# bench-prefill.sh — the prefill benchmark of issue 5 in one go on a GPU machine: the PyTorch
# peers of the same card first (the dense 8192^3 bf16 GEMM rate `mm_tflops`, the streaming
# read bandwidth, and torch._grouped_mm on Qwen3-30B-A3B at T=2048 and 8192), then
# `moert bench --stage prefill --json --dense-tflops <mm_tflops>` for each model, merged:
# the Qwen3-30B-A3B lines at the peers' T get peer_torch_grouped_mm_us and speedup_vs_peer;
# every line gets ratio_dense (its TFLOP/s over the dense GEMM's) and floor_read_us (the
# bandwidth floor against the peers' streaming read instead of moert's copy); the Triton
# fused-MoE peer (tools/triton-peer.sh) runs Qwen3-30B-A3B at T = 1024, 2048, 4096, 8192 (issue
# 5 asks 1.2x from T=1024), or $TRITON_MODELS / $TRITON_T.
#     tools/bench-prefill.sh [build-dir] [peers-script]   (output under $OUT, else /tmp/moert-prefill)
#     PREFILL_MODELS="qwen3-30b-a3b qwen3-235b-a22b:1024,8192 deepseek-v3:2048"   (model[:T list])
# DENSE_TFLOPS=N gives the dense GEMM rate when the peers do not run (a missing script).
# The peers script is ../shared/peers/torch_peers.py, copied into the git-ignored .device/;
# it honours PEERS_T and PEERS_METHODS (set below) when it is the .device copy.
set -u -o pipefail
BUILD=${1:-build-gpu}
PEERS=${2:-.device/torch_peers.py}
LOGS=${OUT:-/tmp/moert-prefill}
MODELS=${PREFILL_MODELS:-qwen3-30b-a3b}
mkdir -p "$LOGS"
MOERT="$BUILD/moert"
: >"$LOGS/prefill.jsonl"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null) ($(git status --short 2>/dev/null | wc -l) files changed)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
} | tee "$LOGS/machine.txt"
if [ -f "$PEERS" ]; then
  PEERS_T=${PEERS_T:-2048,8192} PEERS_METHODS=${PEERS_METHODS:-torch_grouped_mm} PYTHONUNBUFFERED=1 \
    timeout "${PEERS_TIMEOUT:-120}" python3 "$PEERS" 2>&1 | tee "$LOGS/peers.txt"
else
  echo "no peers script at $PEERS" | tee "$LOGS/peers.txt"
fi
# the Triton fused-MoE peer where torch and triton are installed (tools/triton-peer.sh)
. "$(dirname "$0")/triton-peer.sh"
triton_peer "$LOGS" 1024,2048,4096,8192
MM=${DENSE_TFLOPS:-$(awk '/^mm_tflops/ {print $2}' "$LOGS/peers.txt" | tail -1)}
for entry in $MODELS; do
  model=${entry%%:*}
  tokens=""
  [ "$entry" != "$model" ] && tokens="--tokens ${entry#*:}"
  start=$(date +%s)
  echo "# $MOERT bench --backend cuda --stage prefill --model $model $tokens --json ${MM:+--dense-tflops $MM}" \
    >>"$LOGS/commands.txt"
  # shellcheck disable=SC2086
  "$MOERT" bench --backend cuda --stage prefill --model "$model" $tokens --json \
    ${MM:+--dense-tflops $MM} ${BENCH_ITERS:+--iters $BENCH_ITERS} | tee -a "$LOGS/prefill.jsonl"
  echo "# $model: $(( $(date +%s) - start )) s" >&2
done
triton_merge "$LOGS/prefill.jsonl" "$LOGS/triton.jsonl" >"$LOGS/prefill+triton.jsonl"
python3 - "$LOGS/prefill+triton.jsonl" "$LOGS/peers.txt" >"$LOGS/bench.jsonl" <<'PY'
import json, sys
peers, read_bw, mm = {}, None, None
for line in open(sys.argv[2]):
    line = line.strip()
    if line.startswith("read_bw_GBps"):
        read_bw = float(line.split()[1])
    if line.startswith("mm_tflops"):
        mm = float(line.split()[1])
    if line.startswith("{"):
        r = json.loads(line)
        peers[r["T"]] = r
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    p = peers.get(r["T"]) if r["model"] == "qwen3-30b-a3b" else None  # the peers run Qwen3-30B-A3B
    if p and isinstance(p.get("torch_grouped_mm_us"), (int, float)):
        r["peer_torch_grouped_mm_us"] = p["torch_grouped_mm_us"]
        r["speedup_vs_peer"] = round(p["torch_grouped_mm_us"] / r["us"], 3)
    if mm:
        r["mm_tflops"] = mm
        r["ratio_dense"] = round(r["tflops"] / mm, 3)
    if read_bw:
        r["read_gbps"] = read_bw
        r["floor_read_us"] = round(r["bytes"] / (read_bw * 1e9) * 1e6, 2)
    print(json.dumps(r))
PY
echo "merged: $(wc -l <"$LOGS/bench.jsonl") lines in $LOGS/bench.jsonl"
