/* prefill_sm80.cu — the experts' grouped GEMMs for prefill on sm_80, sm_86 and sm_89:
 * mma.sync m16n8k16 (bf16/f16, f32 accumulation) fed by ldmatrix from a multi-stage
 * cp.async pipeline.  The same interface as prefill_sm90.cu (the kernel's parameters are
 * the same; the tensor maps are ignored and the weights come from wtab):
 *
 *   MOERT_GATED=1  h[row]   = silu(A[row] . Wg[e]^T) * (A[row] . Wu[e]^T)   act dtype [rows, N]
 *   MOERT_GATED=0  out[row] = A[row] . Wd[e]^T                               f32       [rows, N]
 *
 * for every row tile {e, row0, row_end} of the plan (moert_prefill.h).  A row r of a tile
 * is a[gather[r] * a_stride] (or a[r * a_stride] when gather is NULL); W[e] is [N, K]
 * row-major at wtab[e] (and the up matrix at wtab[up_offset + e]).
 *
 * CTA: 256 threads, 8 warps as 2 (M) x 4 (N); tile BM x BN per weight matrix, K steps of
 * MOERT_BK = 32, MOERT_STAGES in flight (4 on sm_80's 164 KB of shared memory, 3 on
 * sm_86/sm_89's 99 KB).  Shared-memory rows are padded by 16 bytes (BK + 8 elements), so
 * the eight 16-byte row reads of each ldmatrix phase fall in different banks.  Gated at
 * BM = 128, BN = 128: a warp holds 64 x 32 of both gate and up (128 accumulators).
 * Grid: x = row tiles (upper bound; CTAs past *tile_count return), y = column tiles.
 * All global index arithmetic is 64-bit.
 *
 * Compile-time constants: MOERT_ACT (1 bf16, 2 f16), MOERT_GATED, MOERT_BM (64, 128),
 * MOERT_BN (64, 128), MOERT_BK (32, 64), MOERT_STAGES (2..5).  K need only be a multiple of
 * 8 (a short last K step is zero-filled). */
#include "moert_device.h"
#include "moert_prefill.h"

#if MOERT_ACT != 1 && MOERT_ACT != 2
#error "prefill_sm80.cu runs bf16 (MOERT_ACT=1) or f16 (MOERT_ACT=2)"
#endif
#ifndef MOERT_GATED
#define MOERT_GATED 1
#endif
#ifndef MOERT_BM
#define MOERT_BM 128
#endif
#ifndef MOERT_BN
#define MOERT_BN 128
#endif
#ifndef MOERT_BK
#define MOERT_BK 32
#endif
#ifndef MOERT_STAGES
#define MOERT_STAGES 3
#endif

#define BM MOERT_BM
#define BN MOERT_BN
#define BK MOERT_BK
#define STAGES MOERT_STAGES
#define NB (MOERT_GATED ? 2 : 1)
#define NTHREADS 256
#define WM 2
#define WN 4
#define WTM (BM / WM) /* rows of a warp's tile */
#define WTN (BN / WN) /* columns of a warp's tile */
#define MT (WTM / 16)
#define NT (WTN / 8)
#define LDS (BK + 8) /* padded row, elements */
#define CPR (BK / 8) /* 16-byte chunks per row of a K step */

#if BM != 64 && BM != 128
#error "MOERT_BM must be 64 or 128"
#endif
#if BN != 64 && BN != 128
#error "MOERT_BN must be 64 or 128"
#endif
#if BK != 32 && BK != 64
#error "MOERT_BK must be 32 or 64"
#endif
#if NT % 2
#error "the warp tile must hold an even number of 8-column tiles (ldmatrix.x4 on B)"
#endif

typedef unsigned short act_t;

static __device__ __forceinline__ unsigned int smem_u32(const void *p) {
  return (unsigned int)__cvta_generic_to_shared(p);
}
static __device__ __forceinline__ void cp_async16(unsigned int dst, const void *src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}
static __device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
static __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
static __device__ __forceinline__ void ldmatrix_x4(unsigned int (&r)[4], unsigned int addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
static __device__ __forceinline__ void mma16816(float (&d)[4], const unsigned int (&a)[4],
                                                unsigned int b0, unsigned int b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." MOERT_MMA_TYPE "." MOERT_MMA_TYPE
               ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
static __device__ __forceinline__ float silu(float v) { return v / (1.0f + __expf(-v)); }

extern "C" __global__ void __launch_bounds__(NTHREADS, 1)
moert_prefill_gemm(const __grid_constant__ moert_tmap a_map, const moert_tmap *b_maps,
                   const unsigned long long *wtab, int up_offset, const act_t *a,
                   long long a_stride, const int *gather, const moert_row_tile *tiles,
                   const int *tile_count, int E, int N, int K, void *out, long long out_stride) {
  (void)a_map;
  (void)b_maps;
  (void)E;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  if ((int)blockIdx.x >= *tile_count) return; /* uniform over the CTA */
  const moert_row_tile tile = tiles[blockIdx.x];
  const int expert = tile.x, row0 = tile.y, row_end = tile.z;
  const int n0 = blockIdx.y * BN;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / WN, wn = warp % WN;
  const act_t *w0 = (const act_t *)wtab[expert];
  const act_t *w1 = NB == 2 ? (const act_t *)wtab[up_offset + expert] : w0;
  act_t *As = (act_t *)smem_raw;           /* [STAGES][BM][LDS] */
  act_t *Bs = As + STAGES * BM * LDS;      /* [STAGES][NB][BN][LDS] */
  const int ktiles = (K + BK - 1) / BK;

  /* the A rows this thread copies (chunk ch = tid + i NTHREADS: row ch / CPR, the same
   * 16-byte column (tid % CPR) at every K step): their sources once, so a K step costs an
   * add and a cp.async per chunk (as on sm_90a, where reading the row list and multiplying
   * by the stride at every step set the pace) */
  static_assert(NTHREADS % CPR == 0 && (BM * CPR) % NTHREADS == 0, "A chunks per thread");
  const act_t *asrc[BM * CPR / NTHREADS];
  unsigned int arow_ok = 0;
#pragma unroll
  for (int i = 0; i < BM * CPR / NTHREADS; i++) {
    const int r = row0 + (tid + i * NTHREADS) / CPR;
    const bool ok = r < row_end;
    const long long g = ok ? (gather ? gather[r] : r) : 0;
    asrc[i] = a + g * a_stride + (tid % CPR) * 8;
    arow_ok |= (ok ? 1u : 0u) << i;
  }

  auto load_stage = [&](int stage, int kt) {
    const int k0 = kt * BK;
    const unsigned int as = smem_u32(As + stage * BM * LDS);
    const int kc = (tid % CPR) * 8;
    const bool k_ok = k0 + kc < K;
#pragma unroll
    for (int i = 0; i < BM * CPR / NTHREADS; i++) {
      const int r = (tid + i * NTHREADS) / CPR;
      const bool ok = k_ok && (arow_ok >> i & 1u);
      cp_async16(as + (r * LDS + kc) * 2, ok ? asrc[i] + k0 : a, ok ? 16 : 0);
    }
    const unsigned int bs = smem_u32(Bs + stage * NB * BN * LDS);
#pragma unroll
    for (int ch = tid; ch < NB * BN * CPR; ch += NTHREADS) {
      const int which = ch / (BN * CPR), rem = ch % (BN * CPR);
      const int r = rem / CPR, kc = (rem % CPR) * 8, n = n0 + r;
      const act_t *bw = which ? w1 : w0;
      const bool ok = n < N && k0 + kc < K;
      const act_t *gp = ok ? bw + (long long)n * K + k0 + kc : bw;
      cp_async16(bs + ((which * BN + r) * LDS + kc) * 2, gp, ok ? 16 : 0);
    }
  };

  float acc[NB][MT][NT][4];
#pragma unroll
  for (int b = 0; b < NB; b++)
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
      for (int n = 0; n < NT; n++)
#pragma unroll
        for (int q = 0; q < 4; q++) acc[b][m][n][q] = 0.0f;

#pragma unroll
  for (int s = 0; s < STAGES - 1; s++) {
    if (s < ktiles) load_stage(s, s);
    cp_async_commit();
  }
  /* ldmatrix lane addresses: A x4 = rows 0-15 at k 0 / k 8; B x4 = two 8-column tiles at
   * k 0 / k 8 (matrices: n 0-7 k0, n 0-7 k8, n 8-15 k0, n 8-15 k8) */
  const int a_row = lane & 15, a_k = (lane >> 4) * 8;
  const int b_row = (lane & 7) + ((lane >> 4) << 3), b_k = ((lane >> 3) & 1) * 8;
  for (int kt = 0; kt < ktiles; kt++) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    {
      const int next = kt + STAGES - 1;
      if (next < ktiles) load_stage(next % STAGES, next);
      cp_async_commit();
    }
    const unsigned int as = smem_u32(As + (kt % STAGES) * BM * LDS);
    const unsigned int bs = smem_u32(Bs + (kt % STAGES) * NB * BN * LDS);
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      unsigned int af[MT][4];
#pragma unroll
      for (int m = 0; m < MT; m++)
        ldmatrix_x4(af[m], as + ((wm * WTM + m * 16 + a_row) * LDS + kk + a_k) * 2);
#pragma unroll
      for (int b = 0; b < NB; b++) {
#pragma unroll
        for (int n = 0; n < NT; n += 2) {
          unsigned int bf[4];
          ldmatrix_x4(bf, bs + ((b * BN + wn * WTN + n * 8 + b_row) * LDS + kk + b_k) * 2);
#pragma unroll
          for (int m = 0; m < MT; m++) {
            mma16816(acc[b][m][n], af[m], bf[0], bf[1]);
            mma16816(acc[b][m][n + 1], af[m], bf[2], bf[3]);
          }
        }
      }
    }
  }
  cp_async_wait<0>();

  /* epilogue: mma layout, {0,1} row g, {2,3} row g + 8; columns 2*(lane%4) + {0,1} */
  const int g = lane >> 2, c = lane & 3;
#pragma unroll
  for (int m = 0; m < MT; m++) {
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int r = row0 + wm * WTM + m * 16 + g + 8 * half;
      if (r >= row_end) continue;
#if MOERT_GATED
      act_t *orow = (act_t *)out + (long long)r * out_stride;
#else
      float *orow = (float *)out + (long long)r * out_stride;
#endif
#pragma unroll
      for (int n = 0; n < NT; n++) {
        const int col = n0 + wn * WTN + n * 8 + 2 * c;
        if (col >= N) continue;
#if MOERT_GATED
        const float h0 = silu(acc[0][m][n][2 * half]) * acc[NB - 1][m][n][2 * half];
        const float h1 = silu(acc[0][m][n][2 * half + 1]) * acc[NB - 1][m][n][2 * half + 1];
        *(unsigned int *)(orow + col) = moert_pack2(h0, h1);
#else
        *(float2 *)(orow + col) = make_float2(acc[0][m][n][2 * half], acc[0][m][n][2 * half + 1]);
#endif
      }
    }
  }
}
