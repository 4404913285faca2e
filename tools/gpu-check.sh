#!/usr/bin/env bash
# gpu-check.sh — runs the CUDA backend's tests (CTest labels gpu and nvrtc) on a machine
# with a GPU and keeps the logs.  Build first, on any machine (CUDA is dlopen'd, Check is
# linked statically, so the binaries travel):
#     cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release && cmake --build build-gpu -j
# then, on the GPU machine, from the repository root:
#     tools/gpu-check.sh [build-dir]        (logs under $OUT, else /tmp/moert-gpu-check)
# The build folder holds absolute paths from where it was configured; when the repository
# sits elsewhere here, a symbolic link from the old path to this checkout makes them valid.
set -u -o pipefail
BUILD=${1:-build-gpu}
LOGS=${OUT:-/tmp/moert-gpu-check}
mkdir -p "$LOGS"
ROOT=$(pwd)

configured=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
if [ -n "$configured" ] && [ "$configured" != "$ROOT" ] && [ ! -e "$configured" ]; then
  mkdir -p "$(dirname "$configured")" && ln -s "$ROOT" "$configured"
  echo "linked $configured -> $ROOT (the build folder's configured source path)"
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -a)"
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null) $(git -C "$ROOT" status --short 2>/dev/null | wc -l) files changed"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nvidia-smi
  ls -l /usr/local/cuda/lib64/libnvrtc.so* 2>&1
} >"$LOGS/machine.txt" 2>&1
head -4 "$LOGS/machine.txt"
sed -n 5,6p "$LOGS/machine.txt"

cd "$BUILD" || exit 2
start=$(date +%s)
ctest -L 'gpu|nvrtc' --output-on-failure -V 2>&1 | tee "$LOGS/ctest.log"
rc=${PIPESTATUS[0]}
echo "ctest -L 'gpu|nvrtc': exit $rc after $(( $(date +%s) - start )) s" | tee -a "$LOGS/ctest.log"

# `moert run` twice over a stack of two layers (the second layer's input is the first's
# output, a megabyte or more of it): the checksums must be equal.  They were not before the
# tool uploaded on its own stream (session 10: the next step could read its input buffer
# before the upload landed).
if [ -x moert ]; then
  sums=$(for i in 1 2; do MOERT_CACHE_DIR="$PWD/jit-cache" timeout 120 ./moert run --backend cuda \
           --model qwen3-30b-a3b --tokens 512 --layers 2 --weight-sets 1 2>&1 | grep checksum; done)
  echo "$sums" | tee "$LOGS/run-checksums.txt"
  if [ "$(echo "$sums" | grep -c checksum)" != 2 ] || [ "$(echo "$sums" | sort -u | wc -l)" != 1 ]; then
    echo "moert run: two runs of the same stack gave different (or no) checksums"
    rc=1
  fi
fi

# The small-layer cases under compute-sanitizer: out-of-bounds and misaligned accesses
# (memcheck) in every kernel and plan block size, shared-memory races (racecheck) in the
# bf16 ones.  Skipped with MOERT_GPU_CHECK_SANITIZE=0.
if [ "${MOERT_GPU_CHECK_SANITIZE:-1}" != 0 ]; then
  SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [ -x "$SAN" ]; then
    for tool in memcheck racecheck; do
      max=12
      [ "$tool" = racecheck ] && max=4
      start=$(date +%s)
      CK_RUN_CASE=quick MOERT_QUICK_MAX=$max MOERT_CACHE_DIR="$PWD/jit-cache" timeout ${MOERT_SANITIZE_TIMEOUT:-150} \
        "$SAN" --tool "$tool" --error-exitcode 99 tests/test_gpu_forward >"$LOGS/$tool.log" 2>&1
      san_rc=$?
      echo "compute-sanitizer --tool $tool (quick cases): exit $san_rc after $(( $(date +%s) - start )) s"
      tail -5 "$LOGS/$tool.log"
      [ "$san_rc" = 0 ] || rc=1
    done
  else
    echo "compute-sanitizer not found: sanitizer runs skipped"
  fi
fi
exit "$rc"
