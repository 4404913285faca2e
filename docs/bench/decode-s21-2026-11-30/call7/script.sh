#!/usr/bin/env bash
# Session 21, call 7: `moert bench` now samples the card's SM clock, clock-event reasons and
# power through NVML while it times (tools/gpu.c: tool_gpu_clocks_*; JSON sm_mhz_min/max,
# power_w_max, clock_events; the text line marks a power-capped T).  Expected: Mixtral-8x7B's
# decode list shows the cap (0x4) on the T that call 5 found slow in the graph (T=32, 512),
# Qwen3-30B-A3B's not.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
$B/moert bench --backend cuda --stage forward --model mixtral-8x7b 2>&1 | tee $OUT/mixtral.txt
$B/moert bench --backend cuda --stage forward --model mixtral-8x7b --json > $OUT/mixtral.jsonl 2>&1
$B/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 1,32,512 --json > $OUT/qwen.jsonl 2>&1
$B/moert bench --backend cuda --stage prefill --model qwen3-30b-a3b --tokens 2048,8192 2>&1 | tee $OUT/prefill.txt
python3 -c "
import json
for f in ('$OUT/mixtral.jsonl', '$OUT/qwen.jsonl'):
    for l in open(f):
        if l.startswith('{'):
            r=json.loads(l); print(r['model'][:12], r['T'], r['us'], r['stream_us'], r.get('sm_mhz_min'), r.get('sm_mhz_max'), r.get('power_w_max'), r.get('clock_events'))
"
echo "total $(( $(date +%s) - t0 )) s"
