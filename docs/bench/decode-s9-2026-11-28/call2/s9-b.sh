#!/usr/bin/env bash
# session 9, call 2: the bulk-fed split-K kernel forced (MOERT_CUDA_DEC_FUSED=1: call 1's
# bench did not take it, the path rule counts its larger shared memory) against the
# cp.async one, T=1/2 Qwen3-30B, T=1 Qwen3-235B and Mixtral; ncu of both
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for r in 1 2 3; do
  for m in qwen3-30b-a3b:1,2 qwen3-235b-a22b:1 mixtral-8x7b:1; do
    for v in bulk cpasync auto; do
      case $v in bulk) e="MOERT_CUDA_DEC_FUSED=1 MOERT_CUDA_DEC_FUSED_BULK=1";; cpasync) e="MOERT_CUDA_DEC_FUSED=1";; auto) e="MOERT_X=1";; esac
      echo "# $v ${m%%:*} $r" >> $OUT/bench.jsonl
      env $e timeout 60 build-bulk/moert bench --backend cuda --stage forward --model ${m%%:*} --tokens ${m##*:} --json >> $OUT/bench.jsonl 2>&1
    done
  done
done
python3 - $OUT/bench.jsonl <<'PY'
import json,sys
cur='';res={}
for l in open(sys.argv[1]):
    if l.startswith('#'): cur=' '.join(l.split()[1:3]); continue
    if l.startswith('{'):
        r=json.loads(l); res.setdefault((cur,r['T']),[]).append((round(r.get('us',0),2), round(r.get('ratio',0),3)))
    elif l.strip(): print('!', l.strip()[:200])
for k,v in sorted(res.items(), key=lambda kv:(kv[0][0].split()[1],kv[0][1],kv[0][0])): print(k, v)
PY
for v in bulk cpasync; do
  case $v in bulk) e="MOERT_CUDA_DEC_FUSED=1 MOERT_CUDA_DEC_FUSED_BULK=1";; cpasync) e="MOERT_CUDA_DEC_FUSED=1";; esac
  env $e timeout 90 $NCU --section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis -k regex:moert_dec_fused --launch-skip 10 --launch-count 1 build-bulk/moert bench --backend cuda --stage forward --tokens 1 --iters 5 > $OUT/ncu-$v.txt 2>&1
  echo "ncu $v"; grep -E "^  moert|Duration|DRAM Throughput|Achieved Occupancy|Registers Per|Block Limit Shared|Dynamic Shared|Waves Per" $OUT/ncu-$v.txt | head -12
done
tar czf $OUT/ncu.tgz -C $OUT ncu-bulk.txt ncu-cpasync.txt && rm $OUT/ncu-*.txt
echo "total $(( $(date +%s) - t0 )) s"
