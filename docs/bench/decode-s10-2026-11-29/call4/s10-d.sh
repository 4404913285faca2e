#!/usr/bin/env bash
# session 10, call 4: the v11 record on main (ebf56e8) with the torch peer, then persistence
# A/B on Mixtral-8x7B (column tile outer by the new rule)
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
mkdir -p $OUT/rec
OUT=$OUT/rec PEERS_TIMEOUT=150 PEERS_T=1,8,32,128,512 PEERS_METHODS=torch_grouped_mm \
  bash tools/bench-gpu.sh build-gpu .device/torch_peers.py > $OUT/rec/stdout.txt 2>&1
echo "record t=$(( $(date +%s) - t0 ))"; tail -12 $OUT/rec/run48.txt
for r in 1 2; do
  for cfg in MOERT_X=1 MOERT_PREFILL_PERSISTENT=1; do
    echo "# mixtral-8x7b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 build-gpu/moert bench --backend cuda --stage forward --model mixtral-8x7b \
      --tokens 256,512,1024 --json >> $OUT/ab.jsonl 2>&1
    echo "# mixtral-8x7b | $cfg | $r" >> $OUT/ab.jsonl
    env $cfg timeout 60 build-gpu/moert bench --backend cuda --stage prefill --model mixtral-8x7b \
      --tokens 4096 --json >> $OUT/ab.jsonl 2>&1
  done
  echo "round $r t=$(( $(date +%s) - t0 ))"
done
python3 - $OUT/ab.jsonl <<'PY'
import json,sys
cur=None;res={}
for l in open(sys.argv[1]):
    if l.startswith('#'): p=[x.strip() for x in l[1:].split('|')]; cur=(p[0],p[1]); continue
    if l.startswith('{'):
        r=json.loads(l); res.setdefault((cur[0],r.get('stage',''),r['T']),{}).setdefault(cur[1],[]).append((round(r['us'],1),r.get('ratio'),r.get('tflops')))
    elif l.strip(): print('!', l.strip()[:200])
for k in sorted(res):
    print(k)
    for c,v in res[k].items(): print('   %-30s %s' % (c, v))
PY
python3 -c "
import json
for l in open('$OUT/rec/bench.jsonl'):
    r=json.loads(l); print(r['model'], r['T'], round(r['us'],2), r.get('ratio'), r.get('peer_torch_grouped_mm_us',''))"
echo "total $(( $(date +%s) - t0 )) s"
