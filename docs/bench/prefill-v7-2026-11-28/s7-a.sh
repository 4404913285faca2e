#!/usr/bin/env bash
# session 7, call 1: clusters of two CTAs with the weight boxes multicast (MOERT_CLUSTER=2,
# hook MOERT_PREFILL_CLUSTER=1): GPU prefill test (3 cluster cases last), then Qwen3-30B
# prefill sizes off/on alternated twice, hidden > 2048 models persistent + clusters, ncu
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; cat $OUT/machine.txt
mkdir -p $OUT/logs
run() { # name timeout env... cmd
  local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/logs/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/logs/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/logs/$name.log | head -5
  return $rc
}
run gpu_prefill 100 build-gpu/tests/test_gpu_prefill; ok=$?
grep -E "^prefill|worst" $OUT/logs/gpu_prefill.log | paste - - | cut -c1-250 | tail -4
[ $ok = 0 ] || { echo "test failed: no cluster bench"; }
echo "tests done $(( $(date +%s) - t0 )) s"
B=$OUT/bench.jsonl
if [ $ok = 0 ]; then
for r in 1 2; do
for v in "c0:X=0" "c1:MOERT_PREFILL_CLUSTER=1"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name r$r" >> $B
  env $envs timeout 90 build-gpu/moert bench --backend cuda --stage prefill --model qwen3-30b-a3b --tokens 2048,4096,8192,16384,32768 --json >> $B 2>&1
done
done
for v in "rule:X=0" "p1c1:MOERT_PREFILL_PERSISTENT=1 MOERT_PREFILL_CLUSTER=1" "p1f1c1:MOERT_PREFILL_PERSISTENT=1 MOERT_PREFILL_FUSED_GU=1 MOERT_PREFILL_CLUSTER=1"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name" >> $B
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage prefill --model qwen3-235b-a22b --tokens 4096,16384 --json >> $B 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage prefill --model deepseek-v3 --tokens 8192 --json >> $B 2>&1
done
python3 -c "
import json,collections
cur=''; d=collections.OrderedDict()
for l in open('$B'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault((r['model'][:10],r['T']), []).append('%s:%.1f(%.0f)'%(cur, r['us'], r.get('tflops',0)))
for k,v in d.items(): print(k, ' '.join(v))
"
echo "bench done $(( $(date +%s) - t0 )) s"
MOERT_PREFILL_CLUSTER=1 timeout 120 ncu --clock-control none --set detailed -k regex:"moert_prefill_gemm" --launch-skip 2 --launch-count 2 \
    build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/logs/ncu-cluster.txt 2>&1
echo "ncu rc=$? $(( $(date +%s) - t0 )) s"
grep -E "^  moert|Duration|Compute \(SM\) Throughput|L2 Cache Throughput|DRAM Throughput|L2 Hit|Issue Slots Busy|Registers Per|Cluster" $OUT/logs/ncu-cluster.txt | head -40
fi
echo "total $(( $(date +%s) - t0 )) s"
