#!/usr/bin/env bash
# For the twenty-third session's first device call (written at the end of the twenty-second).
# Build main into build-gpu here (apt-get install -y check first, or the GPU suites are not
# built; cmake --build build-gpu -j2; tools/build-trace.sh build-gpu), copy
# ../shared/peers/torch_peers.py into .device/, carry ["build-gpu", ".device"], run this
# (about 8 minutes).
# 1. 71fccad (the forward and prefill stages share bench_graph_time) never ran on a GPU: the
#    forward and prefill lines of a few sizes, expected as call 3's (graph us below stream_us
#    at T=1024 prefill; forward T=8 ~120, T=512 ~315 us).
# 2. Where moert's layer kernel reads 1-2 % more DRAM bytes than the Triton GEMMs at the same
#    routing (decode-log v23 call 5: 1.11 against 1.086 GB at Qwen3-30B-A3B T=32): ncu's memory
#    tables of one layer-kernel launch (L2 misses by source: the weight maps, the gathered A,
#    h), and the same for Mixtral-8x7B T=8.
# 3. The GPU suites on the final tree (the kernels are s21's; only tools changed since).
# 4. At T=1024 (64 rows an expert, 128-row tiles) the down GEMM streams at 3.6 TB/s against the
#    gate/up GEMM's 3.9 and starts only when the gate/up GEMM ends (call 2's timeline); the early
#    launch of 64-row tiles (T=512: the down GEMM's CTAs take the SMs the gate/up GEMM frees)
#    was measured as no gain for 128-row tiles in v12, before the M skip and the 192-row tiles:
#    A/B two rounds, default / MOERT_PREFILL_EARLY=1, prefill T=1024 and 2048.
# 5. Call 2's timeline summaries give the layer's start-to-start time well above its span from
#    T=2048 (399.8 against 390.8 us) and T=4096 (676.5 against 627.7): the gaps between the
#    graph's layers, from the raw CSV (kept this time).
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
$B/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 8,512 --json > $OUT/fwd.jsonl 2>&1
$B/moert bench --backend cuda --stage prefill --model qwen3-30b-a3b --tokens 1024,2048 --json > $OUT/pre.jsonl 2>&1
cut -c1-400 $OUT/fwd.jsonl $OUT/pre.jsonl
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for mt in qwen3-30b-a3b:32 mixtral-8x7b:8; do m=${mt%:*}; T=${mt#*:}
  timeout 200 $NCU --cache-control none --clock-control none --section MemoryWorkloadAnalysis_Tables \
    --section MemoryWorkloadAnalysis --section SpeedOfLight -k regex:moert_prefill --launch-skip 20 --launch-count 1 \
    $B/moert bench --backend cuda --stage forward --model $m --tokens $T --iters 5 > $OUT/ncu-mem-$m-t$T.txt 2>&1
  echo "== $m T=$T rc=$? $(( $(date +%s) - t0 )) s"
  grep -E "dram__|DRAM|L2 Hit|Sectors|Requests" $OUT/ncu-mem-$m-t$T.txt | sed -E "s/ +/ /g" | head -30
done
run prefill 240 $B/tests/test_gpu_prefill
run forward 280 $B/tests/test_gpu_forward
trace q30-t4096 qwen3-30b-a3b 4096 | tail -9
python3 - /tmp/trace-q30-t4096.csv > $OUT/gaps-t4096.txt <<'PY'
import csv, sys
rows = sorted((int(r[0]), int(r[1]), int(r[3]), r[8]) for r in csv.reader(l for l in open(sys.argv[1]) if not l.startswith('#')) if r[0] != 'start_ns' and r[8].startswith('moert_'))
rows = [r for r in rows if r[2]]  # graph launches
for a, b in zip(rows, rows[1:]):
    if b[3].startswith('moert_route'):
        print('gap before %s: %.0f us after %s' % (b[3], (b[0] - a[1]) / 1e3, a[3]))
PY
sort $OUT/gaps-t4096.txt | uniq -c | sort -rn | head; tar cf $OUT/trace-t4096.tar -C /tmp trace-q30-t4096.csv
export AB_TIMEOUT=90
for r in 1 2; do
  ab default prefill qwen3-30b-a3b 1024,2048
  ab early prefill qwen3-30b-a3b 1024,2048 MOERT_PREFILL_EARLY=1
done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | tail -12
echo "total $(( $(date +%s) - t0 )) s"
(cd $OUT && tar cf out.tar *.txt *.jsonl *.log && rm -f *.txt *.jsonl *.log)  # the 8-file limit
