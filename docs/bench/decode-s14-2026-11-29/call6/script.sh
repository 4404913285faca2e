#!/usr/bin/env bash
# Call 6 (the command line given to the device tool): the GPU forward suite alone on d09f07a,
# after call 5's 170 s limit cut it on a cold JIT cache.
. tools/device-env.sh; t0=$(date +%s); run forward 300 build-gpu/tests/test_gpu_forward; echo "$(( $(date +%s) - t0 )) s"; grep -cE ":P:" $OUT/forward.log; tail -3 $OUT/forward.log
