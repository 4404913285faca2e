#!/usr/bin/env bash
# s19 call 3: MOERT_M_SKIP with the items of the persistent 128-row grids handed out by a ticket
# counter (MOERT_DYN).  Call 2 found the skip alone 15 % slower at Mixtral-8x7B T=512 (column
# tile outer, round robin: the CTAs of the short items always got short items, idled at the
# end and ran ahead of the row tiles they share weights with) and 1-4 % faster elsewhere.
# Prediction: Mixtral T=512 985 -> ~850 us (the ~4 half-empty second tiles of 12 at half cost,
# items balanced); DeepSeek-V3 prefill T=2048 and Qwen3-30B-A3B T=8192 as call 2's skip or
# better; tickets alone (skip off) within 1 %.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
run prefill 200 $B/tests/test_gpu_prefill
for m in mixtral-8x7b:512 qwen3-30b-a3b:1024 qwen3-235b-a22b:2048; do for v in "MOERT_PREFILL_M_SKIP=0 MOERT_PREFILL_DYN=0" "MOERT_PREFILL_M_SKIP=1"; do
  echo "${m%:*} T=${m#*:} $v $(env $v timeout 120 $B/moert run --backend cuda --model ${m%:*} --tokens ${m#*:} --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done; done
echo "tests, bits done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  for v in old new dyn; do
    case $v in old) e="MOERT_PREFILL_M_SKIP=0 MOERT_PREFILL_DYN=0";; new) e="MOERT_PREFILL_M_SKIP=1";; dyn) e="MOERT_PREFILL_M_SKIP=0";; esac
    ab $v forward mixtral-8x7b 256,512,1024 $e
    ab $v prefill qwen3-30b-a3b 1024,2048,8192 $e
    ab $v prefill deepseek-v3 2048 $e
    ab $v prefill qwen3-235b-a22b 2048,8192 $e
  done
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
echo "total $(( $(date +%s) - t0 )) s"
