#!/usr/bin/env bash
# Session 21, call 2: MOERT_PREFILL_TALL_KSPLIT removed (call 1: Mixtral-8x7B T=512 1013-1033
# against the default's 991-1000 us).  1. Both GPU suites on this tree (the 192-row tiles'
# default rule: test_gpu_forward's Qwen3-30B-A3B T=2048 case takes them).  2. Where else the
# 192-row tiles may win: an L2-traffic count (B 24 KB + A 24 KB a K step for 192 x 192 against
# 32 + 16 for 128 x 256, the last tile of an expert costing its B in full) says less traffic
# than the 128-row tiles at ~384 and ~512 rows an expert (Qwen3-30B-A3B prefill T=6144/8192:
# predicted -5 to -10 %), and it said the same at 256 rows (T=4096), where s20 call 5 measured
# +15 % -- so this checks the count.  Two rounds, default against MOERT_PREFILL_TALL=1.
# 3. The Triton peer at Mixtral-8x7B and Qwen3-235B-A22B decode sizes (tools/triton-peer.sh
# now takes models), timed, to size the record's peer runs; beside moert's in the same call.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
run prefill 240 $B/tests/test_gpu_prefill
run forward 280 $B/tests/test_gpu_forward
echo "suites $(( $(date +%s) - t0 )) s"
export AB_TIMEOUT=90
for r in 1 2; do for v in "" 1; do
  ab tall-d$v prefill qwen3-30b-a3b 4096,6144,8192,16384 MOERT_PREFILL_TALL=$v
  ab tall-d$v prefill qwen3-235b-a22b 4096,8192 MOERT_PREFILL_TALL=$v
done; echo "round $r $(( $(date +%s) - t0 )) s"; done
ab moert forward mixtral-8x7b 1,8,32,128,256,512,1024
ab moert forward qwen3-235b-a22b 1,8,32,128,512
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
. tools/triton-peer.sh
s=$(date +%s); TRITON_TIMEOUT=100 triton_peer $OUT 1,8,32,128,256,512,1024 mixtral-8x7b > /dev/null
mv $OUT/triton.jsonl $OUT/triton-mixtral.jsonl; mv $OUT/triton.err $OUT/triton-mixtral.err
echo "triton mixtral $(( $(date +%s) - s )) s"; s=$(date +%s)
TRITON_TIMEOUT=100 triton_peer $OUT 1,8,32,128,512 qwen3-235b-a22b > /dev/null
mv $OUT/triton.jsonl $OUT/triton-235b.jsonl; mv $OUT/triton.err $OUT/triton-235b.err
echo "triton 235b $(( $(date +%s) - s )) s"
cut -c1-160 $OUT/triton-mixtral.jsonl $OUT/triton-235b.jsonl
echo "total $(( $(date +%s) - t0 )) s"
