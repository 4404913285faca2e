#!/usr/bin/env bash
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
MOERT_PREFILL_T=128 run prefill128 100 $B/tests/test_gpu_prefill
MOERT_PREFILL_T=512 run prefill512 100 $B/tests/test_gpu_prefill
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
echo "nsys: $NSYS"
for v in 1 0; do
  MOERT_PREFILL_GU_EARLY=$v timeout 120 $NSYS profile -o /tmp/p$v --cuda-graph-trace=node -t cuda --force-overwrite true \
    $B/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 512 > /dev/null 2>&1
  timeout 120 $NSYS stats --report cuda_gpu_trace --format csv -o /tmp/t$v /tmp/p$v.nsys-rep > /dev/null 2>&1
  ls /tmp/t$v* ; f=$(ls /tmp/t${v}*.csv | head -1)
  python3 - "$f" $v <<'PY'
import csv,sys,statistics as st
rows=list(csv.DictReader(open(sys.argv[1])))
k=[(int(r['Start (ns)']),int(r['Duration (ns)']),r['Name']) for r in rows if 'moert' in r['Name']]
k.sort()
# last 400 kernels: graph replays
k=k[-400:]
# per gate/up gemm: start relative to the previous tiles kernel start and its end relative to tiles end
out=[]
for i,(s,d,n) in enumerate(k):
  if n.startswith('moert_prefill_tiles') and i+2<len(k):
    s1,d1,n1=k[i+1]; s2,d2,n2=k[i+2]; s0,d0,n0=k[i-3] if i>=3 else (0,0,'')
    out.append((s1-s, (s1+d1)-(s+d), d1, s2+d2-(s+d)))
print('GU_EARLY',sys.argv[2],'n',len(out))
for j,name in enumerate(['gu_start-tiles_start','gu_end-tiles_end','gu_dur','down_end-tiles_end']):
  print(' ',name, round(st.median([o[j] for o in out])/1000,2),'us')
seq=[n.split('(')[0][:24] for s,d,n in k[-12:]]
print(' ',seq)
for s,d,n in k[-12:]: print('   ',round((s-k[-12][0])/1000,2),round(d/1000,2),n[:40])
PY
done
echo "total $(( $(date +%s) - t0 )) s"
