#!/usr/bin/env bash
# For the twenty-first session's first device call (written at the end of the twentieth: its
# device time was spent; its call 7, this check, was refused).  Build main into build-gpu here
# (cmake --build build-gpu -j2; tools/build-trace.sh build-gpu), carry ["build-gpu", ".device"],
# run this (about 8 minutes).
# 1. The 192-row tiles are default where moert_prefill_tall_due says (717bae9: 113-176 rows an
#    expert, the gate/up grid with the row tile outer); their kernel ran test_gpu_prefill's six
#    192-row cases (s20 call 5) and the forward path under MOERT_PREFILL_TALL=1 (calls 5-6), but
#    the default rule never ran on a GPU: both suites, then `moert run` bits of Qwen3-30B-A3B
#    T=2048 and Qwen3-235B-A22B T=2048 with and without (expected equal: the 192-row tiles gave
#    the 128-row tiles' bits at Mixtral-8x7B T=512 in call 5).
# 2. A/B, two rounds, default against MOERT_PREFILL_TALL=0 at the rule's edges.  Prediction
#    (calls 5-6): Qwen3-30B-A3B prefill T=2048 -7 %, T=2560 -15 %, T=1536/3072 unchanged (not
#    due); Qwen3-235B-A22B T=2048 -5 %; DeepSeek-V3 T=4096 -8 %; Mixtral-8x7B unchanged.
# 3. The prepared experiment MOERT_PREFILL_TALL_KSPLIT=1 (the 192-row down GEMM's K in two
#    parts where moert_prefill_ksplit_rows_due says; never run on a GPU): test_gpu_prefill's
#    192-row cases include its K split (epi 16); at Mixtral-8x7B T=512, where the 192-row tiles
#    lost (call 5: 1073-1076 against 1000-1001 us), the default / TALL=1 / TALL=1 + the split,
#    and the timelines of the last two: is it the down GEMM's ~176 items on 132 SMs?
# Then next-session-record.sh (a second call): the records with the peers.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
run prefill 240 $B/tests/test_gpu_prefill
run forward 280 $B/tests/test_gpu_forward
for m in "qwen3-30b-a3b 2048" "qwen3-235b-a22b 2048"; do set -- $m; for v in "" 0; do
  echo "$1 T=$2 TALL=$v $(MOERT_PREFILL_TALL=$v timeout 120 $B/moert run --backend cuda --model $1 --tokens $2 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "checks $(( $(date +%s) - t0 )) s"
export AB_TIMEOUT=60
for r in 1 2; do for v in "" 0; do
  ab tall-d$v prefill qwen3-30b-a3b 1536,2048,2560,3072 MOERT_PREFILL_TALL=$v
  ab tall-d$v prefill qwen3-235b-a22b 2048 MOERT_PREFILL_TALL=$v
  ab tall-d$v prefill deepseek-v3 4096 MOERT_PREFILL_TALL=$v
  ab tall-d$v forward mixtral-8x7b 512 MOERT_PREFILL_TALL=$v
done; echo "round $r $(( $(date +%s) - t0 )) s"; done
for r in 1 2; do
  ab mix-default forward mixtral-8x7b 512
  ab mix-tall forward mixtral-8x7b 512 MOERT_PREFILL_TALL=1
  ab mix-tall-ks forward mixtral-8x7b 512 MOERT_PREFILL_TALL=1 MOERT_PREFILL_TALL_KSPLIT=1
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "mixtral T=512 tall+ks $(MOERT_PREFILL_TALL=1 MOERT_PREFILL_TALL_KSPLIT=1 timeout 120 $B/moert run --backend cuda --model mixtral-8x7b --tokens 512 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
trace mix-t512-tall mixtral-8x7b 512 MOERT_PREFILL_TALL=1 2>&1 | tail -7
trace mix-t512-tall-ks mixtral-8x7b 512 MOERT_PREFILL_TALL=1 MOERT_PREFILL_TALL_KSPLIT=1 2>&1 | tail -7
# where the 192-row tiles' 7 % at Qwen3-30B-A3B T=2048 comes from: both GEMMs' spans
trace q30-t2048 qwen3-30b-a3b 2048 2>&1 | tail -7
trace q30-t2048-128 qwen3-30b-a3b 2048 MOERT_PREFILL_TALL=0 2>&1 | tail -7
echo "total $(( $(date +%s) - t0 )) s"
