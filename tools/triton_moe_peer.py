"""triton_moe_peer.py - a Triton fused-MoE peer for moert's benchmarks (issues 4 and 5).

The kind of MoE kernel serving engines ship in Triton, written here from its published
design (not copied): the (token, expert) pairs sorted by expert and each expert's run padded
to the row block, one program per (row block, column block) that gathers its rows of A,
reads its expert's weight tile and writes its pairs' rows; the second GEMM multiplies each
row by its routing weight.  What the issues quote of such a kernel is "its two GEMM launches
alone, replayed in a CUDA graph (routing, alignment, activation and sum not counted)": that
is what this times, median of graph replays, each T with the fastest of a small sweep of
block shapes for each GEMM (picked in the same run, on the same card).  The full layer
(both GEMMs + SiLU * up + the weighted sum) is checked against a float32 reference.

    python3 tools/triton_moe_peer.py [--model qwen3-30b-a3b] [--tokens 1,8,32,...]

One JSON line per T: {"T", "triton_fused_moe_us", "gemm1_us", "gemm2_us", "cfg1", "cfg2",
"relerr", ...}.  Runs on the GPU machine only (torch and triton there); it is a peer, never
a dependency of the library.  TRITON_INTERPRET=1 runs a small shape on the CPU (--check).
"""
import argparse
import json
import os
import sys

import torch
import triton
import triton.language as tl

DT = torch.bfloat16  # the activations' and weights' dtype (f16 under the interpreter, --check)

MODELS = {  # E, top-k, hidden, intermediate (as moert's `moert bench` shapes)
    "qwen3-30b-a3b": (128, 8, 2048, 768),
    "qwen3-235b-a22b": (128, 8, 4096, 1536),
    "mixtral-8x7b": (8, 2, 4096, 14336),
}


@triton.jit
def moe_gemm(a_ptr, b_ptr, c_ptr, w_ptr, sorted_ptr, block_expert_ptr, num_post_ptr,
             EM, N, K, num_pairs, stride_am, stride_be, stride_bn, stride_cm,
             A_DIV: tl.constexpr, MUL_W: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
             BK: tl.constexpr, GROUP_M: tl.constexpr):
    """C[p] = A[p // A_DIV] . B[e]^T (x w[p]) for the pairs p of row block pid_m of expert e.
    B is [E, N, K] with K contiguous; rows of the sorted list past the expert's run hold
    num_pairs (padding): not loaded, not stored."""
    pid = tl.program_id(0)
    num_m = tl.cdiv(EM, BM)
    num_n = tl.cdiv(N, BN)
    in_group = GROUP_M * num_n
    first_m = (pid // in_group) * GROUP_M
    group_size = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % in_group) % group_size
    pid_n = (pid % in_group) // group_size
    if pid_m * BM >= tl.load(num_post_ptr):
        return
    offs_m = pid_m * BM + tl.arange(0, BM)
    pair = tl.load(sorted_ptr + offs_m)
    row_ok = pair < num_pairs
    e = tl.load(block_expert_ptr + pid_m).to(tl.int64)
    offs_n = (pid_n * BN + tl.arange(0, BN)) % N  # wrapped: the loads need no column mask
    offs_k = tl.arange(0, BK)
    a_rows = (pair // A_DIV).to(tl.int64)
    a_ptrs = a_ptr + a_rows[:, None] * stride_am + offs_k[None, :]
    b_ptrs = b_ptr + e * stride_be + offs_n[None, :].to(tl.int64) * stride_bn + offs_k[:, None]
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        k_ok = offs_k < K - k0
        a = tl.load(a_ptrs, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=k_ok[:, None], other=0.0)
        acc = tl.dot(a, b, acc)
        a_ptrs += BK
        b_ptrs += BK
    if MUL_W:
        w = tl.load(w_ptr + pair, mask=row_ok, other=0.0)
        acc = acc * w[:, None]
    offs_cn = pid_n * BN + tl.arange(0, BN)
    c_ptrs = c_ptr + pair.to(tl.int64)[:, None] * stride_cm + offs_cn[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=row_ok[:, None] & (offs_cn[None, :] < N))


def align(ids, E, BM):
    """The pairs sorted by expert (stable), each expert's run padded to a multiple of BM with
    the value T*k; the expert of each row block; the padded total (a 1-element tensor)."""
    flat = ids.flatten()
    P = flat.numel()
    counts = torch.bincount(flat, minlength=E)
    padded = (counts + BM - 1) // BM * BM
    order = torch.sort(flat, stable=True).indices
    start = torch.cumsum(counts, 0) - counts
    pstart = torch.cumsum(padded, 0) - padded
    EM = P + E * (BM - 1)  # the upper bound the grid is sized by
    sorted_ids = torch.full((EM,), P, dtype=torch.int32, device=ids.device)
    e_sorted = flat[order]
    pos = pstart[e_sorted] + (torch.arange(P, device=ids.device) - start[e_sorted])
    sorted_ids[pos] = order.to(torch.int32)
    block_expert = torch.zeros(triton.cdiv(EM, BM), dtype=torch.int32, device=ids.device)
    be = torch.repeat_interleave(torch.arange(E, device=ids.device), padded // BM)
    block_expert[: be.numel()] = be.to(torch.int32)
    num_post = padded.sum().reshape(1).to(torch.int32)
    return sorted_ids, block_expert, num_post, EM


def launch(cfg, a, b, c, w, al, N, K, P, a_div, mul_w):
    BM, BN, BK, G, warps, stages = cfg
    sorted_ids, block_expert, num_post, EM = al
    grid = (triton.cdiv(EM, BM) * triton.cdiv(N, BN),)
    moe_gemm[grid](a, b, c, w, sorted_ids, block_expert, num_post, EM, N, K, P, a.stride(0),
                   b.stride(0), b.stride(1), c.stride(0), A_DIV=a_div, MUL_W=mul_w, BM=BM, BN=BN,
                   BK=BK, GROUP_M=G, num_warps=warps, num_stages=stages)


def configs(P, E):
    """block shapes to try: (BM, BN, BK, GROUP_M, warps, stages); row blocks of 16 when an
    expert has a few rows, 16 or 32 up to 32 rows, 64 or 128 beyond"""
    rpe = P / E
    if rpe <= 4:
        return [(16, bn, bk, 1, 4, st) for bn in (64, 128) for bk in (128, 256) for st in (3, 4)]
    if rpe <= 32:
        return [(bm, bn, 128, 1, 4, st) for bm in (16, 32) for bn in (64, 128) for st in (3, 4)]
    return [(bm, bn, 64, 16, w, st) for bm, w in ((64, 4), (128, 8)) for bn in (128, 256)
            for st in (3, 4)]


def graph_us(fn, reps=4, iters=30):
    """median over iters of (one replay of a graph holding reps calls of fn) / reps"""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    g.replay()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e3 / reps)
    ts.sort()
    return ts[len(ts) // 2]


def reference(x, w1, w2, wts, ids):
    """the layer in float32, expert by expert"""
    T, H = x.shape
    I = w2.shape[2]
    out = torch.zeros(T, H, dtype=torch.float32, device=x.device)
    xf = x.float()
    for e in ids.unique().tolist():
        t, j = torch.where(ids == e)
        hg = xf[t] @ w1[e].float().t()
        h = torch.nn.functional.silu(hg[:, :I]) * hg[:, I:]
        out.index_add_(0, t, (h @ w2[e].float().t()) * wts[t, j, None])
    return out


def moert_logits(n, seed):
    """the first n router logits of `moert bench` (tools/moert.c fill_logits: each one
    unif * 3 + unif * 3 in float, unif = (splitmix64 >> 40) * 2^-23 - 1), as float32 values;
    its forward and prefill stages use seed = --seed + 4 (5 by default)"""
    import struct
    m64 = (1 << 64) - 1
    f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]
    st, out = seed & m64, []
    for _ in range(n):
        u = []
        for _ in range(2):
            st = (st + 0x9E3779B97F4A7C15) & m64
            z = st
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m64
            z ^= z >> 31
            u.append((z >> 40) * (2.0 / 16777216.0) - 1.0)  # exact in float
        out.append(f32(f32(u[0] * 3.0) + f32(u[1] * 3.0)))  # each step exact in double
    return out


MOERT_SEED = None  # --moert-seed: route as `moert bench` does (None: random tokens)
LOGITS = {}  # (T, E): moert_logits of MOERT_SEED on the device
NBATCH = 8  # batches a timed graph cycles through (run_t)


def batch(T, E, k, H, wr, dev, i=0):
    """tokens and their routing: x, the top-k weights (renormalised, f32) and ids.  With
    --moert-seed, the routing of `moert bench`'s logits (softmax, top-k, renormalised: the
    same experts and rows per expert as moert's line of this T), its expert ids shifted by
    i * E / NBATCH (mod E) in batch i, so each batch reads other experts' weights (nothing from L2
    of the batch before) in the same amounts; else softmax(x wr) of random x."""
    x = torch.randn(T, H, device=dev, dtype=DT)
    if MOERT_SEED is None:
        p = (x.float() @ wr.float().t()).softmax(-1)
    else:
        if (T, E) not in LOGITS:
            LOGITS[T, E] = torch.tensor(moert_logits(T * E, MOERT_SEED),
                                        dtype=torch.float32).view(T, E).to(dev)
        p = LOGITS[T, E].softmax(-1)
    wts, ids = p.topk(k, -1)
    if MOERT_SEED is not None:
        ids = (ids + i * max(1, E // NBATCH)) % E
    return x, (wts / wts.sum(-1, keepdim=True)).float(), ids


def run_t(T, E, k, H, I, w1, w2, wr, dev, sweep=True, cfg_fixed=None, nbatch=NBATCH):
    """Times (sweep) and checks one T.  The graph cycles through nbatch batches of tokens,
    each with its own routing, so that a call does not find its experts' weights in L2 from
    the call before (moert's bench rotates weight sets for the same reason)."""
    P = T * k
    bs = [batch(T, E, k, H, wr, dev, i) for i in range(nbatch if sweep else 1)]
    wflat = [b[1].flatten().contiguous() for b in bs]
    h1 = torch.empty(P, 2 * I, device=dev, dtype=DT)
    h = torch.empty(P, I, device=dev, dtype=DT)
    y2 = torch.empty(P, H, device=dev, dtype=DT)
    cands = [cfg_fixed] if cfg_fixed else configs(P, E)
    aligned = {}

    def al(bm, i):
        if (bm, i) not in aligned:
            aligned[bm, i] = align(bs[i][2], E, bm)
        return aligned[bm, i]

    def g1(cfg, i=0):
        return lambda: launch(cfg, bs[i][0], w1, h1, wflat[i], al(cfg[0], i), 2 * I, H, P, k, False)

    def g2(cfg, i=0):
        return lambda: launch(cfg, h, w2, y2, wflat[i], al(cfg[0], i), H, I, P, 1, True)

    def cycle(fs):
        def f():
            for fn in fs:
                fn()
        return f

    best = {}
    for name, mk in (("1", g1), ("2", g2)):
        for cfg in cands:
            try:
                us = graph_us(cycle([mk(cfg, i) for i in range(len(bs))])) / len(bs) if sweep else 0.0
            except Exception as ex:  # a shape the card cannot hold (shared memory): skip it
                print(f"# T={T} gemm{name} {cfg}: {type(ex).__name__}", file=sys.stderr)
                continue
            if name not in best or us < best[name][0]:
                best[name] = (us, cfg)
        if name == "1":  # batch 0's h for the check
            g1(best["1"][1])()
            hf = h1.float()
            h.copy_((torch.nn.functional.silu(hf[:, :I]) * hf[:, I:]).to(DT))
    g2(best["2"][1])()
    x, wts, ids = bs[0]
    y = y2.float().view(T, k, H).sum(1)
    ref = reference(x, w1, w2, wts, ids)
    relerr = ((y - ref).norm() / ref.norm()).item()
    c1, c2 = best["1"][1], best["2"][1]
    both = None
    if sweep:  # the two launches together, as the issue quotes them
        both = graph_us(cycle([f for i in range(len(bs)) for f in (g1(c1, i), g2(c2, i))])) / len(bs)
    return {"T": T, "triton_fused_moe_us": round(both, 2) if both else None,
            "gemm1_us": round(best["1"][0], 2), "gemm2_us": round(best["2"][0], 2),
            "cfg1": list(c1), "cfg2": list(c2), "relerr": float(f"{relerr:.2e}"),
            "touched": int(ids.unique().numel()),
            "routing": "random tokens" if MOERT_SEED is None else f"moert bench seed {MOERT_SEED}"}


def profile(T, E, k, H, I, w1, w2, wr, dev, c1, c2, n):
    """n plain launches of each GEMM over n routings (a profiler picks the kernels)"""
    P = T * k
    h1 = torch.empty(P, 2 * I, device=dev, dtype=DT)
    h = torch.randn(P, I, device=dev, dtype=DT)
    y2 = torch.empty(P, H, device=dev, dtype=DT)
    bs = [batch(T, E, k, H, wr, dev, i) for i in range(n)]
    al1 = [align(b[2], E, c1[0]) for b in bs]
    al2 = [align(b[2], E, c2[0]) for b in bs]
    torch.cuda.synchronize()
    for i, b in enumerate(bs):
        wf = b[1].flatten().contiguous()
        launch(c1, b[0], w1, h1, wf, al1[i], 2 * I, H, P, k, False)
        launch(c2, h, w2, y2, wf, al2[i], H, I, P, 1, True)
    torch.cuda.synchronize()
    print(f"# T={T}: {n} launches of each GEMM, {c1} / {c2}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen3-30b-a3b", choices=sorted(MODELS))
    ap.add_argument("--tokens", default="1,8,32,128,512,2048,8192")
    ap.add_argument("--cfg1", help="gate/up block shape BM,BN,BK,GROUP_M,warps,stages (no sweep)")
    ap.add_argument("--cfg2", help="down block shape, the same form (no sweep)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="with --cfg1/--cfg2: launch each GEMM N times plainly, no graph and no "
                         "timing (for ncu -k regex:moe_gemm)")
    ap.add_argument("--moert-seed", type=int, default=5, metavar="S",
                    help="route `moert bench`'s logits of seed S (its --seed + 4; 5 by default), "
                         "so both read the same experts in the same amounts; -1: the routing of "
                         "random tokens instead (the peer's way up to decode-s21)")
    ap.add_argument("--check", action="store_true",
                    help="a small shape, one block shape, no timing (TRITON_INTERPRET=1 on a CPU)")
    args = ap.parse_args()
    torch.manual_seed(0)
    global MOERT_SEED
    MOERT_SEED = args.moert_seed if args.moert_seed >= 0 and not args.check else None
    global DT
    if args.check:
        interp = bool(os.environ.get("TRITON_INTERPRET"))
        dev = "cuda" if torch.cuda.is_available() and not interp else "cpu"
        if interp:
            DT = torch.float16  # the interpreter (triton 3.9) reads bf16 tensors wrongly
        E, k, H, I = 8, 2, 64, 48
        w1 = (torch.randn(E, 2 * I, H, device=dev) * 0.1).to(DT)
        w2 = (torch.randn(E, H, I, device=dev) * 0.1).to(DT)
        wr = (torch.randn(E, H, device=dev) * 0.1).to(DT)
        for T in (1, 5, 37):
            r = run_t(T, E, k, H, I, w1, w2, wr, dev, sweep=False, cfg_fixed=(16, 32, 32, 2, 4, 2))
            print(json.dumps(r), flush=True)
            assert r["relerr"] < 2e-2, r
        print("check passed")
        return
    E, k, H, I = MODELS[args.model]
    dev = "cuda"
    w1 = (torch.randn(E, 2 * I, H, device=dev) * 0.02).to(DT)  # [gate; up]
    w2 = (torch.randn(E, H, I, device=dev) * 0.02).to(DT)
    wr = (torch.randn(E, H, device=dev) * 0.02).to(DT)
    print(f"# triton {triton.__version__}, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name()}, {args.model} E={E} k={k} H={H} I={I}", flush=True)
    if args.profile:
        if not (args.cfg1 and args.cfg2):
            sys.exit("--profile needs --cfg1 and --cfg2")
        c1 = tuple(int(v) for v in args.cfg1.split(","))
        c2 = tuple(int(v) for v in args.cfg2.split(","))
        for T in [int(t) for t in args.tokens.split(",")]:
            profile(T, E, k, H, I, w1, w2, wr, dev, c1, c2, args.profile)
        return
    for T in [int(t) for t in args.tokens.split(",")]:
        r = run_t(T, E, k, H, I, w1, w2, wr, dev)
        r["model"] = args.model
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
