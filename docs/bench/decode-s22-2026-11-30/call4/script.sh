#!/usr/bin/env bash
# s22 call 4: MOERT_PREFILL_PF=G (the producer asks L2 for the weight boxes G..2G-1 K steps
# ahead, G at a time: G x 128 bytes of each weight row requested together, as the Triton
# peer's BLOCK_K=256 asks 512) against the default, two rounds, at the decode sizes where the
# Triton GEMMs stream faster (call 3) and the prefill sizes T=1024/2048
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
export AB_TIMEOUT=90
build-gpu/moert run --backend cuda --model qwen3-30b-a3b --tokens 512 --layers 2 2>&1 | grep -i checksum | head -2
MOERT_PREFILL_PF=4 build-gpu/moert run --backend cuda --model qwen3-30b-a3b --tokens 512 --layers 2 2>&1 | grep -i checksum | head -2
for r in 1 2; do
  for pf in 0 2 4 8; do
    V=MOERT_PREFILL_PF=$pf; [ $pf = 0 ] && V=MOERT_X=0
    ab pf$pf forward qwen3-30b-a3b 8,32,128,512 $V
    ab pf$pf prefill qwen3-30b-a3b 1024,2048 $V
    ab pf$pf forward qwen3-235b-a22b 32 $V
    ab pf$pf forward mixtral-8x7b 8 $V
  done
  echo "round $r $(( $(date +%s) - t0 )) s"
done
python3 -c "
import json
tag = None
for l in open('$OUT/ab.jsonl'):
    if l.startswith('#'): tag = l.split('|')[1].strip(); m = l.split('|')[0][2:12]; continue
    if l.startswith('{'):
        r=json.loads(l); print(m, tag, r['stage'][:4], r['T'], r['us'], r.get('stream_us'), r.get('sm_mhz_min'), r.get('sm_mhz_max'), r.get('power_w_max'), r.get('clock_events'))
" | sort -k1,1 -k3,3 -k4,4n -k2,2 
echo "total $(( $(date +%s) - t0 )) s"
