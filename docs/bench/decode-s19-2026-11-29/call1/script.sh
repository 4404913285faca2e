# Session 19, call 1: the tracer's first run (decode-s18 next-session.sh) and test_gpu_forward on 49dcd00
{ bash docs/bench/decode-s18-2026-11-29/next-session.sh 2>&1 | grep -v '^ *$' | head -c 20000
  . tools/device-env.sh; run forward 300 build-gpu/tests/test_gpu_forward; } 2>&1 | tee $OUT/summary.txt
