#!/usr/bin/env bash
# session 9, call 3: programmatic dependent launch on the routed prefill chain (tiles, gate/up,
# down, combine; the GEMMs trigger on their last item).  Each boundary alone under a short
# timeout first (the 2026-11-27 try hung at T=32), then all; tests; T=16..512 alternated.
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name --format=csv,noheader
B=build-gpu/moert
$B bench --backend cuda --stage forward --tokens 32 --json > /dev/null 2>&1 # JIT cache warm
for bits in 1 2 4 8 15; do
  MOERT_CUDA_PREFILL_PDL=$bits timeout 40 $B bench --backend cuda --stage forward --tokens 32,512 --json > $OUT/bits-$bits.jsonl 2>&1
  echo "bits=$bits rc=$? $(python3 -c "import json;print([(r['T'],r['us']) for r in map(json.loads,[l for l in open('$OUT/bits-$bits.jsonl') if l.startswith('{')])])") t=$(( $(date +%s) - t0 ))"
done
for c in quick forward; do
  CK_RUN_CASE=$c timeout 200 build-gpu/tests/test_gpu_forward > $OUT/$c.log 2>&1
  echo "$c rc=$? $(grep Checks $OUT/$c.log) t=$(( $(date +%s) - t0 ))"; grep -E ":F:|:E:" $OUT/$c.log | head -5
done
timeout 200 build-gpu/tests/test_gpu_prefill > $OUT/prefill.log 2>&1
echo "prefill rc=$? $(grep Checks $OUT/prefill.log) t=$(( $(date +%s) - t0 ))"; grep -E ":F:|:E:" $OUT/prefill.log | head -5
S=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
timeout 100 $S --tool synccheck $B bench --backend cuda --stage forward --tokens 32 --iters 3 > $OUT/synccheck.log 2>&1
echo "synccheck rc=$? $(grep 'ERROR SUMMARY' $OUT/synccheck.log) t=$(( $(date +%s) - t0 ))"
for r in 1 2 3; do
  for v in 15 0; do
    echo "# $v $r" >> $OUT/sweep.jsonl
    MOERT_CUDA_PREFILL_PDL=$v timeout 60 $B bench --backend cuda --stage forward --tokens 2,8,16,32,64,128,256,512 --json >> $OUT/sweep.jsonl 2>&1
  done
done
python3 - $OUT/sweep.jsonl <<'PY'
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
echo "# 48 layers" >> $OUT/sweep.jsonl
for v in 15 0; do MOERT_CUDA_PREFILL_PDL=$v timeout 60 $B run --backend cuda --layers 48 --tokens 32 2>&1 | tail -3; done
echo "total $(( $(date +%s) - t0 )) s"
