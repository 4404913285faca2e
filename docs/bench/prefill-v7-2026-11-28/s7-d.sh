#!/usr/bin/env bash
# session 7, call 4: re-tune the rules after the gate/up producer fix (build-gpu = 03b14c0):
# hidden > 2048 work order (rule vs persistent/fused variants), tile height at T=1024/2048
# and decode sizes, each alternated twice
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; cat $OUT/machine.txt
B=$OUT/bench.jsonl
M=build-gpu/moert
for r in 1 2; do
for v in "rule:X=0" "p1f1:MOERT_PREFILL_PERSISTENT=1 MOERT_PREFILL_FUSED_GU=1 MOERT_PREFILL_ORDER=1" "p1f0:MOERT_PREFILL_PERSISTENT=1 MOERT_PREFILL_FUSED_GU=0 MOERT_PREFILL_ORDER=1" "p0f1:MOERT_PREFILL_PERSISTENT=0 MOERT_PREFILL_FUSED_GU=1 MOERT_PREFILL_ORDER=1"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name r$r" >> $B
  env $envs timeout 60 $M bench --backend cuda --stage prefill --model qwen3-235b-a22b --tokens 4096,16384 --json >> $B 2>&1
  env $envs timeout 60 $M bench --backend cuda --stage prefill --model deepseek-v3 --tokens 8192 --json >> $B 2>&1
  env $envs timeout 60 $M bench --backend cuda --stage forward --model mixtral-8x7b --tokens 256,512 --json >> $B 2>&1
  env $envs timeout 60 $M bench --backend cuda --stage prefill --model mixtral-8x7b --tokens 4096 --json >> $B 2>&1
done
done
echo "rules done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
for v in "auto:X=0" "bm64:MOERT_PREFILL_BM=64" "bm128:MOERT_PREFILL_BM=128"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name r$r" >> $B
  env $envs timeout 60 $M bench --backend cuda --stage prefill --model qwen3-30b-a3b --tokens 1024,2048,4096 --json >> $B 2>&1
  env $envs timeout 60 $M bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 128,256,512 --json >> $B 2>&1
  env $envs timeout 60 $M bench --backend cuda --stage forward --model mixtral-8x7b --tokens 320,384 --json >> $B 2>&1
done
done
python3 -c "
import json,collections
cur=''; d=collections.OrderedDict()
for l in open('$B'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault((r['stage'][:3], r['model'][:10],r['T']), []).append('%s:%.1f'%(cur, r['us']))
for k,v in d.items(): print(k, ' '.join(v))
"
echo "total $(( $(date +%s) - t0 )) s"
