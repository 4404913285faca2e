#!/usr/bin/env bash
# Session 21, call 5 (the last ~6 min of device time): call 4 had MOERT_A_ROWS 1.5 % faster at
# Qwen3-30B-A3B prefill T=1024 and 2048 in both rounds, but the traces showed the down GEMM's
# span unchanged (130.7 against 129.9 us): three more rounds, ABAB, to decide whether it
# stays.  And the records' Mixtral-8x7B decode T=32 (graph ~720 us against stream ~666 in
# every record since s17 call 5, 658 in A/B lists): the record's T list twice.
set -u; t0=$(date +%s); . tools/device-env.sh; B=build-gpu
export AB_TIMEOUT=60
for r in 1 2 3; do for v in "" 0; do
  ab arows-d$v prefill qwen3-30b-a3b 1024,1536,2048 MOERT_PREFILL_A_ROWS=$v
  ab arows-d$v prefill deepseek-v3 4096 MOERT_PREFILL_A_ROWS=$v
done; echo "round $r $(( $(date +%s) - t0 )) s"; done
for r in 1 2; do ab mixlist forward mixtral-8x7b 1,2,4,8,16,32,64,128,256,512; done
python3 tools/ab-table.py $OUT/ab.jsonl 2>&1 | cat
python3 -c "
import json
for l in open('$OUT/ab.jsonl'):
    if l.startswith('{') and 'mixtral' in l:
        r=json.loads(l); print(r['T'], r['us'], r['stream_us'], r['host_route_us'])
"
echo "total $(( $(date +%s) - t0 )) s"
