#!/usr/bin/env bash
# Records the CPU benchmarks of moert (host route + plan on one core; CPU forward against a
# memcpy of the same bytes) into docs/bench/cpu-<date>.md: machine, date, commands, raw output.
# Usage: tools/bench-cpu.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-bench}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMOERT_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j >/dev/null
out=docs/bench/cpu-$(date -u +%Y-%m-%d).md
{
  echo "# CPU benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with local changes)')"
  echo
  for cmd in "$build/moert bench --stage route --json" \
             "$build/moert bench --stage forward --tokens 1,8,32,128 --json" \
             "$build/moert run"; do
    echo "## \`${cmd#$build/}\`"
    echo
    echo '```'
    $cmd
    echo '```'
    echo
  done
} | tee "$out"
echo "wrote $out" >&2
