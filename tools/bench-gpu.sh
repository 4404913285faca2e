#!/usr/bin/env bash
# bench-gpu.sh — the decode benchmark of issue 4 in one go on a GPU machine: `moert bench
# --json` (forward stage) for the three reference shapes, the PyTorch peers of the same
# run on the same card, and the 48-layer step; the peers are merged into the moert lines
# of the same model and T as peer_torch_grouped_mm_us / peer_torch_loop_us, and the Triton
# fused-MoE peer (tools/triton_moe_peer.py; all three models at T = 1, 8, 32, 128, 256, 512,
# or $TRITON_MODELS / $TRITON_T) as peer_triton_fused_moe_us where it can run.
#     tools/bench-gpu.sh [build-dir] [peers-script]     (output under $OUT, else /tmp/moert-bench)
# The peers script is ../shared/peers/torch_peers.py, copied into a git-ignored folder of
# the repository (.device/) so that it travels with the working tree.
set -u -o pipefail
BUILD=${1:-build-gpu}
PEERS=${2:-.device/torch_peers.py}
LOGS=${OUT:-/tmp/moert-bench}
mkdir -p "$LOGS"
MOERT="$BUILD/moert"
: >"$LOGS/moert.jsonl"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null) ($(git status --short 2>/dev/null | wc -l) files changed)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
} | tee "$LOGS/machine.txt"
for model in qwen3-30b-a3b qwen3-235b-a22b mixtral-8x7b; do
  start=$(date +%s)
  "$MOERT" bench --backend cuda --stage forward --model "$model" --json ${BENCH_ITERS:+--iters $BENCH_ITERS} \
    | tee -a "$LOGS/moert.jsonl"
  echo "# $model: $(( $(date +%s) - start )) s" >&2
done
if [ -f "$PEERS" ]; then
  PYTHONUNBUFFERED=1 timeout "${PEERS_TIMEOUT:-240}" python3 "$PEERS" 2>&1 | tee "$LOGS/peers.txt"
else
  echo "no peers script at $PEERS" | tee "$LOGS/peers.txt"
fi
# the Triton fused-MoE peer where torch and triton are installed (tools/triton-peer.sh)
. "$(dirname "$0")/triton-peer.sh"
triton_peer "$LOGS" 1,8,32,128,256,512 qwen3-30b-a3b qwen3-235b-a22b mixtral-8x7b
"$MOERT" run --backend cuda --layers 48 --tokens 32 2>&1 | tee "$LOGS/run48.txt"
triton_merge "$LOGS/moert.jsonl" "$LOGS/triton.jsonl" >"$LOGS/moert+triton.jsonl"
python3 - "$LOGS/moert+triton.jsonl" "$LOGS/peers.txt" >"$LOGS/bench.jsonl" <<'PY'
import json, sys
peers, read_bw = {}, None
for line in open(sys.argv[2]):
    line = line.strip()
    if line.startswith("read_bw_GBps"):
        read_bw = float(line.split()[1])
    if line.startswith("{"):
        r = json.loads(line)
        peers[r["T"]] = r
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    p = peers.get(r["T"]) if r["model"] == "qwen3-30b-a3b" else None  # the peers run Qwen3-30B-A3B
    if p:
        for k in ("torch_grouped_mm_us", "torch_loop_us"):
            if isinstance(p.get(k), (int, float)):
                r["peer_" + k] = p[k]
    if read_bw:  # the same floor against the peers' streaming read (torch sum of 2 GiB)
        r["read_gbps"] = read_bw
        r["floor_read_us"] = round(r["bytes"] / (read_bw * 1e9) * 1e6, 2)
        r["ratio_read"] = round(r["us"] / r["floor_read_us"], 3)
    print(json.dumps(r))
PY
echo "merged: $(wc -l <"$LOGS/bench.jsonl") lines in $LOGS/bench.jsonl"
