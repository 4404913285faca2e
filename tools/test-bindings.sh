#!/usr/bin/env bash
# Builds moert (or reuses a build dir) and runs the tests of the Rust, Go and Zig bindings
# against it: cargo test --offline (bindings/rust), go test (bindings/go), zig build test
# (bindings/zig).  Installs what is missing: Debian's golang-go, PyPI's ziglang (run as
# `python3 -m ziglang`); cargo must be present.  Every cache goes under the build dir.
# Usage: tools/test-bindings.sh [build-dir]   (default: build-bindings, configured here;
#        tools/test.sh passes build-test, which it has just built)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${1:-build-bindings}
mkdir -p "$build"
build=$(cd "$build" && pwd)

if [ ! -e "$build/libmoert.so" ]; then
  echo "== building libmoert in $build"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMOERT_BUILD_TESTS=OFF -DMOERT_BUILD_TOOLS=OFF >/dev/null
  cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target moert >/dev/null
fi

sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
if ! command -v go >/dev/null; then
  echo "== installing golang-go"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq golang-go >/dev/null
fi
if ! python3 -m ziglang version >/dev/null 2>&1; then
  echo "== installing ziglang (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check ziglang
fi
command -v cargo >/dev/null || { echo "cargo is not installed: the Rust bindings need it" >&2; exit 1; }

timed() { # label, command...
  local label=$1 start=$SECONDS; shift
  echo "== $label"
  "$@"
  echo "== $label: passed in $((SECONDS - start)) s"
}

rust() {
  cd "$root/bindings/rust"
  MOERT_LIB_DIR="$build" MOERT_INCLUDE_DIR="$root/abi" CARGO_TARGET_DIR="$build/cargo-target" \
    cargo test --offline --quiet
}
golang() {
  cd "$root/bindings/go"
  CGO_CFLAGS="-I$root/abi" CGO_LDFLAGS="-L$build -Wl,-rpath,$build" GOPROXY=off GOFLAGS=-mod=mod \
    go test -count=1 ./...
}
zig() {
  cd "$root/bindings/zig"
  python3 -m ziglang build test -Dmoert-lib-dir="$build" -Dmoert-include-dir="$root/abi" \
    --cache-dir "$build/zig-cache" --summary all
}

timed "rust: cargo test --offline" rust
timed "go: go test" golang
timed "zig: zig build test" zig
echo "== bindings: all passed"
