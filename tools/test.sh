#!/usr/bin/env bash
# Builds moert and runs the whole test suite: a -Werror build with every test (CPU, and
# NVRTC kernel compiles where the CUDA toolkit's NVRTC is present; GPU tests skip with a
# message where there is no GPU), then the same suite under AddressSanitizer and
# UndefinedBehaviorSanitizer, then the bindings' tests (tools/test-bindings.sh), then the
# threaded tests under ThreadSanitizer, the CPU path under valgrind memcheck, and each
# libFuzzer target for $MOERT_FUZZ_SECONDS (default 30) s (tools/fuzz.sh).  Installs the
# Check framework, valgrind and clang first if they are missing.
# Usage: tools/test.sh            (from the repository root; .ci/run calls exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v cc >/dev/null || need_pkgs+=(gcc)
[ -f /usr/include/check.h ] || need_pkgs+=(check)
[ -f /usr/lib/x86_64-linux-gnu/libsubunit.a ] || [ "$(uname -m)" != x86_64 ] || need_pkgs+=(libsubunit-dev)
command -v valgrind >/dev/null || need_pkgs+=(valgrind)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "== installing ${need_pkgs[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

jobs=$(nproc 2>/dev/null || echo 2)
run_suite() { # build-dir, extra cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMOERT_WERROR=ON -DMOERT_BUILD_TESTS=ON "$@" >/dev/null
  if ! cmake --build "$dir" -j "$jobs" >"$dir/build.log" 2>&1; then
    cat "$dir/build.log"; return 1
  fi
  if grep -E "warning:" "$dir/build.log"; then return 1; fi
  (cd "$dir" && ctest --output-on-failure -j "$jobs" ${CTEST_ARGS:-})
}

echo "== build with -Werror and run every test"
run_suite build-test
echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_suite build-sanitize -DMOERT_SANITIZE=ON
echo "== Rust, Go and Zig bindings, against the library in build-test"
bash tools/test-bindings.sh build-test
echo "== ThreadSanitizer: the threaded tests (concurrency, forward and fixtures on the thread pool)"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" CTEST_ARGS="-R ^test_(concurrency|forward|fixtures)$" \
  run_suite build-tsan -DMOERT_SANITIZE_THREAD=ON -DMOERT_BUILD_TOOLS=OFF
echo "== valgrind memcheck of the CPU path (no error, no leak), on the build-test binaries"
for t in test_misuse test_concurrency test_api test_router test_plan test_fixtures test_forward; do
  start=$(date +%s)
  if ! CK_FORK=no MOERT_CONCURRENCY_LAYERS=2000 valgrind -q --error-exitcode=1 --leak-check=full \
      --errors-for-leak-kinds=definite,indirect,possible --show-leak-kinds=definite,indirect,possible \
      "build-test/tests/$t" >"build-test/valgrind-$t.log" 2>&1; then
    tail -50 "build-test/valgrind-$t.log"; echo "valgrind: $t FAILED"; exit 1
  fi
  echo "valgrind $t: no error, no leak ($(tail -1 "build-test/valgrind-$t.log"); $(( $(date +%s) - start )) s)"
done
echo "== libFuzzer: router, plan, ABI arguments, ${MOERT_FUZZ_SECONDS:-30} s each"
bash tools/fuzz.sh "${MOERT_FUZZ_SECONDS:-30}"
echo "== all tests passed"
