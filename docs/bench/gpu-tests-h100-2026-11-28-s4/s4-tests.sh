#!/usr/bin/env bash
# session 4, call 1: the GPU tests that compare device routing and plans with the host's
# (the host router and plan changed: AVX-512 packed keys, vectorised plan), then a short
# decode bench with host routing reported beside device routing
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $OUT/machine.txt
lscpu | grep -E "Model name|^CPU\(s\)" >> $OUT/machine.txt
grep -o -w -E "avx512f|avx512vl|avx512bw|avx512dq|avx2" /proc/cpuinfo | sort | uniq -c >> $OUT/machine.txt
cat $OUT/machine.txt
run() { # name timeout env... cmd
  local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5
}
run forward-route 200 CK_RUN_CASE=route build-gpu/tests/test_gpu_forward
run forward-route-avx2 150 CK_RUN_CASE=route MOERT_CPU_ISA=avx2 build-gpu/tests/test_gpu_forward
run reliability 250 build-gpu/tests/test_gpu_reliability
run forward-quick 150 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
grep -iE "262144|sample|route" $OUT/reliability.log | head -6
s=$(date +%s)
timeout 120 build-gpu/moert bench --backend cuda --stage forward --tokens 1,8,32,128,512 --json > $OUT/decode-host-route.jsonl 2>&1
echo "bench rc=$? $(( $(date +%s) - s )) s"
python3 -c "
import json
for l in open('$OUT/decode-host-route.jsonl'):
    if l.startswith('{'):
        r=json.loads(l); print(r['model'][:10], r['T'], r['us'], r.get('ratio'), r.get('host_route_us'))
"
echo "total $(( $(date +%s) - t0 )) s"
