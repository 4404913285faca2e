#!/usr/bin/env bash
# gpu-sanitize.sh — every GPU test program under every compute-sanitizer tool (memcheck,
# racecheck, initcheck, synccheck), the jobs run side by side.  Build first (any machine):
#     cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release && cmake --build build-gpu -j
# then on the GPU machine, from the repository root:
#     tools/gpu-sanitize.sh [build-dir]      (logs under $OUT/sanitize, else /tmp/moert-sanitize;
#                                            all of them also in sanitize-logs.tar.gz beside)
# Each job is one test program on sizes a sanitizer finishes in minutes:
#   fwd-route        test_gpu_forward, case route: device router, 8 router configurations
#   fwd-quick-N      test_gpu_forward, case quick, dtype N (bf16/f16/f32): a small layer, plan
#                    blocks of 16..128 rows, T = 1, 7, 129, both routers, shared expert,
#                    accumulate; on the decode kernels (MOERT_CUDA_PREFILL=0) ...
#   fwd-tiled-N      ... and the same with MOERT_CUDA_DECODE=0 (the tiled kernels)
#   fwd-prefill-N    test_gpu_forward's quick prefill case: the prefill GEMMs inside
#                    moert_forward, forced, T = 1..1000, shared expert, both routers
#   fwd-context      test_gpu_forward, the caller's-CUcontext case
#   reliability      test_gpu_reliability with T = 64: device OOM, a Qwen3-30B-A3B layer vs the CPU
#   prefill          test_gpu_prefill, its T = 256 cases (partial tiles) (sm_90a wgmma/TMA or sm_80 GEMMs)
# A job passes when the tool reports 0 errors and the test passes (exit 0).  Jobs in flight:
# MOERT_SANITIZE_JOBS (default 8); each has MOERT_SANITIZE_TIMEOUT seconds (default 420);
# MOERT_SANITIZE_ONLY=regex runs only the jobs whose "tool-name" matches.
set -u -o pipefail
BUILD=${1:-build-gpu}
LOGS=${OUT:-/tmp/moert-sanitize}/sanitize
rm -rf "$LOGS"
mkdir -p "$LOGS"
ROOT=$(pwd)
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
[ -x "$SAN" ] || { echo "compute-sanitizer not found"; exit 2; }
"$SAN" --version | tail -1 >"$LOGS/version.txt"
export MOERT_CACHE_DIR="$ROOT/$BUILD/jit-cache-sanitize"
T=$ROOT/$BUILD/tests
TIMEOUT=${MOERT_SANITIZE_TIMEOUT:-420}

jobs_list=()
add() { jobs_list+=("$1|$2|$3|${4:-}"); } # name|environment|program|sanitizer options
add fwd-route "CK_RUN_CASE=route" test_gpu_forward
for q in 0 1 2; do
  name=$(echo bf16 f16 f32 | cut -d' ' -f$((q + 1)))
  add "fwd-quick-$name" "CK_RUN_CASE=quick MOERT_QUICK_PREFILL=0 MOERT_CUDA_PREFILL=0 MOERT_QUICK_MIN=$((4 * q)) MOERT_QUICK_MAX=$((4 * q + 4))" test_gpu_forward
  add "fwd-tiled-$name" "CK_RUN_CASE=quick MOERT_QUICK_PREFILL=0 MOERT_CUDA_PREFILL=0 MOERT_CUDA_DECODE=0 MOERT_QUICK_MIN=$((4 * q)) MOERT_QUICK_MAX=$((4 * q + 4))" test_gpu_forward
done
# the prefill GEMMs inside moert_forward, forced at T = 1, 7, 129, 1000 (bf16, f16)
add fwd-prefill-bf16 "CK_RUN_CASE=quick MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=1" test_gpu_forward
add fwd-prefill-f16 "CK_RUN_CASE=quick MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=2" test_gpu_forward
add fwd-context "CK_RUN_CASE=quick MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=0" test_gpu_forward
# (its device_oom case makes cuMemAlloc fail on purpose: API errors are not reported there)
add reliability "MOERT_RELIABILITY_T=64" test_gpu_reliability --report-api-errors=no
add prefill "MOERT_PREFILL_T=256" test_gpu_prefill

# compile every kernel once before the sanitizers run (the cache is then shared)
env CK_RUN_CASE=quick MOERT_QUICK_MAX=0 "$T/test_gpu_forward" >"$LOGS/warm.log" 2>&1
env MOERT_PREFILL_T=256 "$T/test_gpu_prefill" >"$LOGS/warm-prefill.log" 2>&1

run_one() { # tool name env program
  local tool=$1 name=$2 envs=$3 prog=$4 flags=$5 start rc
  start=$(date +%s)
  # shellcheck disable=SC2086
  env $envs timeout "$TIMEOUT" "$SAN" --tool "$tool" --error-exitcode 99 $flags \
    "$T/$prog" >"$LOGS/$tool-$name.log" 2>&1
  rc=$?
  echo "$tool $name: exit $rc, $(( $(date +%s) - start )) s, $(grep -E '(ERROR|RACECHECK|HAZARD|INITCHECK|SYNCCHECK) SUMMARY' "$LOGS/$tool-$name.log" | tail -1)"
}
export -f run_one
export SAN T TIMEOUT LOGS

start=$(date +%s)
for tool in memcheck racecheck initcheck synccheck; do
  for j in "${jobs_list[@]}"; do
    IFS='|' read -r name envs prog flags <<<"$j"
    [[ "$tool-$name" =~ ${MOERT_SANITIZE_ONLY:-.} ]] || continue
    printf '%s\0%s\0%s\0%s\0%s\0' "$tool" "$name" "$envs" "$prog" "$flags"
  done
done | xargs -0 -n 5 -P "${MOERT_SANITIZE_JOBS:-8}" bash -c 'run_one "$@"' _ | sort | tee "$LOGS/summary.txt"
echo "all jobs: $(( $(date +%s) - start )) s" | tee -a "$LOGS/summary.txt"
tar -C "$LOGS" -czf "$LOGS/../sanitize-logs.tar.gz" . 2>/dev/null # one file to fetch
fails=$(grep -c ': exit [1-9]' "$LOGS/summary.txt")
echo "jobs not clean: $fails" | tee -a "$LOGS/summary.txt"
[ "$fails" = 0 ]
