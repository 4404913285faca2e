#!/usr/bin/env bash
# session 6, call 2: ypair in the activation dtype by default (moert_combine_act); epilogue
# experiments (16-byte stores after a quad transpose, streaming stores); GPU tests; ncu
# detailed of both GEMMs at T=8192; decode sizes
set -u
t0=$(date +%s)
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > $OUT/machine.txt
date -u >> $OUT/machine.txt; cat $OUT/machine.txt
run() { # name timeout env... cmd
  local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5
}
run gpu_prefill 150 build-gpu/tests/test_gpu_prefill
grep -E "^prefill|worst" $OUT/gpu_prefill.log | paste - - | cut -c1-200
run gpu_prefill_wide 150 MOERT_PREFILL_EPI_WIDE=1 MOERT_PREFILL_EPI_CS=1 build-gpu/tests/test_gpu_prefill
run forward_quick 150 CK_RUN_CASE=quick build-gpu/tests/test_gpu_forward
run forward_route 100 CK_RUN_CASE=route build-gpu/tests/test_gpu_forward
run forward_quick_wide 150 CK_RUN_CASE=quick MOERT_PREFILL_EPI_WIDE=1 MOERT_PREFILL_EPI_CS=1 build-gpu/tests/test_gpu_forward
run reliability 100 build-gpu/tests/test_gpu_reliability
echo "tests done $(( $(date +%s) - t0 )) s"
V=("act:X=0" "f32:MOERT_PREFILL_YPAIR_ACT=0" "wide:MOERT_PREFILL_EPI_WIDE=1" "cs:MOERT_PREFILL_EPI_CS=1" "widecs:MOERT_PREFILL_EPI_WIDE=1 MOERT_PREFILL_EPI_CS=1")
for r in 1 2; do
for v in "${V[@]}"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name r$r" >> $OUT/bench.jsonl
  env $envs timeout 90 build-gpu/moert bench --backend cuda --stage prefill --tokens 2048,8192,32768 --json >> $OUT/bench.jsonl 2>&1
done
done
for v in "act:X=0" "f32:MOERT_PREFILL_YPAIR_ACT=0" "widecs:MOERT_PREFILL_EPI_WIDE=1 MOERT_PREFILL_EPI_CS=1"; do
  name=${v%%:*}; envs=${v#*:}
  echo "# $name" >> $OUT/bench-fwd.jsonl
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 128,256,512 --json >> $OUT/bench-fwd.jsonl 2>&1
  env $envs timeout 60 build-gpu/moert bench --backend cuda --stage prefill --model qwen3-235b-a22b --tokens 4096 --json >> $OUT/bench-fwd.jsonl 2>&1
done
python3 -c "
import json,collections
for f in ['bench','bench-fwd']:
  cur=''; d=collections.OrderedDict()
  for l in open('$OUT/'+f+'.jsonl'):
    if l.startswith('#'): cur=l.split()[1]; continue
    if l.startswith('{'):
        r=json.loads(l); d.setdefault((r['model'][:10],r['T']), []).append('%s:%.1f'%(cur, r['us']))
  for k,v in d.items(): print(k, ' '.join(v))
"
echo "bench done $(( $(date +%s) - t0 )) s"
timeout 150 ncu --clock-control none --set detailed -k regex:"moert_prefill_gemm|moert_combine" --launch-skip 3 --launch-count 3 \
    build-gpu/moert bench --backend cuda --stage prefill --tokens 8192 --iters 1 > $OUT/ncu-detailed.txt 2>&1
echo "ncu rc=$? $(( $(date +%s) - t0 )) s"
grep -E "^  moert|Duration|Compute \(SM\) Throughput|L2 Cache Throughput|DRAM Throughput|L1/TEX Hit|L2 Hit|Issue Slots Busy|No Eligible|Warp Cycles Per Issued" $OUT/ncu-detailed.txt | head -40
echo "total $(( $(date +%s) - t0 )) s"
