#!/usr/bin/env bash
# Builds moert and runs the whole test suite: a -Werror build with every test (CPU, and
# NVRTC kernel compiles where the CUDA toolkit's NVRTC is present; GPU tests skip with a
# message where there is no GPU), then the same suite under AddressSanitizer and
# UndefinedBehaviorSanitizer, then the bindings' tests (tools/test-bindings.sh).  Installs
# the Check framework first if it is missing.
# Usage: tools/test.sh            (from the repository root; .ci/run calls exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v cc >/dev/null || need_pkgs+=(gcc)
[ -f /usr/include/check.h ] || need_pkgs+=(check)
[ -f /usr/lib/x86_64-linux-gnu/libsubunit.a ] || [ "$(uname -m)" != x86_64 ] || need_pkgs+=(libsubunit-dev)
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
  (cd "$dir" && ctest --output-on-failure -j "$jobs")
}

echo "== build with -Werror and run every test"
run_suite build-test
echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_suite build-sanitize -DMOERT_SANITIZE=ON
echo "== Rust, Go and Zig bindings, against the library in build-test"
bash tools/test-bindings.sh build-test
echo "== all tests passed"
