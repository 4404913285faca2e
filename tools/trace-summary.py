#!/usr/bin/env python3
"""trace-summary.py TRACE.csv [--all] — the kernel timeline of tools/trace/cupti_trace.c, per layer.

Takes moert's kernels (names starting with moert_), by default only those replayed from CUDA
graphs (what `moert bench` times; --all: every launch), in start order, and cuts them into
layers at each routing kernel (moert_route_plan, moert_route; a layer without one - the
routing held, or host routing - starts at moert_prefill_tiles or at the first GEMM after a
combine).  Prints, for each kernel position in a layer: the median duration, the median time
from the end of the kernel before it to its start (negative: it started before that one
ended - a programmatic dependent launch's overlap), and the median layer span (routing start
to the next layer's routing start); then the last layer's kernels with times from its start.
Run one token count per trace (`moert bench --tokens T`): layers of other sizes would mix."""
import csv
import statistics
import sys

STARTS = ("moert_route_plan", "moert_route", "moert_plan_count")


def load(path, graph_only):
    rows = []
    with open(path) as f:
        for r in csv.reader(row for row in f if not row.startswith("#")):
            if r[0] == "start_ns":
                continue
            start, end, graph, name = int(r[0]), int(r[1]), int(r[3]), r[8]
            if not name.startswith("moert_"):
                continue
            rows.append((start, end, graph, name))
    if graph_only and any(g for _, _, g, _ in rows):
        rows = [r for r in rows if r[2]]
    rows.sort()
    return rows


def layers(rows):
    out, cur = [], []
    for r in rows:
        name = r[3]
        new = name.startswith(STARTS) and not (cur and cur[-1][3].startswith(STARTS))
        if not new and cur and cur[-1][3].startswith("moert_combine") and not name.startswith("moert_combine"):
            new = True  # no routing kernel in this layer: it starts after the last combine
        if new and cur:
            out.append(cur)
            cur = []
        cur.append(r)
    if cur:
        out.append(cur)
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        sys.exit(__doc__)
    rows = load(args[0], "--all" not in sys.argv)
    ls = layers(rows)
    if not ls:
        sys.exit("no moert kernels in " + args[0])
    # the layers of the most common kernel sequence
    shapes = {}
    for l in ls:
        shapes.setdefault(tuple(r[3] for r in l), []).append(l)
    shape, group = max(shapes.items(), key=lambda kv: len(kv[1]))
    print(f"{len(rows)} kernels, {len(ls)} layers; {len(group)} of this sequence:")
    us = lambda ns: ns / 1000.0
    print(f"{'kernel':<34} {'dur us':>8} {'from prev end':>14} {'from layer start':>17}")
    for i, name in enumerate(shape):
        dur = statistics.median(us(l[i][1] - l[i][0]) for l in group)
        gap = statistics.median(us(l[i][0] - l[i - 1][1]) for l in group) if i else 0.0
        rel = statistics.median(us(l[i][0] - l[0][0]) for l in group)
        print(f"{name[:34]:<34} {dur:8.2f} {gap:14.2f} {rel:17.2f}")
    span = statistics.median(us(l[-1][1] - l[0][0]) for l in group)
    nxt = [us(ls[j + 1][0][0] - ls[j][0][0]) for j in range(len(ls) - 1)
           if tuple(r[3] for r in ls[j]) == shape]
    print(f"layer: first start to last end {span:.2f} us"
          + (f", start to the next layer's start {statistics.median(nxt):.2f} us" if nxt else ""))
    last = group[-1]
    print("the last such layer:")
    for r in last:
        print(f"  {us(r[0] - last[0][0]):9.2f} .. {us(r[1] - last[0][0]):9.2f}  {r[3]}")


if __name__ == "__main__":
    main()
