#!/usr/bin/env bash
# Session 21, call 6 (the last device minutes): is the records' Mixtral-8x7B T=512 (graph
# 1083-1096 us against 914 on the stream, call 5) and T=32 (735 against 664) the card's clocks?
# nvidia-smi every 100 ms (SM and memory clocks, power, temperature, throttle reasons) beside
# the record's T list, then T=512 alone.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu,clocks_throttle_reasons.active --format=csv -lms 100 > $OUT/smi.csv 2>&1 &
SMI=$!
sleep 1
echo "list start $(date +%s.%N)"
$B/moert bench --backend cuda --stage forward --model mixtral-8x7b --json > $OUT/mix.jsonl 2>&1
echo "list end $(date +%s.%N)"
$B/moert bench --backend cuda --stage forward --model mixtral-8x7b --tokens 512 --json >> $OUT/mix.jsonl 2>&1
echo "t512 end $(date +%s.%N)"
sleep 1; kill $SMI
python3 -c "
import json
for l in open('$OUT/mix.jsonl'):
    if l.startswith('{'):
        r=json.loads(l); print(r['T'], r['us'], r['stream_us'], r['host_route_us'])
"
python3 - $OUT/smi.csv <<'PY'
import sys, csv
rows = list(csv.reader(open(sys.argv[1])))
hdr, data = rows[0], rows[1:]
print(hdr)
# one line a second: min / max SM clock, max power, throttle reasons seen
from collections import defaultdict
sec = defaultdict(list)
for r in data:
    if len(r) < 7: continue
    sec[r[0].strip()[:19]].append(r)
for k in sorted(sec):
    v = sec[k]
    sm = [int(x[1].split()[0]) for x in v]; pw = [float(x[3].split()[0]) for x in v]
    print(k, 'sm %d-%d MHz' % (min(sm), max(sm)), 'mem', v[0][2].strip(), 'power %.0f-%.0f W' % (min(pw), max(pw)), 'limit', v[0][4].strip(), 'temp', v[-1][5].strip(), 'thr', sorted(set(x[6].strip() for x in v)))
PY
echo "total $(( $(date +%s) - t0 )) s"
