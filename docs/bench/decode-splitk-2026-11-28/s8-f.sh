#!/usr/bin/env bash
# session 8, call 6 (final tree of v9): tests (quick incl. splitk, forward incl. graph replay
# T=1), memcheck of splitk, fused 0 / auto alternated at T=1,2, then the decode record with
# the peers and the 48-layer step (tools/bench-gpu.sh); folders packed in tars
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
W=/tmp/rec; rm -rf $W; mkdir -p $W/logs
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; cat $OUT/machine.txt
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $W/logs/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $W/logs/$name.log | tail -1)"
  grep -E ":F:|:E:" $W/logs/$name.log | head -5; }
run quick 200 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
run forward 240 CK_RUN_CASE=forward build-gpu/tests/test_gpu_forward
grep -E "graph replay|split-K" $W/logs/forward.log | head -8
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
MOERT_QUICK_MAX=0 MOERT_QUICK_PREFILL=0 CK_RUN_CASE=quick timeout 150 $S --tool memcheck build-gpu/tests/test_gpu_forward > $W/logs/memcheck-splitk.log 2>&1
echo "memcheck rc=$? $(grep -c Passed $W/logs/memcheck-splitk.log) passed; $(tail -1 $W/logs/memcheck-splitk.log)"
for r in 1 2 3; do
  for f in 0 auto; do
    echo "# fused=$f run $r" >> $W/ab.jsonl
    if [ $f = 0 ]; then e="MOERT_CUDA_DEC_FUSED=0"; else e="MOERT_X=1"; fi
    env $e timeout 60 build-gpu/moert bench --backend cuda --stage forward --tokens 1,2 --json >> $W/ab.jsonl 2>&1
  done
done
python3 -c "
import json
cur=''
res={}
for l in open('$W/ab.jsonl'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); res.setdefault(cur,{}).setdefault(r['T'],[]).append(r['us'])
for k,v in res.items(): print(k, v)
"
OUT=$W/decode PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm \
  timeout 300 tools/bench-gpu.sh build-gpu .device/torch_peers.py > $W/logs/bench-decode.log 2>&1
echo "decode record rc=$? $(( $(date +%s) - t0 )) s"
python3 -c "
import json
for l in open('$W/decode/bench.jsonl'):
    r=json.loads(l); print(r['model'][:12], r['T'], '%.2f us x%.3f peer %s' % (r['us'], r.get('ratio',0), r.get('peer_torch_grouped_mm_us','')))
" 2>&1 | head -40
tail -3 $W/decode/run48.txt
cd $W && tar cf $OUT/decode.tar decode && tar cf $OUT/logs.tar logs && cp ab.jsonl $OUT/
echo "total $(( $(date +%s) - t0 )) s"
