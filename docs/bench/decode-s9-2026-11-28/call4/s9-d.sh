#!/usr/bin/env bash
# session 9, call 4: row tiles written by device routing (route_plan / plan_assign) so the
# forward skips moert_prefill_tiles, on top of c76bcb3 (PDL on the prefill chain): tests,
# memcheck, A/B alternated against MOERT_CUDA_ROUTE_TILES=0, then the decode record with peers
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
W=/tmp/rec; rm -rf $W; mkdir -p $W/logs
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; cat $OUT/machine.txt
fails=0
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $W/logs/$name.log 2>&1; local rc=$?
  [ $rc = 0 ] || fails=$((fails+1))
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks|ERROR SUMMARY' $W/logs/$name.log | tail -1)"
  grep -E ":F:|:E:" $W/logs/$name.log | head -5; }
run quick 200 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
run route 200 CK_RUN_CASE=route build-gpu/tests/test_gpu_forward
run forward 240 CK_RUN_CASE=forward build-gpu/tests/test_gpu_forward
run prefill 200 build-gpu/tests/test_gpu_prefill
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
run memcheck-quick 200 MOERT_QUICK_SPLITK=0 CK_RUN_CASE=quick $S --tool memcheck build-gpu/tests/test_gpu_forward
for r in 1 2 3; do
  for v in 1 0; do
    echo "# $v $r" >> $W/ab.jsonl
    MOERT_CUDA_ROUTE_TILES=$v timeout 60 build-gpu/moert bench --backend cuda --stage forward --tokens 2,8,16,32,64,128,256,512 --json >> $W/ab.jsonl 2>&1
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
echo "fails=$fails t=$(( $(date +%s) - t0 ))"
if [ $fails = 0 ]; then
  OUT=$W/decode PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm \
    timeout 300 tools/bench-gpu.sh build-gpu .device/torch_peers.py > $W/logs/bench-decode.log 2>&1
  echo "decode record rc=$? $(( $(date +%s) - t0 )) s"
  python3 -c "
import json
for l in open('$W/decode/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.2f us x%.3f peer %s' % (r['us'], r.get('ratio',0), r.get('peer_torch_grouped_mm_us','')))
" 2>&1 | head -40
  tail -3 $W/decode/run48.txt
  timeout 120 build-gpu/moert bench --backend cuda --stage prefill --tokens 1024,8192,32768 --json > $W/prefill-q30.jsonl 2>&1
  python3 -c "
import json
for l in open('$W/prefill-q30.jsonl'):
    if l.startswith('{'): r=json.loads(l); print('prefill', r['T'], r.get('us'), r.get('tflops'), r.get('ratio'))
"
fi
cd $W && tar cf $OUT/rec.tar . 
echo "total $(( $(date +%s) - t0 )) s"
