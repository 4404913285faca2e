#!/usr/bin/env python3
"""dump-compare.py — compares two `moert run --dump FILE` outputs element by element.

    tools/dump-compare.py A.bin B.bin [--seed S]

Both files are the raw bf16 [T, H] output of one step of the same command (same model,
tokens, layers, weight sets and seed) on two backends, builds or machines; B is the
reference.  Prints the relative L2 difference and the largest absolute difference of the
outputs y and, for a one-layer step, of the MoE part y - x: the tool's input x is rebuilt
here from the seed exactly as tools/moert.c makes it (splitmix64 from seed * 77 + 5, uniform
in [-1, 1), rounded to bf16), because an output y = x + MoE(x) is dominated by x and agrees
closely even when the MoE part does not.  (With more layers x is only the first layer's
input: the MoE line then means nothing.)  Pure Python, no numpy: a few seconds a million
values."""
import math
import struct
import sys

MASK = (1 << 64) - 1


def tool_input(n, seed):
    """x as moert run makes it: splitmix64 from seed * 77 + 5, (z >> 40) * 2^-23 - 1, bf16."""
    s = (seed * 77 + 5) & MASK
    out = []
    for _ in range(n):
        s = (s + 0x9E3779B97F4A7C15) & MASK
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        f = struct.unpack('<f', struct.pack('<f', (z >> 40) * (2.0 / 16777216.0) - 1.0))[0]
        u = struct.unpack('<I', struct.pack('<f', f))[0]
        u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFFFFFF  # round to nearest even
        out.append(struct.unpack('<f', struct.pack('<I', (u >> 16) << 16))[0])
    return out


def load(path):
    b = open(path, 'rb').read()
    n = len(b) // 2
    return [struct.unpack('<f', struct.pack('<I', h << 16))[0]
            for h in struct.unpack('<%dH' % n, b[:2 * n])]


def compare(a, b):
    num = sum((p - q) ** 2 for p, q in zip(a, b))
    den = sum(q * q for q in b)
    return math.sqrt(num / den) if den > 0 else float('inf'), max(abs(p - q) for p, q in zip(a, b))


def main(argv):
    args, seed, i = [], 1, 0
    while i < len(argv):
        if argv[i] == '--seed' and i + 1 < len(argv):
            seed = int(argv[i + 1])
            i += 2
        else:
            args.append(argv[i])
            i += 1
    if len(args) != 2:
        print(__doc__.strip().split('\n\n')[1])
        return 2
    a, b = load(args[0]), load(args[1])
    if len(a) != len(b) or not a:
        print('dump-compare: the files hold %d and %d values' % (len(a), len(b)))
        return 1
    bad = sum(1 for v in a + b if not math.isfinite(v))
    r, m = compare(a, b)
    print('%d values: y rel L2 %.3e, max |diff| %.4g%s' %
          (len(a), r, m, ', %d not finite' % bad if bad else ''))
    x = tool_input(len(a), seed)
    ma = [p - q for p, q in zip(a, x)]
    mb = [p - q for p, q in zip(b, x)]
    size = math.sqrt(sum(v * v for v in mb) / sum(v * v for v in x))
    r, m = compare(ma, mb)
    print('one-layer MoE part y - x: |y - x| / |x| %.3f (reference), rel L2 %.3e, max |diff| %.4g'
          % (size, r, m))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
