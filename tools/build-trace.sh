#!/usr/bin/env bash
# build-trace.sh BUILD_DIR — tools/trace/cupti_trace.c as BUILD_DIR/tools/libmoert_trace.so (a CUDA
# injection library for kernel timelines; see that file).  Needs the CUDA toolkit's cupti.h
# and libcupti; not part of the CMake build or CI.
set -eu
out=${1:-build}/tools
cuda=${CUDA_HOME:-/usr/local/cuda}
inc=$(dirname "$(ls "$cuda"/include/cupti.h "$cuda"/extras/CUPTI/include/cupti.h 2>/dev/null | head -1)")
lib=$(dirname "$(ls "$cuda"/lib64/libcupti.so "$cuda"/lib/libcupti.so "$cuda"/extras/CUPTI/lib64/libcupti.so 2>/dev/null | head -1)")
mkdir -p "$out"
cc -std=c11 -O2 -Wall -Wextra -Werror -shared -fPIC -I"$inc" -I"$cuda/include" \
  "$(dirname "$0")/trace/cupti_trace.c" -o "$out/libmoert_trace.so" -L"$lib" -lcupti \
  -Wl,-rpath,"$cuda/lib64:$cuda/lib:$cuda/extras/CUPTI/lib64:$lib"
echo "$out/libmoert_trace.so"
