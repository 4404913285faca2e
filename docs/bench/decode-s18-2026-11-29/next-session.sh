#!/usr/bin/env bash
# For the nineteenth session's first device call (written at the end of the eighteenth: its
# device time was spent).  Build main into build-gpu here, then tools/build-trace.sh build-gpu
# (build-gpu/tools/libmoert_trace.so, a CUDA injection library: tools/trace/cupti_trace.c), carry
# ["build-gpu", ".device"], run this (about 3 minutes).
# 1. The kernel timeline of a layer (not yet run: first see that the tracer loads and that
#    graph replays come with their kernels) at the sizes where issue 4 is not met:
#    Qwen3-30B-A3B T=1, 2, 512; Qwen3-235B-A22B T=1; Mixtral-8x7B T=512.  What to read: the
#    gap from each kernel's predecessor's end to its start (negative: PDL overlap), the
#    routing's share before the first GEMM, the combine's after the last, the GEMMs' spans
#    against their floors (bytes / copy rate).
# 2. The same at T=512 with MOERT_CUDA_PDL=0 (the overlap PDL buys, kernel by kernel) and with
#    gu-early.patch's idea in mind: when do the gate/up GEMM's CTAs start during the routing?
#    (The trace gives each kernel's first CTA start, not every CTA's: a kernel that starts
#    before its predecessor ends had its first CTAs resident then.)
set -u
t0=$(date +%s)
. tools/device-env.sh
B=build-gpu
ls -la $B/tools/libmoert_trace.so || exit 1
trace q30-t1 qwen3-30b-a3b 1
trace q30-t2 qwen3-30b-a3b 2
trace q30-t512 qwen3-30b-a3b 512
trace q30-t512-nopdl qwen3-30b-a3b 512 MOERT_CUDA_PDL=0
trace q235-t1 qwen3-235b-a22b 1
trace mix-t512 mixtral-8x7b 512
ls -la /tmp/trace-*.csv
head -3 /tmp/trace-q30-t1.csv; grep -c . /tmp/trace-q30-t1.csv
echo "total $(( $(date +%s) - t0 )) s"
