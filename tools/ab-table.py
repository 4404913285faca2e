#!/usr/bin/env python3
"""ab-table.py — summarises an A/B file of `moert bench --json` lines, each group headed by
a line `# <model> | <setting> | <round>`: per (model, stage, T), each setting's µs and ratio
over the rounds.  Lines that are neither are printed with a `!` (errors from the runs).
    tools/ab-table.py FILE [FILE ...]"""
import json
import sys

for path in sys.argv[1:]:
    cur, res = None, {}
    for line in open(path):
        if line.startswith('#'):
            parts = [x.strip() for x in line[1:].split('|')]
            cur = (parts[0], parts[1] if len(parts) > 1 else '')
        elif line.startswith('{'):
            r = json.loads(line)
            key = (cur[0] if cur else r.get('model', ''), r.get('stage', ''), r['T'])
            res.setdefault(key, {}).setdefault(cur[1] if cur else '', []).append(
                (round(r['us'], 2), r.get('ratio'), r.get('tflops')))
        elif line.strip():
            print('!', line.strip()[:200])
    print(path)
    for k in sorted(res):
        print(k)
        for c, v in res[k].items():
            print('   %-60s %s' % (c, v))
