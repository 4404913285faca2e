#!/usr/bin/env bash
# twelfth session, call 4 (main = 8a7aeb3's code): does the gemm's code size matter at the
# decode sizes?  A/B of the existing hooks that shrink the epilogue (MOERT_PREFILL_EPI_WIDE=0)
# or change the down rows (MOERT_PREFILL_YPAIR_ACT=0); SASS sizes of the cached modules
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
B=build-gpu
b() { local tag=$1 model=$2 toks=$3; shift 3
  echo "# $model | $tag | $r" >> $OUT/ab.jsonl
  env "$@" timeout 60 $B/moert bench --backend cuda --stage forward --model $model --tokens $toks --json >> $OUT/ab.jsonl 2>&1; }
for r in 1 2; do
  b default qwen3-30b-a3b 1,2,4,8,32 MOERT_X=1
  b epi4 qwen3-30b-a3b 1,2,4,8,32 MOERT_PREFILL_EPI_WIDE=0
  b f32rows qwen3-30b-a3b 1,2,4,8,32 MOERT_PREFILL_YPAIR_ACT=0
  [ $r = 2 ] && continue
  b default mixtral-8x7b 1,2,4 MOERT_X=1
  b epi4 mixtral-8x7b 1,2,4 MOERT_PREFILL_EPI_WIDE=0
  b default qwen3-235b-a22b 1,2,4 MOERT_X=1
  b epi4 qwen3-235b-a22b 1,2,4 MOERT_PREFILL_EPI_WIDE=0
done
python3 tools/ab-table.py $OUT/ab.jsonl
echo "ab done $(( $(date +%s) - t0 )) s"
CUOBJ=$(command -v cuobjdump || ls /usr/local/cuda*/bin/cuobjdump 2>/dev/null | head -1)
echo "cuobjdump: $CUOBJ"
mkdir -p /tmp/cub
python3 - <<'PY'
import glob, os
for f in glob.glob('/tmp/jitc/*'):
    b = open(f, 'rb').read(); i = b.find(b'\x7fELF')
    if i >= 0: open('/tmp/cub/' + os.path.basename(f) + '.cubin', 'wb').write(b[i:])
PY
for f in /tmp/cub/*.cubin; do
  [ -n "$CUOBJ" ] || break
  n=$($CUOBJ -sass $f 2>/dev/null | grep -cE '^\s+/\*[0-9a-f]{4,}\*/')
  k=$($CUOBJ -sass $f 2>/dev/null | grep -E 'Function :' | tr '\n' ' ')
  echo "$(basename $f): $n SASS instructions; $k"
done | sort -t: -k2 -n | tail -40
echo "total $(( $(date +%s) - t0 )) s"
