#!/usr/bin/env bash
# For the twentieth session's first device call (written at the end of the nineteenth: its
# device time was spent).  Build main into build-gpu here (cmake --build build-gpu -j2), carry
# ["build-gpu", ".device"], run this (about 8 minutes).
# 1. The prepared experiment MOERT_PREFILL_KSPLIT128=1 (the 128-row down GEMM's K in two
#    parts where its items fill their last round poorly: ksplit128_due in runtime/cuda/
#    backend.c), never run on a GPU: test_gpu_prefill first (its epi 16 cases, the split in
#    the persistent column-outer grid), then test_gpu_forward with the hook (its Mixtral-8x7B
#    T=1000 cases take the split), then `moert run` bits against the hook off (close, not
#    equal: the parts are rounded to bf16 before the combine adds them).
# 1b. The prepared experiment MOERT_PREFILL_PF_DOWN=1 (the first narrow module's gate/up items
#    prefetch their down weights into L2: pf_down in ptx/prefill_sm90.cu), never run on a GPU:
#    test_gpu_prefill's epi 17 cases, test_gpu_forward's quick cases with the hook, bits.
#    Prediction: Qwen3-30B-A3B T=1 28.4 -> 26-27 us (call 1's timeline: gate/up 14.9 us at ~80 %
#    of the DRAM's rate, then down 8.0 us from DRAM; with the prefetch the 75 MB stream as one,
#    the down GEMM from L2 in ~3 us); T=2 (if it takes the same module) equal or slower.
# 2. A/B, two rounds.  Prediction (decode-log.md v20, call 1's timeline): Mixtral-8x7B T=512's
#    down GEMM 373 -> ~290 us, the layer ~1000 -> ~920 us (1.37x); T=1024 ~5 % faster;
#    prefill T=2048 within 2 %; T=256 unchanged (no split there).
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
run prefill 200 $B/tests/test_gpu_prefill
run forward 300 MOERT_PREFILL_KSPLIT128=1 $B/tests/test_gpu_forward
CK_RUN_CASE=quick run quick-pf 120 MOERT_PREFILL_PF_DOWN=1 $B/tests/test_gpu_forward
for v in 0 1; do
  echo "qwen30b T=1 pf_down=$v $(MOERT_PREFILL_PF_DOWN=$v timeout 60 $B/moert run --backend cuda --model qwen3-30b-a3b --tokens 1 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
for v in 0 1; do
  echo "mixtral T=512 ksplit128=$v $(MOERT_PREFILL_KSPLIT128=$v timeout 120 $B/moert run --backend cuda --model mixtral-8x7b --tokens 512 --layers 2 --weight-sets 1 2>&1 | grep -E 'checksum|rror' | tr '\n' ' ')"
done
echo "tests done $(( $(date +%s) - t0 )) s"
for r in 1 2; do for v in 0 1; do
  ab k128-$v forward mixtral-8x7b 256,512,1024 MOERT_PREFILL_KSPLIT128=$v
  ab k128-$v prefill mixtral-8x7b 2048 MOERT_PREFILL_KSPLIT128=$v
  ab pfd-$v forward qwen3-30b-a3b 1,2 MOERT_PREFILL_PF_DOWN=$v
done; echo "round $r $(( $(date +%s) - t0 )) s"; done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
trace mix-t512-k128 mixtral-8x7b 512 MOERT_PREFILL_KSPLIT128=1 2>&1 | tail -9
trace q30-t1-pfd qwen3-30b-a3b 1 MOERT_PREFILL_PF_DOWN=1 2>&1 | tail -7
echo "total $(( $(date +%s) - t0 )) s"
