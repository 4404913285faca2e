#!/usr/bin/env bash
# s19 call 6: the final tree (the PDL router reverted; its NaN tests kept): test_gpu_forward's
# route cases, which now also check a clean multi-CTA step after a NaN and NaNs in two CTAs
set -u; . tools/device-env.sh; B=build-gpu
CK_RUN_CASE=route run route 200 $B/tests/test_gpu_forward
