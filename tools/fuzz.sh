#!/usr/bin/env bash
# fuzz.sh — builds the libFuzzer targets of tests/fuzz/ with clang (AddressSanitizer and
# UndefinedBehaviorSanitizer, linking the library's sources directly, in build-fuzz/) and
# runs each for a bounded time on its committed seed corpus (tests/fuzz/corpus/<target>/,
# read only; new inputs go to build-fuzz/corpus/<target>/).  Any crash, sanitizer report or
# failed check stops it with a non-zero exit and leaves the reproducer in build-fuzz/.
# Usage: tools/fuzz.sh [seconds per target, default 60] [target ...]   ($MOERT_FUZZ_DIR: build dir)
#        (targets: router plan abi; installs clang if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(router plan abi)

CLANG=${CLANG:-}
if [ -z "$CLANG" ]; then
  for c in clang clang-16 clang-15 clang-14; do command -v "$c" >/dev/null && { CLANG=$c; break; }; done
fi
probe() { echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' >"$1/probe.c" &&
  "$CLANG" -fsanitize=fuzzer,address,undefined "$1/probe.c" -o "$1/probe" 2>/dev/null; }
OUTDIR=${MOERT_FUZZ_DIR:-build-fuzz}
mkdir -p "$OUTDIR"
if [ -z "$CLANG" ] || ! probe "$OUTDIR"; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "== installing clang and its libFuzzer runtime"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang >/dev/null
  CLANG=clang
  if ! probe "$OUTDIR"; then
    ver=$("$CLANG" --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -1)
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "libclang-rt-$ver-dev" >/dev/null
    probe "$OUTDIR" || { echo "clang cannot build a libFuzzer target"; exit 1; }
  fi
fi

# the library: runtime/ and runtime/cpu/ (no CUDA backend: it is not what is fuzzed here)
SOURCES=(runtime/*.c runtime/cpu/*.c)
FLAGS=(-std=c11 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -ffp-contract=off -fno-math-errno -D_GNU_SOURCE
       -DMOERT_BUILDING_LIBRARY -Iabi -Iruntime -Wall -Wextra -Werror)
for t in "${TARGETS[@]}"; do
  echo "== building fuzz_$t"
  "$CLANG" "${FLAGS[@]}" "tests/fuzz/fuzz_$t.c" "${SOURCES[@]}" -o "$OUTDIR/fuzz_$t" -lm -lpthread
done

# ASan: huge allocations answer NULL (the library reports MOERT_ERR_OUT_OF_MEMORY)
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
total=0
for t in "${TARGETS[@]}"; do
  work="$OUTDIR/corpus/$t"
  mkdir -p "$work" "tests/fuzz/corpus/$t"
  echo "== fuzz_$t for ${SECONDS_EACH} s (seeds: $(ls "tests/fuzz/corpus/$t" | wc -l))"
  start=$(date +%s)
  # -rss_limit_mb / -malloc_limit_mb: the ABI target asks for large scratches on purpose
  if ! "$OUTDIR/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=4096 \
      -malloc_limit_mb=65536 -artifact_prefix="$OUTDIR/crash-$t-" -print_final_stats=1 \
      "$work" "tests/fuzz/corpus/$t" >"$OUTDIR/fuzz_$t.log" 2>&1; then
    tail -60 "$OUTDIR/fuzz_$t.log"
    echo "fuzz_$t FAILED: reproducer in $OUTDIR/crash-$t-*; log in $OUTDIR/fuzz_$t.log"
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$OUTDIR/fuzz_$t.log" | tail -2
  total=$((total + $(date +%s) - start))
done
echo "== fuzzing passed: ${#TARGETS[@]} target(s), ${total} s, no crash and no sanitizer report"
