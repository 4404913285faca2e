#!/usr/bin/env bash
# session 9, call 5: the route-tiles pair limit (2048): tests, then auto / 0 / 1 alternated at
# T=128..1024 and the 48-layer step
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
W=/tmp/rec; rm -rf $W; mkdir -p $W/logs
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; date -u
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $W/logs/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks|ERROR SUMMARY' $W/logs/$name.log | tail -1)"
  grep -E ":F:|:E:" $W/logs/$name.log | head -5; }
run quick 200 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
run forward 240 CK_RUN_CASE=forward build-gpu/tests/test_gpu_forward
run forward-rt1 240 MOERT_CUDA_ROUTE_TILES=1 CK_RUN_CASE=forward build-gpu/tests/test_gpu_forward
run prefill 200 build-gpu/tests/test_gpu_prefill
for r in 1 2 3; do
  for v in auto 0 1; do
    echo "# $v $r" >> $W/ab.jsonl
    MOERT_CUDA_ROUTE_TILES=$v timeout 60 build-gpu/moert bench --backend cuda --stage forward --tokens 16,128,256,512,1024 --json >> $W/ab.jsonl 2>&1
  done
done
python3 - $W/ab.jsonl <<'PY'
import json,sys
cur='';res={}
for l in open(sys.argv[1]):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); res.setdefault(r['T'],{}).setdefault(cur,[]).append(r['us'])
    elif l.strip(): print('!', l.strip()[:200])
for T in sorted(res):
    print(T, {k:[round(x,2) for x in v] for k,v in res[T].items()})
PY
timeout 60 build-gpu/moert run --backend cuda --layers 48 --tokens 32 > $W/run48.txt 2>&1; tail -3 $W/run48.txt
cd $W && tar cf $OUT/rec.tar .
echo "total $(( $(date +%s) - t0 )) s"
