#!/usr/bin/env bash
# For the eleventh session's first device call (written at the end of the tenth, not run):
#   build main into build-gpu here (cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release
#   -DMOERT_BUILD_TOOLS=ON), copy ../shared/peers/torch_peers.py into .device/, carry
#   ["build-gpu", ".device"], run this script on the device.
# 1. main's GPU cases: 5ab65bb (fused_due refactor, the t1 hook) and e4b411f / its map
#    buffer fix were never run on a GPU; quick, forward, prefill;
# 2. the narrow tiles at 8 stages under the tests (call 8 of the tenth session found no time);
# 3. MOERT_PREFILL_NARROW=t1 (the narrow prefill GEMMs at the split-K kernel's T): quick and
#    forward cases with it, checksums, and the A/B at T=1 against the default, three rounds;
# 4. MOERT_PREFILL_SKIP_IDLE=1 (below).
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
B=build-gpu
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks|ERROR SUMMARY' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
run quick 120 CK_RUN_CASE=quick $B/tests/test_gpu_forward
run forward 240 CK_RUN_CASE=forward $B/tests/test_gpu_forward
run prefill 120 $B/tests/test_gpu_prefill
run prefill-narrow8 120 MOERT_PREFILL_NARROW_STAGES=8 $B/tests/test_gpu_prefill
run quick-t1 120 CK_RUN_CASE=quick MOERT_PREFILL_NARROW=t1 MOERT_PREFILL_NARROW_STAGES=8 $B/tests/test_gpu_forward
run forward-t1 240 CK_RUN_CASE=forward MOERT_PREFILL_NARROW=t1 MOERT_PREFILL_NARROW_STAGES=8 $B/tests/test_gpu_forward
# 4. MOERT_PREFILL_SKIP_IDLE=1 (128-row tiles: the second consumer idle on short last tiles):
#    test_gpu_prefill has two cases for it (epi 4); forward case with it; A/B on Mixtral
#    T=256/512 (64 and 128 rows an expert in 128-row tiles) and Qwen3-30B-A3B prefill T=8192
echo "total $(( $(date +%s) - t0 )) s"
