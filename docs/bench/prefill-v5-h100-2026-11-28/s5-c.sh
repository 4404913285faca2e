#!/usr/bin/env bash
# session 5, call 3: the plan with ballots (route tests), its duration; where the prefill
# GEMMs' consumers and producers wait (MOERT_PREFILL_PROF clock64 counters)
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; cat $OUT/machine.txt
run() { # name timeout env... cmd
  local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5
}
run forward-route 200 CK_RUN_CASE=route build-gpu/tests/test_gpu_forward
run reliability 200 build-gpu/tests/test_gpu_reliability
for T in 512 8192; do
timeout 100 ncu --clock-control none --metrics gpu__time_duration.sum -k regex:"moert_(plan|route)" --launch-skip 6 --launch-count 6 \
    build-gpu/moert bench --backend cuda --stage prefill --tokens $T --iters 1 > $OUT/ncu-plan-$T.txt 2>&1
grep -E "^  moert|duration" $OUT/ncu-plan-$T.txt | paste - - | awk '{print $1, $2, $(NF)}' | head -6
done
for v in "o1:MOERT_PREFILL_ORDER=1" "o1fp:MOERT_PREFILL_ORDER=1 MOERT_PREFILL_FUSED_GU=1 MOERT_PREFILL_PERSISTENT=1"; do
  name=${v%%:*}; envs=${v#*:}
  env $envs MOERT_PREFILL_PROF=1 timeout 100 build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/prof-$name.txt 2>&1
  echo "== prof $name rc=$? lines $(grep -c prof $OUT/prof-$name.txt)"
  python3 - $OUT/prof-$name.txt <<'PY'
import sys,collections
d=collections.defaultdict(lambda:[0]*6)
for l in open(sys.argv[1]):
    if not l.startswith('prof'): continue
    f=l.split(); kind=f[1]; tid=int(f[5].rstrip(':'))
    v=[int(f[7]),int(f[9]),int(f[11]),int(f[13]),int(f[15])]
    a=d[(kind,tid)]
    for i in range(5): a[i]+=v[i]
    a[5]+=1
for k,a in sorted(d.items()):
    n=a[5]; print(k, 'n=%d'%n, 'total %.0f wait %.0f (%.0f%%) mma %.0f (%.0f%%) epi %.0f (%.0f%%) items/cta %.1f'%(a[0]/n, a[1]/n, 100*a[1]/a[0], a[2]/n, 100*a[2]/a[0], a[3]/n, 100*a[3]/a[0], a[4]/n))
PY
done
echo "total $(( $(date +%s) - t0 )) s"
