#!/usr/bin/env bash
# Session 21, call 4: the down GEMM's A (h) by TMA in 64-row boxes, only those holding rows of
# the tile (MOERT_A_ROWS; default, hook MOERT_PREFILL_A_ROWS=0 the one box of bm rows).  An
# expert's last tile then loads no A rows it has none of: the 192-row tiles at ~128 rows an
# expert load two boxes of three.  Prediction: Qwen3-30B-A3B prefill T=2048 down GEMM -8 %
# (A 16 of 24 KB a K step for half the experts; L2-bound), the layer 390 -> ~380 us; T=1024
# (128-row tiles at 64 rows an expert) gains on the down GEMM too; T=2560 unchanged (the third
# box has rows); DeepSeek-V3 T=4096 and Qwen3-235B-A22B T=2048 as Qwen3-30B T=2048.
# 1. test_gpu_prefill (its cases 17: the hook's path), quick forward cases, the bits with and
# without (the same math: expected equal).  2. A/B two rounds.  3. The prefill record.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
run prefill 200 $B/tests/test_gpu_prefill
CK_RUN_CASE=quick run quick 120 $B/tests/test_gpu_forward
for m in "qwen3-30b-a3b 2048" "qwen3-30b-a3b 1024" "qwen3-235b-a22b 2048" "mixtral-8x7b 512"; do set -- $m; for v in "" 0; do
  echo "$1 T=$2 A_ROWS=$v $(MOERT_PREFILL_A_ROWS=$v timeout 120 $B/moert run --backend cuda --model $1 --tokens $2 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "checks $(( $(date +%s) - t0 )) s"
export AB_TIMEOUT=60
for r in 1 2; do for v in "" 0; do
  ab arows-d$v prefill qwen3-30b-a3b 1024,2048,2560,4096,8192 MOERT_PREFILL_A_ROWS=$v
  ab arows-d$v prefill qwen3-235b-a22b 2048 MOERT_PREFILL_A_ROWS=$v
  ab arows-d$v prefill deepseek-v3 4096 MOERT_PREFILL_A_ROWS=$v
  ab arows-d$v forward mixtral-8x7b 512 MOERT_PREFILL_A_ROWS=$v
done; echo "round $r $(( $(date +%s) - t0 )) s"; done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
trace q30-t2048 qwen3-30b-a3b 2048 2>&1 | tail -7
trace q30-t2048-ar0 qwen3-30b-a3b 2048 MOERT_PREFILL_A_ROWS=0 2>&1 | tail -7
W=/tmp/rec; rm -rf $W; mkdir -p $W/logs
OUT=$W/prefill PEERS_TIMEOUT=120 PREFILL_MODELS="qwen3-30b-a3b qwen3-235b-a22b:2048,8192 deepseek-v3:2048,4096 mixtral-8x7b:2048" \
  timeout 150 tools/bench-prefill.sh build-gpu .device/torch_peers.py > $W/logs/bench-prefill.log 2>&1
echo "prefill record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/prefill/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.1f us %.1f TF x%.2f dense %.2f torch %s triton %s' % (r['us'], r.get('tflops',0), r.get('ratio',0), r.get('ratio_dense',0), r.get('peer_torch_grouped_mm_us',''), r.get('peer_triton_fused_moe_us','')))
" 2>&1
grep -E "^mm_tflops|^read_bw" $W/prefill/peers.txt
cd $W && tar cf $OUT/prefill-rec.tar prefill logs
echo "total $(( $(date +%s) - t0 )) s"
