/* expert.cu — the experts' SwiGLU feed-forward on tensor cores (mma.sync m16n8k16, bf16 or
 * f16 operands, f32 accumulation), over the bucket plan, and the deterministic combine.
 *
 *   moert_gate_up  h[row]    = silu(x[token] . Wg[e]^T) * (x[token] . Wu[e]^T)   [rows, I]
 *   moert_down     ypair[row] = h[row] . Wd[e]^T                                  [rows, H] f32
 *   moert_combine  y[t] = sum_j w[t,j] ypair[pair_of[t,j]]  (j = 0..k-1 in order)
 *                         + gate_s(t) * y_shared[t]  (+ y[t] when accumulating)
 *
 * One CTA computes a BM x 64 tile of one block of the padded plan (one expert, BM sorted
 * rows; rows past the expert's count are zero-filled and never stored) against a 64-column
 * slab of the weights, streaming K in steps of 32 through a 3-stage cp.async pipeline.
 * Each weight tile is read once for all of the block's rows, so a decoding step reads each
 * touched expert's weights about once per row block.  The same kernels run the shared
 * expert with routed = 0: rows are then the tokens themselves and the "expert table" holds
 * one matrix.  Sums run in a fixed order and nothing accumulates through float atomics,
 * so the output bits are the same on every run.
 *
 * float32 layers run the same tiles on tf32 tensor cores (mma.sync m16n8k8) in three
 * passes, a_hi*b_lo + a_lo*b_hi + a_hi*b_hi with x = x_hi + x_lo split into two tf32
 * values, which keeps float32 accuracy (the "3xTF32" scheme); h stays float32 there.
 *
 * Compile-time constants: MOERT_ACT (1 bf16, 2 f16, 3 f32; weights have the same type),
 * MOERT_BM (16, 32, 64 or 128: rows per block of the padded plan), and the tile: MOERT_BN
 * columns (32 or 64), MOERT_BK (32 or 64) per K step, MOERT_STAGES steps in flight.  The
 * host picks a narrow, deep tile for 16-row blocks (decode: more CTAs, more bytes in flight
 * per CTA) and a wide one for larger blocks.  K need only be a multiple of 8: a last, short
 * K step is zero-filled. */
#include "moert_device.h"

#ifndef MOERT_BM
#define MOERT_BM 64
#endif
#ifndef MOERT_BN
#define MOERT_BN 64
#endif
#ifndef MOERT_BK
#define MOERT_BK 32
#endif
#define BM MOERT_BM
#define BN MOERT_BN
#define BK MOERT_BK
#define NTHREADS 128
#if MOERT_ACT == 3
typedef float act_t;
#else
typedef unsigned short act_t;
#endif
#ifdef MOERT_STAGES
#define STAGES MOERT_STAGES
#elif MOERT_ACT == 3
#define STAGES 2 /* 2 x (128 + 128) rows x 144 B fits the 99 KB of sm_86/sm_89 */
#else
#define STAGES 3
#endif
#define EPC (16 / (int)sizeof(act_t)) /* elements per 16-byte copy */
#define CPR (BK / EPC)                /* 16-byte copies per row of a K step */
#define WM (BM >= 32 ? 2 : 1) /* warps along M */
#define WN (4 / WM)            /* warps along N */
#define WTM (BM / WM)          /* rows of a warp's tile */
#define WTN (BN / WN)          /* columns of a warp's tile */
#define MT (WTM / 16)
#define NT (WTN / 8)
/* smem row stride: one 16-byte copy more than a K step (80 or 144 bytes), so the fragment
 * loads of a warp fall in 32 different banks */
#define LDS (BK + EPC)

/* two consecutive activations as floats, and back */
static __device__ __forceinline__ float2 load2(const act_t *p) {
#if MOERT_ACT == 3
  return *(const float2 *)p;
#else
  const unsigned int v = *(const unsigned int *)p;
  return make_float2(moert_act_f32((unsigned short)(v & 0xffffu)),
                     moert_act_f32((unsigned short)(v >> 16)));
#endif
}
static __device__ __forceinline__ void store2(act_t *p, float a, float b) {
#if MOERT_ACT == 3
  *(float2 *)p = make_float2(a, b);
#else
  *(unsigned int *)p = moert_pack2(a, b);
#endif
}
static __device__ __forceinline__ float act_f32(act_t v) {
#if MOERT_ACT == 3
  return v;
#else
  return moert_act_f32(v);
#endif
}

static __device__ __forceinline__ unsigned int smem_addr(const void *p) {
  return (unsigned int)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared; src_bytes = 0 fills the destination with zeros. */
static __device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
               "l"(src), "r"(src_bytes));
}
static __device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
static __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

#if MOERT_ACT != 3
static __device__ __forceinline__ void mma16816(float (&d)[4], const unsigned int (&a)[4],
                                                const unsigned int (&b)[2]) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." MOERT_MMA_TYPE "." MOERT_MMA_TYPE
               ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#else
static __device__ __forceinline__ void mma1688(float (&d)[4], const unsigned int (&a)[4],
                                               const unsigned int (&b)[2]) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, "
               "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
/* x = hi + lo, both tf32 (hi rounded to nearest, lo the rounded remainder) */
static __device__ __forceinline__ void split_tf32(float x, unsigned int &hi, unsigned int &lo) {
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(hi) : "f"(x));
  const float rest = x - __uint_as_float(hi);
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(lo) : "f"(rest));
}
#endif

/* The rows of this CTA's block: arow = the A row to read (-1: none), orow = the output row.
 * Returns false (uniformly) when the block is past the plan's last block. */
static __device__ __forceinline__ bool block_rows(int routed, int gather_token, int T,
                                                  const int *offsets, const int *padded_offsets,
                                                  const int *block_expert,
                                                  const int *packed_token, const int *meta,
                                                  int *s_arow, int *s_orow, int &expert) {
  const int b = blockIdx.x;
  int start, end;
  if (routed) {
    if (b >= meta[0]) return false;
    expert = block_expert[b];
    start = offsets[expert] + (b * BM - padded_offsets[expert]);
    end = offsets[expert + 1];
  } else {
    expert = 0;
    start = b * BM;
    end = T;
    if (start >= T) return false;
  }
  for (int i = threadIdx.x; i < BM; i += NTHREADS) {
    const int r = start + i;
    const bool ok = r < end;
    s_orow[i] = ok ? r : -1;
    s_arow[i] = ok ? (routed && gather_token ? packed_token[r] : r) : -1;
  }
  return true;
}

/* C[BM x BN] = A[rows] . B^T for NB weight matrices B (N x K row-major, K contiguous) at
 * once: the gate/up pair shares its A tile.  acc[nb][mt][nt][4] holds the mma layout. */
template <int NB>
static __device__ __forceinline__ void gemm_tile(const act_t *a, long long a_stride,
                                                 const act_t *b0, const act_t *b1, int K, int N,
                                                 int n0, const int *s_arow, act_t *smem,
                                                 float (&acc)[NB][MT][NT][4]) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / WN, wn = warp % WN, g = lane >> 2, c = lane & 3;
  act_t *As = smem;                         /* [STAGES][BM][LDS] */
  act_t *Bs = smem + STAGES * BM * LDS;     /* [STAGES][NB][BN][LDS] */
  const int ktiles = (K + BK - 1) / BK;

#pragma unroll
  for (int i = 0; i < NB; i++)
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
      for (int n = 0; n < NT; n++)
#pragma unroll
        for (int q = 0; q < 4; q++) acc[i][m][n][q] = 0.0f;

  auto load_stage = [&](int stage, int kt) {
    const int k0 = kt * BK;
    act_t *as = As + stage * BM * LDS;
    for (int ch = tid; ch < BM * CPR; ch += NTHREADS) {
      const int r = ch / CPR, kc = (ch % CPR) * EPC, src = s_arow[r];
      const bool ok = src >= 0 && k0 + kc < K;
      const act_t *gp = ok ? a + (size_t)src * (size_t)a_stride + k0 + kc : a;
      cp_async16(as + r * LDS + kc, gp, ok ? 16 : 0);
    }
    act_t *bs = Bs + stage * NB * BN * LDS;
    for (int ch = tid; ch < NB * BN * CPR; ch += NTHREADS) {
      const int which = ch / (BN * CPR), rem = ch % (BN * CPR);
      const int r = rem / CPR, kc = (rem % CPR) * EPC, n = n0 + r;
      const act_t *bw = which ? b1 : b0;
      const bool ok = n < N && k0 + kc < K;
      const act_t *gp = ok ? bw + (size_t)n * (size_t)K + k0 + kc : bw;
      cp_async16(bs + (which * BN + r) * LDS + kc, gp, ok ? 16 : 0);
    }
  };

#pragma unroll
  for (int s = 0; s < STAGES - 1; s++) {
    if (s < ktiles) load_stage(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; kt++) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    {
      const int next = kt + STAGES - 1;
      if (next < ktiles) load_stage(next % STAGES, next);
      cp_async_commit();
    }
    const act_t *as = As + (kt % STAGES) * BM * LDS;
    const act_t *bs = Bs + (kt % STAGES) * NB * BN * LDS;
#if MOERT_ACT == 3
#pragma unroll
    for (int kk = 0; kk < BK; kk += 8) {
      unsigned int ah[MT][4], al[MT][4];
#pragma unroll
      for (int m = 0; m < MT; m++) {
        const act_t *p = as + (wm * WTM + m * 16 + g) * LDS + kk + c;
        split_tf32(p[0], ah[m][0], al[m][0]);
        split_tf32(p[8 * LDS], ah[m][1], al[m][1]);
        split_tf32(p[4], ah[m][2], al[m][2]);
        split_tf32(p[8 * LDS + 4], ah[m][3], al[m][3]);
      }
#pragma unroll
      for (int i = 0; i < NB; i++) {
#pragma unroll
        for (int n = 0; n < NT; n++) {
          const act_t *p = bs + (i * BN + wn * WTN + n * 8 + g) * LDS + kk + c;
          unsigned int bh[2], bl[2];
          split_tf32(p[0], bh[0], bl[0]);
          split_tf32(p[4], bh[1], bl[1]);
#pragma unroll
          for (int m = 0; m < MT; m++) {
            mma1688(acc[i][m][n], al[m], bh);
            mma1688(acc[i][m][n], ah[m], bl);
            mma1688(acc[i][m][n], ah[m], bh);
          }
        }
      }
    }
#else
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      unsigned int af[MT][4];
#pragma unroll
      for (int m = 0; m < MT; m++) {
        const act_t *p = as + (wm * WTM + m * 16 + g) * LDS + kk + 2 * c;
        af[m][0] = *(const unsigned int *)(p);
        af[m][1] = *(const unsigned int *)(p + 8 * LDS);
        af[m][2] = *(const unsigned int *)(p + 8);
        af[m][3] = *(const unsigned int *)(p + 8 * LDS + 8);
      }
#pragma unroll
      for (int i = 0; i < NB; i++) {
#pragma unroll
        for (int n = 0; n < NT; n++) {
          const act_t *p = bs + (i * BN + wn * WTN + n * 8 + g) * LDS + kk + 2 * c;
          unsigned int bf[2];
          bf[0] = *(const unsigned int *)(p);
          bf[1] = *(const unsigned int *)(p + 8);
#pragma unroll
          for (int m = 0; m < MT; m++) mma16816(acc[i][m][n], af[m], bf);
        }
      }
    }
#endif
  }
  cp_async_wait<0>();
}

static __device__ __forceinline__ float silu(float v) { return v / (1.0f + expf(-v)); }

/* h = silu(x Wg^T) * (x Wu^T) for one block of rows and 64 columns of I.  wtab holds the
 * device addresses of the E gate matrices, then of the E up matrices (at wtab + up_offset). */
extern "C" __global__ void __launch_bounds__(NTHREADS)
moert_gate_up(const unsigned long long *wtab, int up_offset, const act_t *x, long long x_stride,
              int routed, int T, int K, int N, const int *offsets, const int *padded_offsets,
              const int *block_expert, const int *packed_token, const int *meta, act_t *h,
              long long h_stride) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ int s_arow[BM], s_orow[BM];
  int expert;
  if (!block_rows(routed, 1, T, offsets, padded_offsets, block_expert, packed_token, meta,
                  s_arow, s_orow, expert))
    return;
  __syncthreads();
  const act_t *wg = (const act_t *)wtab[expert];
  const act_t *wu = (const act_t *)wtab[up_offset + expert];
  const int n0 = blockIdx.y * BN;
  float acc[2][MT][NT][4];
  gemm_tile<2>(x, x_stride, wg, wu, K, N, n0, s_arow, (act_t *)smem_raw, acc);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp / WN, wn = warp % WN, g = lane >> 2, c = lane & 3;
#pragma unroll
  for (int m = 0; m < MT; m++) {
#pragma unroll
    for (int n = 0; n < NT; n++) {
      const int col = n0 + wn * WTN + n * 8 + 2 * c;
#pragma unroll
      for (int half = 0; half < 2; half++) {
        const int orow = s_orow[wm * WTM + m * 16 + g + 8 * half];
        if (orow >= 0 && col < N) {
          const float h0 = silu(acc[0][m][n][2 * half]) * acc[1][m][n][2 * half];
          const float h1 = silu(acc[0][m][n][2 * half + 1]) * acc[1][m][n][2 * half + 1];
          store2(h + (size_t)orow * (size_t)h_stride + col, h0, h1);
        }
      }
    }
  }
}

/* ypair = h Wd^T (f32) for one block of rows and 64 columns of H. */
extern "C" __global__ void __launch_bounds__(NTHREADS)
moert_down(const unsigned long long *wtab, const act_t *h, long long h_stride, int routed, int T,
           int K, int N, const int *offsets, const int *padded_offsets, const int *block_expert,
           const int *meta, float *out) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ int s_arow[BM], s_orow[BM];
  int expert;
  if (!block_rows(routed, 0, T, offsets, padded_offsets, block_expert, nullptr, meta, s_arow,
                  s_orow, expert))
    return;
  __syncthreads();
  const act_t *wd = (const act_t *)wtab[expert];
  const int n0 = blockIdx.y * BN;
  float acc[1][MT][NT][4];
  gemm_tile<1>(h, h_stride, wd, wd, K, N, n0, s_arow, (act_t *)smem_raw, acc);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp / WN, wn = warp % WN, g = lane >> 2, c = lane & 3;
#pragma unroll
  for (int m = 0; m < MT; m++) {
#pragma unroll
    for (int n = 0; n < NT; n++) {
      const int col = n0 + wn * WTN + n * 8 + 2 * c;
#pragma unroll
      for (int half = 0; half < 2; half++) {
        const int orow = s_orow[wm * WTM + m * 16 + g + 8 * half];
        if (orow >= 0 && col < N)
          *(float2 *)(out + (size_t)orow * (size_t)N + col) =
              make_float2(acc[0][m][n][2 * half], acc[0][m][n][2 * half + 1]);
      }
    }
  }
}

#define COMBINE_THREADS 256

/* The start of a combine CTA (token blockIdx.x): waits for the kernel before it
 * (programmatic dependent launch; the next layer's route may launch, it waits for this
 * one), loads the token's k sorted rows and weights into s_row / s_w, and returns the
 * shared expert's sigmoid gate (1 without one): x[t] . shared_gate_w summed by the CTA in a
 * fixed order, so every column split gets the same bits. */
static __device__ float combine_begin(const int *pair_of, const float *weights, int K, int H,
                                      bool shared, const act_t *shared_gate_w, const act_t *x,
                                      long long x_stride, int *s_row, float *s_w) {
  __shared__ float s_warp[COMBINE_THREADS / 32];
  __shared__ float s_gate;
  const int t = blockIdx.x, tid = threadIdx.x;
  moert_pdl_wait();
  moert_pdl_trigger();
  if (tid < K) {
    s_row[tid] = pair_of[(size_t)t * K + tid];
    s_w[tid] = weights[(size_t)t * K + tid];
  }
  if (shared && shared_gate_w) {
    float d = 0.0f;
    const act_t *xr = x + (size_t)t * (size_t)x_stride;
    for (int i = tid; i < H; i += COMBINE_THREADS)
      d = fmaf(act_f32(xr[i]), act_f32(shared_gate_w[i]), d);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(MOERT_FULL_MASK, d, o);
    if ((tid & 31) == 0) s_warp[tid >> 5] = d;
    __syncthreads();
    if (tid == 0) {
      float s = 0.0f;
      for (int w = 0; w < COMBINE_THREADS / 32; w++) s += s_warp[w];
      s_gate = 1.0f / (1.0f + expf(-s));
    }
  } else if (tid == 0) {
    s_gate = 1.0f;
  }
  __syncthreads();
  return s_gate;
}

/* One CTA per token and column split: blockIdx.y of gridDim.y takes the chunks of
 * COMBINE_THREADS column pairs y, y + gridDim.y, ... (the host splits the columns when T is
 * small, so that a decoding step's combine spreads over several SMs; each column's sum is
 * the same whatever the split).  The shared expert's sigmoid gate (x[t] . g) is reduced in a
 * fixed order: per thread, then a xor butterfly per warp, then the warps in index order
 * (every split computes it, with the same bits). */
extern "C" __global__ void __launch_bounds__(COMBINE_THREADS)
moert_combine(const float *ypair, const int *pair_of, const float *weights, int K, int H,
              const float *yshared, const act_t *shared_gate_w, const act_t *x,
              long long x_stride, act_t *y, long long y_stride, int accumulate) {
  __shared__ int s_row[16];
  __shared__ float s_w[16];
  const int t = blockIdx.x, tid = threadIdx.x, split = blockIdx.y, nsplit = gridDim.y;
  const float sg = combine_begin(pair_of, weights, K, H, yshared != nullptr, shared_gate_w, x,
                                 x_stride, s_row, s_w);
  act_t *yr = y + (size_t)t * (size_t)y_stride;
  /* Thread tid owns the column pairs tid, tid + 256, ... (columns 2c, 2c + 1), CB of them at
   * a time, and loads the rows of CJ pairs for all CB before it adds any: CB * CJ loads in
   * flight instead of one (a row of 2048 columns took 4 x K dependent L2 round trips).
   * Each column still sums its pairs in pair order, then the shared expert, then y. */
  constexpr int CB = 4, CJ = 8;
  const int npair = H / 2;
  for (int c0 = split * COMBINE_THREADS + tid; c0 < npair; c0 += COMBINE_THREADS * CB * nsplit) {
    float a[CB][2];
#pragma unroll
    for (int q = 0; q < CB; q++) a[q][0] = a[q][1] = 0.0f;
    for (int j0 = 0; j0 < K; j0 += CJ) {
      float2 v[CJ][CB];
#pragma unroll
      for (int jj = 0; jj < CJ; jj++)
#pragma unroll
        for (int q = 0; q < CB; q++) {
          const int c = c0 + q * COMBINE_THREADS * nsplit;
          v[jj][q] = j0 + jj < K && c < npair
                         ? *(const float2 *)(ypair + (size_t)s_row[j0 + jj] * H + 2 * c)
                         : make_float2(0.0f, 0.0f);
        }
#pragma unroll
      for (int jj = 0; jj < CJ; jj++)
        if (j0 + jj < K) {
          const float wj = s_w[j0 + jj];
#pragma unroll
          for (int q = 0; q < CB; q++) {
            a[q][0] = fmaf(wj, v[jj][q].x, a[q][0]);
            a[q][1] = fmaf(wj, v[jj][q].y, a[q][1]);
          }
        }
    }
#pragma unroll
    for (int q = 0; q < CB; q++) {
      const int col = 2 * (c0 + q * COMBINE_THREADS * nsplit);
      if (col >= H) break;
      float a0 = a[q][0], a1 = a[q][1];
      if (yshared) {
        const float2 v = *(const float2 *)(yshared + (size_t)t * H + col);
        a0 = fmaf(sg, v.x, a0);
        a1 = fmaf(sg, v.y, a1);
      }
      if (accumulate) {
        const float2 old = load2(yr + col);
        a0 += old.x;
        a1 += old.y;
      }
      store2(yr + col, a0, a1);
    }
  }
}

#if MOERT_ACT != 3
/* moert_combine for rows in the activation dtype (the sm_90a prefill GEMMs with
 * MOERT_OUT_ACT): ypair [pairs, H] act, yshared [T, H] act (shared_act) or f32, H a multiple
 * of 8.  A thread owns 8 consecutive columns and loads each pair's 8 values with one 16-byte
 * load, all k loads in flight before it adds any (moert_combine's column pairs would make
 * these 4-byte loads: twice the requests of its f32 rows for half the bytes).  Each
 * column sums its pairs in pair order, then the shared expert, then y: the same order as
 * moert_combine, on the rows rounded to the activation dtype. */
static __device__ __forceinline__ void unpack8(uint4 v, float (&f)[8]) {
  const unsigned int w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    f[2 * i] = moert_act_f32((unsigned short)(w[i] & 0xffffu));
    f[2 * i + 1] = moert_act_f32((unsigned short)(w[i] >> 16));
  }
}
/* moert_combine_act's body for rows of S parts: part s of pair row r at (r S + s) H (S > 1
 * where the down GEMM split its K: moert_prefill_gemm's ksplit), added pair by pair, part by
 * part; S = 1 the plain rows */
template <int S>
static __device__ __forceinline__ void combine_act_rows(const act_t *ypair, const void *yshared,
                                                        int shared_act, float sg, int K, int H,
                                                        const int *s_row, const float *s_w,
                                                        act_t *yr, int t, int accumulate) {
  const int tid = threadIdx.x, split = blockIdx.y, nsplit = gridDim.y;
  const int nchunk = H / 8;
  for (int c = split * COMBINE_THREADS + tid; c < nchunk; c += COMBINE_THREADS * nsplit) {
    float a[8];
#pragma unroll
    for (int i = 0; i < 8; i++) a[i] = 0.0f;
    for (int j0 = 0; j0 < K * S; j0 += 8) {
      uint4 v[8];
#pragma unroll
      for (int jj = 0; jj < 8; jj++)
        if (j0 + jj < K * S)
          v[jj] = __ldcs((const uint4 *)(ypair + ((size_t)s_row[(j0 + jj) / S] * S +
                                                  (size_t)((j0 + jj) % S)) * H) + c);
#pragma unroll
      for (int jj = 0; jj < 8; jj++)
        if (j0 + jj < K * S) {
          const float wj = s_w[(j0 + jj) / S];
          float f[8];
          unpack8(v[jj], f);
#pragma unroll
          for (int i = 0; i < 8; i++) a[i] = fmaf(wj, f[i], a[i]);
        }
    }
    const int col = 8 * c;
    if (yshared) {
      float f[8];
      if (shared_act) {
        unpack8(*((const uint4 *)((const act_t *)yshared + (size_t)t * H) + c), f);
      } else {
        const float4 *ys4 = (const float4 *)((const float *)yshared + (size_t)t * H + col);
        const float4 lo = ys4[0], hi = ys4[1];
        f[0] = lo.x, f[1] = lo.y, f[2] = lo.z, f[3] = lo.w;
        f[4] = hi.x, f[5] = hi.y, f[6] = hi.z, f[7] = hi.w;
      }
#pragma unroll
      for (int i = 0; i < 8; i++) a[i] = fmaf(sg, f[i], a[i]);
    }
#pragma unroll
    for (int i = 0; i < 8; i += 2) {
      float a0 = a[i], a1 = a[i + 1];
      if (accumulate) {
        const float2 old = load2(yr + col + i);
        a0 += old.x;
        a1 += old.y;
      }
      store2(yr + col + i, a0, a1);
    }
  }
}
#define COMBINE_ACT_KERNEL(NAME, S)                                                          \
  extern "C" __global__ void __launch_bounds__(COMBINE_THREADS)                              \
      NAME(const act_t *ypair, const int *pair_of, const float *weights, int K, int H,       \
           const void *yshared, int shared_act, const act_t *shared_gate_w, const act_t *x,  \
           long long x_stride, act_t *y, long long y_stride, int accumulate) {              \
    __shared__ int s_row[16];                                                                \
    __shared__ float s_w[16];                                                                \
    const int t = blockIdx.x;                                                                \
    const float sg = combine_begin(pair_of, weights, K, H, yshared != nullptr, shared_gate_w, \
                                   x, x_stride, s_row, s_w);                                 \
    combine_act_rows<S>(ypair, yshared, shared_act, sg, K, H, s_row, s_w,                    \
                        y + (size_t)t * (size_t)y_stride, t, accumulate);                    \
  }
/* the plain rows; and rows of two parts (the down GEMM's K split: ksplit_due) */
COMBINE_ACT_KERNEL(moert_combine_act, 1)
COMBINE_ACT_KERNEL(moert_combine_act2, 2)

/* ---- the decode path: few rows per expert ----
 *
 * When an expert has a handful of rows, the padded 16-row tile wastes most of its MMA rows
 * and, worse, gives too few CTAs to keep every SM streaming weights.  Here the roles are
 * swapped: h^T = W . x^T, with 16 rows of a weight matrix as the MMA's A operand and 8 rows
 * of the expert (tokens) as B (mma m16n8k16).  A CTA takes one (touched expert, slab of
 * weight rows) work item; its 4 warps split K, each streams its part of the slab once with
 * 16-byte loads (several in flight per thread, no L1 allocation), and loops over the
 * expert's rows in chunks of 8 against every weight fragment it holds, so the slab is read
 * once for up to 8*NCH rows.  An expert with more rows than that takes another pass (the
 * slab is then warm in L2).  The warps' partial sums are added in warp order through shared
 * memory, so the result does not depend on timing.
 *
 * The fragments come straight from global memory: a thread loads 8 consecutive k of a row
 * (16 bytes) and uses them as the k of two MMAs.  Any permutation of k gives the same dot
 * product as long as A and B use the same one: logical k 2c+i <-> physical 8c+i and
 * 2c+8+i <-> 8c+2+i for the first MMA (the second takes physical 8c+4..7), where c is the
 * thread's index in its quad, the same in the A and the B fragment.
 *
 * Work items: grid.y = min(T*k, E) (host-known, so a captured graph serves any routing),
 * item j takes the j-th expert with rows, found by a scan of the plan's offsets; items past
 * the number of touched experts return at once. */
#define DEC_WARPS 4
#define DEC_THREADS (32 * DEC_WARPS)
/* k-steps of 32 per cp.async batch; the ring is DEC_THREADS * DEC_STAGES * (4 + NCH) *
 * DEC_U(NCH) * 16 bytes of dynamic shared memory (runtime/cuda/backend.c: dec_smem) */
#define DEC_U(nch) ((nch) <= 4 ? 2 : 1)

static __device__ __forceinline__ uint4 ld_weights(const act_t *p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
static __device__ __forceinline__ uint4 ld_rows(const act_t *p) {
  uint4 v;
  asm volatile("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

/* The j-th expert (in expert order) with at least one row, or -1: one pass over the
 * offsets per DEC_THREADS experts, a ballot and a prefix over the warps. */
static __device__ int dec_expert(const int *offsets, int E, int j) {
  __shared__ int s_cnt[DEC_WARPS];
  __shared__ int s_e;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (tid == 0) s_e = -1;
  int seen = 0;
  for (int base = 0; base < E; base += DEC_THREADS) {
    const int e = base + tid;
    const bool nz = e < E && offsets[e + 1] > offsets[e];
    const unsigned int m = __ballot_sync(MOERT_FULL_MASK, nz);
    if (lane == 0) s_cnt[warp] = __popc(m);
    __syncthreads();
    int before = seen, total = 0;
#pragma unroll
    for (int w = 0; w < DEC_WARPS; w++) {
      before += w < warp ? s_cnt[w] : 0;
      total += s_cnt[w];
    }
    if (nz && before + __popc(m & ((1u << lane) - 1u)) == j) s_e = e;
    __syncthreads();
    seen += total;
    if (seen > j) break; /* uniform: every thread has the same seen */
  }
  return s_e;
}

/* acc[m][ch] += W_m[16 rows] . X[ch: 8 rows]^T over this warp's batches of k (K a multiple
 * of 32).
 * w[m] points at row g of matrix m's 16-row tile (row g + 8 is 8*K further), xp[ch] at the
 * row of token g of chunk ch (nullptr: a missing row, read as zeros).
 *
 * The bytes go through a per-thread ring in shared memory with cp.async, DEC_STAGES batches
 * of U k-steps, DEC_STAGES - 1 in flight while one is multiplied: loads into registers were
 * sunk by ptxas next to their use, leaving too few bytes in flight to stream at full
 * bandwidth.  Each thread reads back only what it copied, so no barrier is needed: the
 * thread's own cp.async.wait_group orders it.  Weights skip L1 (.cg), rows use it (.ca):
 * the CTAs of one expert share them. */
#define DEC_STAGES 3
static __device__ __forceinline__ void cp_async16_ca(void *dst, const void *src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
               "l"(src), "r"(src_bytes));
}
/* weights: L2 fetches 256 bytes around each miss (the rest of the run is read next) */
static __device__ __forceinline__ void cp_async16_l2(void *dst, const void *src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
               "l"(src), "r"(src_bytes));
}
template <int NM, int NCH, int U, int STG = DEC_STAGES>
static __device__ __forceinline__ void dec_mma(const act_t *const (&w)[NM], int K,
                                               const act_t *const (&xp)[NCH],
                                               unsigned char *ring, float (&acc)[NM][NCH][4]) {
  constexpr int CH = (NM * 2 + NCH) * U; /* 16-byte copies per thread per batch */
  const int tid = threadIdx.x, c = tid & 3, warp = tid >> 5;
  /* K is split over the warps batch by batch (warp w takes batches w, w + 4, ...), so that
   * at any time the CTA reads 4 x 32U consecutive k of each row: long runs in DRAM.  The
   * first try gave each warp a contiguous quarter of K, and each row was read 64U bytes at
   * a time from 4 places: 1.9 TB/s. */
  const int nbatch = (K + 32 * U - 1) / (32 * U);
  const int nst = warp < nbatch ? (nbatch - warp + DEC_WARPS - 1) / DEC_WARPS : 0;
  const int kend = K;
  auto slot = [&](int stage, int i) -> unsigned char * {
    return ring + ((size_t)(stage * CH + i) * DEC_THREADS + tid) * 16;
  };
  auto issue = [&](int st) {
    const int s = st % STG, kb = (st * DEC_WARPS + warp) * 32 * U + 8 * c;
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int kk = kb + 32 * u;
      const bool ok = kk < kend;
#pragma unroll
      for (int m = 0; m < NM; m++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++)
          cp_async16_l2(slot(s, (m * 2 + hh) * U + u), ok ? w[m] + (size_t)hh * 8 * K + kk : w[0],
                        ok ? 16 : 0);
#pragma unroll
      for (int ch = 0; ch < NCH; ch++) {
        const bool okx = ok && xp[ch] != nullptr;
        cp_async16_ca(slot(s, NM * 2 * U + ch * U + u), okx ? xp[ch] + kk : w[0], okx ? 16 : 0);
      }
    }
  };
#pragma unroll
  for (int st = 0; st < STG - 1; st++) {
    if (st < nst) issue(st);
    cp_async_commit();
  }
  for (int st = 0; st < nst; st++) {
    cp_async_wait<STG - 2>();
    {
      const int next = st + STG - 1; /* refills the slot this thread emptied last */
      if (next < nst) issue(next);
      cp_async_commit();
    }
    const int s = st % STG;
#pragma unroll
    for (int u = 0; u < U; u++) {
      uint4 xa[NCH];
#pragma unroll
      for (int ch = 0; ch < NCH; ch++) xa[ch] = *(const uint4 *)slot(s, NM * 2 * U + ch * U + u);
#pragma unroll
      for (int m = 0; m < NM; m++) {
        const uint4 lo = *(const uint4 *)slot(s, (m * 2) * U + u);
        const uint4 hi = *(const uint4 *)slot(s, (m * 2 + 1) * U + u);
        const unsigned int a0[4] = {lo.x, hi.x, lo.y, hi.y};
        const unsigned int a1[4] = {lo.z, hi.z, lo.w, hi.w};
#pragma unroll
        for (int ch = 0; ch < NCH; ch++) {
          const unsigned int b0[2] = {xa[ch].x, xa[ch].y};
          const unsigned int b1[2] = {xa[ch].z, xa[ch].w};
          mma16816(acc[m][ch], a0, b0);
          mma16816(acc[m][ch], a1, b1);
        }
      }
    }
  }
  cp_async_wait<0>();
}

/* The gate/up part of a decode work item, rows r0 .. r0 + 8 NCH - 1 of the expert: w holds
 * MS gate tiles then MS up tiles (16 rows of I each, row g of each); the warps' partial sums
 * go through s_red and are added in warp order (deterministic), then store(rr, col, gate,
 * up) gets the chunk's row rr (0 .. 8 NCH - 1, rows past the expert's included: zero sums)
 * and the slab's column col (0 .. 16 MS - 1).  Ends with a barrier: s_red and the ring may
 * be reused. */
template <int MS, int NCH, int U, typename Store>
static __device__ __forceinline__ void dec_h_chunk(const act_t *const (&w)[2 * MS], int K,
                                                   const act_t *x, long long x_stride,
                                                   const int *packed_token, int row0, int rows,
                                                   int r0, unsigned char *ring,
                                                   float4 (*s_red)[2 * MS][NCH][32], Store store) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2;
  const act_t *xp[NCH];
#pragma unroll
  for (int ch = 0; ch < NCH; ch++) {
    const int r = r0 + ch * 8 + g;
    xp[ch] = r < rows ? x + (size_t)packed_token[row0 + r] * (size_t)x_stride : nullptr;
  }
  float acc[2 * MS][NCH][4];
#pragma unroll
  for (int m = 0; m < 2 * MS; m++)
#pragma unroll
    for (int ch = 0; ch < NCH; ch++)
#pragma unroll
      for (int q = 0; q < 4; q++) acc[m][ch][q] = 0.0f;
  dec_mma<2 * MS, NCH, U>(w, K, xp, ring, acc);
#pragma unroll
  for (int m = 0; m < 2 * MS; m++)
#pragma unroll
    for (int ch = 0; ch < NCH; ch++)
      s_red[warp][m][ch][lane] = make_float4(acc[m][ch][0], acc[m][ch][1], acc[m][ch][2], acc[m][ch][3]);
  __syncthreads(); /* s_red written; every thread is past dec_mma: the ring is free */
  for (int i = tid; i < MS * NCH * 128; i += DEC_THREADS) {
    const int mt = i / (NCH * 128), ch = (i >> 7) % NCH, l = (i >> 2) & 31, q = i & 3;
    float gs = 0.0f, us = 0.0f;
#pragma unroll
    for (int ww = 0; ww < DEC_WARPS; ww++) { /* warp order: deterministic */
      gs += ((const float *)&s_red[ww][mt][ch][l])[q];
      us += ((const float *)&s_red[ww][MS + mt][ch][l])[q];
    }
    store(ch * 8 + 2 * (l & 3) + (q & 1), 16 * mt + (l >> 2) + 8 * (q >> 1), gs, us);
  }
  __syncthreads(); /* s_red is rewritten by the next pass */
}

/* h = silu(x Wg^T) * (x Wu^T): work item (slab of 16 rows of I, touched expert). */
template <int NCH>
static __device__ __forceinline__ void dec_gate_up(const unsigned long long *wtab, int up_offset,
                                                   const act_t *x, long long x_stride, int K,
                                                   int N, int E, const int *offsets,
                                                   const int *packed_token, act_t *h,
                                                   long long h_stride) {
  constexpr int U = DEC_U(NCH);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float4 s_red[DEC_WARPS][2][NCH][32];
  moert_pdl_wait();
  moert_pdl_trigger();
  const int e = dec_expert(offsets, E, blockIdx.y);
  if (e < 0) return;
  const int row0 = offsets[e], rows = offsets[e + 1] - row0;
  const int g = (threadIdx.x & 31) >> 2;
  const int n0 = blockIdx.x * 16;
  const act_t *const w[2] = {(const act_t *)wtab[e] + (size_t)(n0 + g) * K,
                             (const act_t *)wtab[up_offset + e] + (size_t)(n0 + g) * K};
  for (int r0 = 0; r0 < rows; r0 += 8 * NCH)
    dec_h_chunk<1, NCH, U>(w, K, x, x_stride, packed_token, row0, rows, r0, smem_raw, s_red,
                           [&](int rr, int col, float gs, float us) {
                             if (r0 + rr < rows)
                               h[(size_t)(row0 + r0 + rr) * (size_t)h_stride + n0 + col] =
                                   moert_f32_act(silu(gs) * us);
                           });
}

/* ypair = h Wd^T (f32): work item (slab of 32 rows of H, touched expert).  The weights do
 * not depend on the previous kernel (only on the plan, which finished before it), so the
 * CTA asks L2 for its slab before it waits for h. */
template <int NCH>
static __device__ __forceinline__ void dec_down(const unsigned long long *wtab, const act_t *h,
                                                long long h_stride, int K, int N, int E,
                                                const int *offsets, float *out) {
  constexpr int U = DEC_U(NCH);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float4 s_red[DEC_WARPS][2][NCH][32];
  const int e = dec_expert(offsets, E, blockIdx.y);
  if (e < 0) {
    moert_pdl_trigger();
    return;
  }
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2;
  const int n0 = blockIdx.x * 32;
  const act_t *wd = (const act_t *)wtab[e];
  {
    const char *slab = (const char *)(wd + (size_t)n0 * K);
    const size_t bytes = (size_t)32 * K * sizeof(act_t);
    for (size_t off = (size_t)tid * 128; off < bytes; off += (size_t)DEC_THREADS * 128)
      asm volatile("prefetch.global.L2::evict_last [%0];\n" ::"l"(slab + off));
  }
  moert_pdl_wait();
  moert_pdl_trigger();
  const int row0 = offsets[e], rows = offsets[e + 1] - row0;
  const act_t *const w[2] = {wd + (size_t)(n0 + g) * K, wd + (size_t)(n0 + 16 + g) * K};
  for (int r0 = 0; r0 < rows; r0 += 8 * NCH) {
    const act_t *xp[NCH];
#pragma unroll
    for (int ch = 0; ch < NCH; ch++) {
      const int r = r0 + ch * 8 + g;
      xp[ch] = r < rows ? h + (size_t)(row0 + r) * (size_t)h_stride : nullptr;
    }
    float acc[2][NCH][4];
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
      for (int ch = 0; ch < NCH; ch++)
#pragma unroll
        for (int q = 0; q < 4; q++) acc[m][ch][q] = 0.0f;
    dec_mma<2, NCH, U>(w, K, xp, smem_raw, acc);
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
      for (int ch = 0; ch < NCH; ch++)
        s_red[warp][m][ch][lane] = make_float4(acc[m][ch][0], acc[m][ch][1], acc[m][ch][2], acc[m][ch][3]);
    __syncthreads();
    for (int i = tid; i < 2 * NCH * 32 * 4; i += DEC_THREADS) {
      const int m = i / (NCH * 128), rem = i % (NCH * 128);
      const int ch = rem >> 7, l = (rem >> 2) & 31, q = rem & 3;
      float s = 0.0f;
#pragma unroll
      for (int ww = 0; ww < DEC_WARPS; ww++) s += ((const float *)&s_red[ww][m][ch][l])[q];
      const int r = r0 + ch * 8 + 2 * (l & 3) + (q & 1);
      const int col = n0 + 16 * m + (l >> 2) + 8 * (q >> 1);
      if (r < rows) out[(size_t)(row0 + r) * (size_t)N + col] = s;
    }
    __syncthreads();
  }
}

/* ---- split-K decode: both projections in one kernel (a row an expert) ----
 *
 * The two decode kernels above stream the touched experts' weights in two phases with a
 * grid-wide wait between them: no down slab starts before every h of its expert exists, so
 * at T = 1 each phase pays its own ramp and tail with SMs idle (decode-log.md).  Here a work
 * item (32 rows of I, touched expert) computes its h slab (rows x 32, rounded to the
 * activation dtype as the two-kernel path stores it) and multiplies it at once by the
 * matching 32 columns of Wd: a partial down row for each of the expert's rows,
 * part[(row * S + slab) * H + n] in f32, S = I / 32.  moert_combine_slabs sums each pair's S
 * partials in slab order.  No CTA waits on another's output, so the weights of both
 * projections stream as one phase (T = 1 on the H200: 33.0 us against 34.9, decode-log.md
 * v9; a cluster of two CTAs a work item, each with half of K, was slower: 40.3).
 *
 * The gate/up phase is dec_mma over 4 weight tiles (gate and up, 2 x 16 rows).  The down
 * phase: 16 H rows x 32 I columns (1 KB, rows 64 bytes apart in Wd) a tile; warp w takes the
 * tiles w, w + 4, ...; its lanes copy them with cp.async (L2 fetches of 256
 * bytes: the neighbouring slabs' CTAs read the rest of each run) into the warp's part of the
 * gate/up ring (free by then; 3 stages of 4 tiles), read them back with ldmatrix (the 16-byte
 * chunks of each row rotated: no bank conflicts) and multiply them by h^T (m16n8k16: Wd rows
 * as M, the expert's rows as N). */
#define DF_SLAB 32  /* rows of I a work item: Wd is read in runs of 64 bytes */
#define DF_STAGES 3 /* Wd ring: DEC_WARPS x DF_STAGES x 4 KB (48 KB, in the gate/up ring) */
static __device__ __forceinline__ void ldmatrix_x4(unsigned int (&r)[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
/* byte offset of 16-byte chunk q of row r (0..15) in a Wd tile of SL columns (rows of 2 SL
 * bytes): the chunks of the rows that share 128 bytes are rotated, so that an ldmatrix of 8
 * rows hits 8 different 16-byte bank groups */
template <int SL>
static __device__ __forceinline__ int df_swz(int r, int q) {
  constexpr int RB = 2 * SL, QPR = SL / 8;
  return r * RB + ((q ^ ((r / (128 / RB)) % QPR)) << 4);
}

template <int NCH, int SL>
static __device__ __forceinline__ void dec_fused(const unsigned long long *wtab, int up_offset,
                                                 const act_t *x, long long x_stride, int K,
                                                 int N, int E, const int *offsets,
                                                 const int *packed_token, float *part) {
  constexpr int MS = SL / 16, NM = 2 * MS, U = 1;
  constexpr int TB = 32 * SL, TPS = 4096 / TB, QPR = SL / 8; /* tile bytes, tiles a stage */
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float4 s_red[DEC_WARPS][NM][NCH][32];
  __shared__ __align__(16) act_t s_h[8 * NCH][SL];
  moert_pdl_wait();
  moert_pdl_trigger();
  const int e = dec_expert(offsets, E, blockIdx.y);
  if (e < 0) return;
  const int row0 = offsets[e], rows = offsets[e + 1] - row0;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, c = lane & 3;
  const int slab = blockIdx.x, S = gridDim.x, n0 = slab * SL;
  const int ntile = K / 16; /* Wd tiles of 16 H rows */
  const act_t *const wd = (const act_t *)wtab[2 * up_offset + e] + n0; /* column n0 of row 0 */
  const act_t *w[NM];
#pragma unroll
  for (int m = 0; m < MS; m++) {
    w[m] = (const act_t *)wtab[e] + (size_t)(n0 + 16 * m + g) * K;
    w[MS + m] = (const act_t *)wtab[up_offset + e] + (size_t)(n0 + 16 * m + g) * K;
  }
  const int nmine = warp < ntile ? (ntile - warp + DEC_WARPS - 1) / DEC_WARPS : 0;
  const int nst = (nmine + TPS - 1) / TPS;
  unsigned char *const ring = smem_raw + warp * (DF_STAGES * 4096);
  auto issue = [&](int st) {
    unsigned char *dst = ring + (st % DF_STAGES) * 4096;
#pragma unroll
    for (int u = 0; u < TPS; u++) {
      const int i = st * TPS + u;
      if (i < nmine)
#pragma unroll
        for (int p = 0; p < QPR / 2; p++) {
          const int qq = lane + 32 * p, r = qq / QPR, q = qq % QPR;
          cp_async16_l2(dst + u * TB + df_swz<SL>(r, q),
                        wd + (size_t)((warp + DEC_WARPS * i) * 16 + r) * N + 8 * q, 16);
        }
    }
  };
  for (int r0 = 0; r0 < rows; r0 += 8 * NCH) {
    /* gate/up: h slab of these rows into s_h (rows past the expert's are zero) */
    dec_h_chunk<MS, NCH, U>(w, K, x, x_stride, packed_token, row0, rows, r0, smem_raw, s_red,
                            [&](int rr, int col, float gs, float us) {
                              s_h[rr][col] = moert_f32_act(silu(gs) * us);
                            });
    /* down: part[row, slab] = Wd[:, n0 .. n0 + SL - 1] . h[row] */
    unsigned int bfr[NCH][MS][2];
#pragma unroll
    for (int ch = 0; ch < NCH; ch++)
#pragma unroll
      for (int kk = 0; kk < MS; kk++) {
        bfr[ch][kk][0] = *(const unsigned int *)&s_h[ch * 8 + g][16 * kk + 2 * c];
        bfr[ch][kk][1] = *(const unsigned int *)&s_h[ch * 8 + g][16 * kk + 2 * c + 8];
      }
#pragma unroll
    for (int st = 0; st < DF_STAGES - 1; st++) {
      if (st < nst) issue(st);
      cp_async_commit();
    }
    const int lr = (lane & 7) + 8 * ((lane >> 3) & 1), lh = lane >> 4; /* ldmatrix row, chunk */
    for (int st = 0; st < nst; st++) {
      cp_async_wait<DF_STAGES - 2>();
      __syncwarp(); /* every lane's copies of stage st landed; stage st - 1 is read */
      if (st + DF_STAGES - 1 < nst) issue(st + DF_STAGES - 1);
      cp_async_commit();
      const unsigned char *stage = ring + (st % DF_STAGES) * 4096;
#pragma unroll
      for (int u = 0; u < TPS; u++) {
        const int i = st * TPS + u;
        if (i >= nmine) break;
        unsigned int a[MS][4];
#pragma unroll
        for (int kk = 0; kk < MS; kk++) ldmatrix_x4(a[kk], stage + u * TB + df_swz<SL>(lr, 2 * kk + lh));
        const int nrow = (warp + DEC_WARPS * i) * 16 + g;
#pragma unroll
        for (int ch = 0; ch < NCH; ch++) {
          float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
          for (int kk = 0; kk < MS; kk++) mma16816(d, a[kk], bfr[ch][kk]);
#pragma unroll
          for (int q = 0; q < 4; q++) {
            const int r = r0 + ch * 8 + 2 * c + (q & 1);
            if (r < rows)
              part[((size_t)(row0 + r) * (size_t)S + slab) * (size_t)K + nrow + 8 * (q >> 1)] = d[q];
          }
        }
      }
    }
    cp_async_wait<0>();
    __syncthreads(); /* the ring and s_h are rewritten by the next pass */
  }
}

/* moert_combine for the split-K decode kernel's partial rows: part [pairs * S, H] f32, the S
 * partials of a pair in slab order.  CTA (token blockIdx.x, 32 columns blockIdx.y): a lane
 * owns a column, warp w sums the rows f = w, w + 8, ... of the token's k * S (pair f / S,
 * slab f % S) times their pair's weight, CF loads in flight; the warps' sums are added in
 * warp order, then the shared expert and y as moert_combine.  Fixed order: same bits on
 * every run. */
extern "C" __global__ void __launch_bounds__(COMBINE_THREADS)
moert_combine_slabs(const float *part, int S, const int *pair_of, const float *weights, int K,
                    int H, const float *yshared, const act_t *shared_gate_w, const act_t *x,
                    long long x_stride, act_t *y, long long y_stride, int accumulate) {
  constexpr int NW = COMBINE_THREADS / 32, CF = 16;
  __shared__ int s_row[16];
  __shared__ float s_w[16];
  __shared__ float s_sum[NW][32];
  const int t = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float sg = combine_begin(pair_of, weights, K, H, yshared != nullptr, shared_gate_w, x,
                                 x_stride, s_row, s_w);
  const int col = blockIdx.y * 32 + lane, nrow = K * S; /* H is a multiple of 32 */
  float a = 0.0f;
  for (int f0 = warp; f0 < nrow; f0 += NW * CF) {
    float v[CF], wv[CF];
#pragma unroll
    for (int u = 0; u < CF; u++) {
      const int f = f0 + NW * u, j = f / S;
      const bool in = f < nrow;
      v[u] = in ? part[((size_t)s_row[j] * (size_t)S + (size_t)(f - j * S)) * (size_t)H + col]
                : 0.0f;
      wv[u] = in ? s_w[j] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < CF; u++) a = fmaf(wv[u], v[u], a);
  }
  s_sum[warp][lane] = a;
  __syncthreads();
  if (warp != 0) return;
  a = 0.0f;
#pragma unroll
  for (int w = 0; w < NW; w++) a += s_sum[w][lane]; /* warp order */
  if (yshared) a = fmaf(sg, yshared[(size_t)t * H + col], a);
  act_t *yr = y + (size_t)t * (size_t)y_stride;
#if MOERT_ACT == 3
  if (accumulate) a += yr[col];
  yr[col] = a;
#else
  if (accumulate) a += moert_act_f32(yr[col]);
  yr[col] = moert_f32_act(a);
#endif
}

#define MOERT_DEC_KERNELS(NCH)                                                             \
  extern "C" __global__ void __launch_bounds__(DEC_THREADS) moert_dec_gate_up_##NCH(       \
      const unsigned long long *wtab, int up_offset, const act_t *x, long long x_stride,   \
      int K, int N, int E, const int *offsets, const int *packed_token, act_t *h,          \
      long long h_stride) {                                                                \
    dec_gate_up<NCH>(wtab, up_offset, x, x_stride, K, N, E, offsets, packed_token, h,      \
                     h_stride);                                                            \
  }                                                                                        \
  extern "C" __global__ void __launch_bounds__(DEC_THREADS) moert_dec_down_##NCH(          \
      const unsigned long long *wtab, const act_t *h, long long h_stride, int K, int N,    \
      int E, const int *offsets, float *out) {                                             \
    dec_down<NCH>(wtab, h, h_stride, K, N, E, offsets, out);                               \
  }
MOERT_DEC_KERNELS(1)
MOERT_DEC_KERNELS(2)
MOERT_DEC_KERNELS(4)
MOERT_DEC_KERNELS(8)
extern "C" __global__ void __launch_bounds__(DEC_THREADS, 3) moert_dec_fused(
    const unsigned long long *wtab, int up_offset, const act_t *x, long long x_stride, int K,
    int N, int E, const int *offsets, const int *packed_token, float *part) {
  dec_fused<1, DF_SLAB>(wtab, up_offset, x, x_stride, K, N, E, offsets, packed_token, part);
}
#endif
