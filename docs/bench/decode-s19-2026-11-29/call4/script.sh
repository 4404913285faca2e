#!/usr/bin/env bash
# s19 call 4: MOERT_M_SKIP with a run-time m_skip (moert_prefill_m_skip_due: off where a
# persistent grid has the column tile outer and experts average over 96 rows); the ticket
# counter reverted.  Prediction: Mixtral-8x7B T=512 as main (~985-1000), T=256 ~710;
# DeepSeek-V3 T=2048 ~5800; Qwen3-235B-A22B T=8192 ~4470.  Both GPU suites.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
run prefill 200 $B/tests/test_gpu_prefill
run forward 300 $B/tests/test_gpu_forward
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  for v in 0 1; do
    ab skip$v forward mixtral-8x7b 256,512 MOERT_PREFILL_M_SKIP=$v
    ab skip$v prefill qwen3-30b-a3b 1024,2048 MOERT_PREFILL_M_SKIP=$v
    ab skip$v prefill deepseek-v3 2048 MOERT_PREFILL_M_SKIP=$v
    ab skip$v prefill qwen3-235b-a22b 8192 MOERT_PREFILL_M_SKIP=$v
  done
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
