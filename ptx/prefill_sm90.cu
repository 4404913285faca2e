/* prefill_sm90.cu — the experts' grouped GEMMs for prefill on Hopper (sm_90a only):
 * wgmma.mma_async from shared memory, weights brought in by the tensor memory accelerator
 * (cp.async.bulk.tensor with one tensor map per expert), an mbarrier pipeline of
 * MOERT_STAGES stages between one producer warpgroup and two consumer warpgroups.
 *
 *   MOERT_GATED=1  h[row]   = silu(A[row] . Wg[e]^T) * (A[row] . Wu[e]^T)   act dtype [rows, N]
 *   MOERT_GATED=0  out[row] = A[row] . Wd[e]^T                  f32 (act with MOERT_OUT_ACT) [rows, N]
 *
 * for every row tile {e, row0, row_end} of the plan (moert_prefill.h).  A is [rows, K]
 * K-contiguous; W[e] is [N, K] row-major (K contiguous), so both wgmma operands are
 * K-major and no transpose is needed.
 *
 * A comes one of two ways (MOERT_A_TMA):
 *   0  gathered: A row r of the tile is a[gather[r] * a_stride] (gate/up: the tokens of the
 *      expert's sorted pairs, read straight from x), or a[r * a_stride] when gather is
 *      NULL.  The producer warpgroup issues 16-byte cp.async into the 128-byte swizzled
 *      layout wgmma reads, and their completion arrives on the stage's mbarrier
 *      (cp.async.mbarrier.arrive.noinc).  TMA on sm_90 cannot gather rows.
 *   1  a tensor map over a contiguous [rows, K] matrix (down: h, in sorted row order):
 *      one TMA box of BM x 64 per stage.  Rows of the box past the tile's end belong to the
 *      next expert (or are zero past the matrix) and are never stored.
 * W comes by TMA: b_maps[e] (and b_maps[E + e] for the up matrix) is the tensor map of
 * expert e's [N, K] matrix, box 64 x BN, 128-byte swizzle.  One map per expert because
 * moert takes per-expert weight pointers (a single 3-D map over [E, N, K] would need the
 * experts equally spaced in memory); the maps live in global memory and are encoded once
 * per moert_experts (runtime/cuda/prefill.c).  Both kernels' last parameter, w_evict (the
 * same for the whole launch), marks the weight loads evict_first in L2 (tma_load_w).
 *
 * CTA: 384 threads = warpgroup 0 (producer; setmaxnreg down to 48 registers) + warpgroups
 * 1, 2 (consumers; up to 224).  Tile BM x BN per weight matrix, K steps of 64 (one 128-byte
 * swizzle atom per row).  BM = 128: each consumer takes 64 rows and all BN columns; BM = 64:
 * both take the 64 rows, BN/2 columns each.  Gated: BN = 128 (gate and up tiles computed
 * together: 128 accumulator registers per consumer thread at BM = 128); down: BN = 256.
 * Consumers keep one wgmma batch in flight and free a stage when the batch that read it has
 * completed.  Grid: x = row tiles (an upper bound; CTAs past *tile_count return), y = column
 * tiles of BN.  All global index arithmetic is 64-bit.
 * BM = 192 (the 192-row tiles): 512 threads, three consumer warpgroups of 64 rows each
 * (setmaxnreg 56 for the producer, 152 for the consumers), gated BN = 96 read by one m64n192
 * wgmma (MOERT_FUSED_GU), down BN = 192; a consumer whose 64 rows all lie past the tile's end
 * passes its stages on without a wgmma (always: one tile an expert of 129-192 rows).
 *
 * MOERT_PERSISTENT=1: a grid of about one CTA per SM (1-D); CTA b takes the work items
 * w = b, b + gridDim.x, ... of the tile_count x ceil(N/BN) items (row tile w % tile_count,
 * column tile w / tile_count: the order of the 2-D grid), with one pipeline over all its
 * items: the producer loads the next item's first stages while the consumers run the
 * epilogue of the last one, and the launch and pipeline fill are paid once per SM instead of
 * once per tile.
 *
 * MOERT_ORDER=1: work items with the row tile outer (w / ncol, w % ncol) instead of the
 * column tile (w % ntile, w / ntile), so the column tiles of one row tile run together and
 * read its A rows from memory once (with one CTA per item, a 1-D grid).
 * MOERT_FUSED_GU=1 (gated, 128-row tiles): the gate and up tiles lie one after the other in
 * shared memory, and one m64n256 wgmma reads both, so A is read once per K step, not twice.
 *
 * Compile-time constants: MOERT_ACT (1 bf16, 2 f16), MOERT_GATED, MOERT_BM (64, 128),
 * MOERT_BN (64, 128, 256; default 128 gated, 256 down; 64 gated / 128 down are the narrow
 * tiles of the decode sizes, moert_prefill_narrow; the narrow gate/up also 48, 80, 96, 112:
 * moert_prefill_narrow_width), MOERT_STAGES (default 4),
 * MOERT_A_TMA (default 0), MOERT_PERSISTENT, MOERT_ORDER, MOERT_FUSED_GU, MOERT_OUT_ACT
 * (default 0), MOERT_EARLY (the gate/up GEMM lets the down GEMM launch at its start, the
 * down GEMM asks for its first weight tiles before it waits: early_weights), MOERT_A_SKIP
 * (gathered A: no copy at all for the rows past the tile's end), MOERT_M_SKIP (128-row tiles:
 * a consumer whose 64 rows all lie past the tile's end skips its wgmmas), MOERT_LAYER (this file
 * compiles moert_prefill_layer, both GEMMs in one launch, instead of moert_prefill_gemm: see
 * there).  K need only
 * be a multiple of 8 (a short last K step is zero-filled: TMA fills out-of-bounds boxes
 * with zeros, the gather copies zero bytes). */
#include "moert_device.h"
#include "moert_prefill.h"

#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "prefill_sm90.cu uses wgmma and setmaxnreg: compile it for sm_90a"
#endif
#if MOERT_ACT != 1 && MOERT_ACT != 2
#error "prefill_sm90.cu runs bf16 (MOERT_ACT=1) or f16 (MOERT_ACT=2)"
#endif

#ifndef MOERT_GATED
#define MOERT_GATED 1
#endif
#ifndef MOERT_BM
#define MOERT_BM 128
#endif
#ifndef MOERT_BN
#if MOERT_GATED
#define MOERT_BN 128
#else
#define MOERT_BN 256
#endif
#endif
#ifndef MOERT_STAGES
#define MOERT_STAGES 4
#endif
#ifndef MOERT_A_TMA
#define MOERT_A_TMA 0
#endif
#ifndef MOERT_PERSISTENT
#define MOERT_PERSISTENT 0
#endif
#ifndef MOERT_ORDER
#define MOERT_ORDER 0
#endif
#ifndef MOERT_FUSED_GU
#define MOERT_FUSED_GU 0
#endif
#ifndef MOERT_OUT_ACT
#define MOERT_OUT_ACT 0
#endif
#ifndef MOERT_EPI_WIDE
#define MOERT_EPI_WIDE 0
#endif
#ifndef MOERT_EARLY
#define MOERT_EARLY 0
#endif
#ifndef MOERT_A_SKIP
#define MOERT_A_SKIP 0
#endif
#ifndef MOERT_M_SKIP
#define MOERT_M_SKIP 0 /* 1: 128-row tiles, a consumer with no row in the tile issues no wgmma */
#endif
#ifndef MOERT_KSPLIT
#define MOERT_KSPLIT 0 /* 1: the down GEMM takes a K split at run time (its ksplit argument) */
#endif
/* MOERT_BOX_ROWS: rows of the weight maps' TMA box where fewer than BN (the tile's B is then
 * loaded as BN / MOERT_BOX_ROWS boxes; 128-byte rows, so the boxes lie one after the other in
 * the swizzled layout one box of BN rows would have); default BN */
#ifndef MOERT_BOX_ROWS
#define MOERT_BOX_ROWS MOERT_BN
#endif

#define BM MOERT_BM
#define BN MOERT_BN
#define BK 64 /* 64 x 2 bytes: one 128-byte swizzle row (K steps of 32 with the 64-byte
                 * swizzle measured slower: docs/bench/prefill-log.md, v6) */
#define STAGES MOERT_STAGES
#define MOERT_SETUP_EARLY (MOERT_EARLY && !MOERT_GATED) /* the down GEMM with MOERT_EARLY */
#define NB (MOERT_GATED ? 2 : 1) /* weight matrices per CTA */
/* 192-row tiles (an experiment): three consumer warpgroups of 64 rows, 512 threads */
#define NTHREADS (BM == 192 ? 512 : 384)
#define NCONS (NTHREADS / 128 - 1) /* consumer warpgroups */
#define WG_M (BM / 64)        /* consumer warpgroups along M */
#define WG_N (NCONS / WG_M)   /* along N */
#define WGN (BN / WG_N)  /* columns of one consumer's wgmma */
#define ACC (WGN / 2)    /* f32 accumulators per thread per weight matrix */
#define A_BYTES (BM * BK * 2)
#define B_BYTES (BN * BK * 2)
#define STAGE_BYTES (A_BYTES + NB * B_BYTES)

#if BM != 64 && BM != 128 && BM != 192
#error "MOERT_BM must be 64, 128 or 192"
#endif
#if BM == 192 && (MOERT_LAYER || MOERT_EARLY || MOERT_M_SKIP || \
                  (MOERT_GATED && !MOERT_FUSED_GU))
#error "MOERT_BM=192: the two GEMMs alone, gate/up fused (no layer kernel, early launch, MOERT_M_SKIP)"
#endif
#if BN % MOERT_BOX_ROWS || (MOERT_LAYER && MOERT_BOX_ROWS != BN)
#error "MOERT_BOX_ROWS must divide MOERT_BN (and equal it in the layer kernel)"
#endif
#if WGN != 32 && WGN != 64 && WGN != 128 && WGN != 256 && \
    !(MOERT_GATED && BM == 64 && (WGN == 24 || WGN == 40 || WGN == 48 || WGN == 56)) && \
    !(BM == 192 && WGN == (MOERT_GATED ? 96 : 192))
#error "MOERT_BN gives a wgmma width other than 32, 64, 128 or 256 (or 24-56: narrow gate/up)"
#endif
#if NB * ACC > 128
#error "more than 128 accumulators per consumer thread"
#endif
/* the registers setmaxnreg gives the producer and each consumer: 128 P + 128 NCONS C within
 * the CTA's launch-bound 64 K (384 threads: 168 each at launch; 512: 128) */
#if BM == 192
#define PROD_REGS 56
#define CONS_REGS 152
#else
#define PROD_REGS 48
#define CONS_REGS 224
#endif
#define MOERT_STR2(x) #x
#define MOERT_STR(x) MOERT_STR2(x)
/* MOERT_FUSED_GU=1: the gate and up tiles lie one after the other in shared memory, so one
 * wgmma of twice the width reads both (A is read once instead of twice); the up value of a
 * gate accumulator is ACC registers further */
#if MOERT_FUSED_GU
#if !MOERT_GATED || (WGN != 128 && !(BM == 192 && WGN == 96))
#error "MOERT_FUSED_GU needs the gated GEMM with 128-row tiles (BN = 128, one consumer per 64 rows) or 192-row ones (BN = 96)"
#endif
#define NACC 1
#define MMA_ACC (2 * ACC)
#define UP_OFF ACC
#else
#define NACC NB
#define MMA_ACC ACC
#define UP_OFF 0
#endif

typedef unsigned short act_t;

/* ---- PTX wrappers ---- */

static __device__ __forceinline__ unsigned int smem_u32(const void *p) {
  return (unsigned int)__cvta_generic_to_shared(p);
}
static __device__ __forceinline__ void mbar_init(unsigned int bar, unsigned int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
static __device__ __forceinline__ void mbar_expect_tx(unsigned int bar, unsigned int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
/* expect bytes on the barrier's current phase without arriving (the arrival comes later) */
static __device__ __forceinline__ void mbar_expect_tx_only(unsigned int bar, unsigned int bytes) {
  asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
static __device__ __forceinline__ void mbar_arrive(unsigned int bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
static __device__ __forceinline__ void mbar_wait(unsigned int bar, unsigned int parity) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
/* the completion of this thread's earlier cp.async arrives on bar (counted in its init) */
static __device__ __forceinline__ void cp_async_arrive_noinc(unsigned int bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
static __device__ __forceinline__ void cp_async16(unsigned int dst, const void *src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}
static __device__ __forceinline__ void tma_load_2d(unsigned int dst, const moert_tmap *map,
                                                   int c0, int c1, unsigned int bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
      "l"((unsigned long long)map), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}
/* a weight tile.  evict (the launch's w_evict, the same in every thread): marked evict_first
 * in L2, where the plan reads each weight once and the rows the kernels write (h, the
 * combine's) fit in L2 beside the streamed weights (moert_prefill_args.w_evict) */
static __device__ __forceinline__ void tma_load_w(unsigned int dst, const moert_tmap *map,
                                                  int c0, int c1, unsigned int bar, int evict) {
  if (evict) {
    unsigned long long pol;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
        ".L2::cache_hint [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(dst),
        "l"((unsigned long long)map), "r"(c0), "r"(c1), "r"(bar), "l"(pol)
        : "memory");
  } else {
    tma_load_2d(dst, map, c0, c1, bar);
  }
}
/* a weight tile of BN rows: one box, or BN / MOERT_BOX_ROWS boxes one after the other */
static __device__ __forceinline__ void tma_load_b(unsigned int dst, const moert_tmap *map,
                                                  int c0, int c1, unsigned int bar, int evict) {
#if MOERT_BOX_ROWS == MOERT_BN
  tma_load_w(dst, map, c0, c1, bar, evict);
#else
#pragma unroll
  for (int hb = 0; hb < MOERT_BN / MOERT_BOX_ROWS; hb++)
    tma_load_w(dst + hb * MOERT_BOX_ROWS * 128, map, c0, c1 + hb * MOERT_BOX_ROWS, bar, evict);
#endif
}
static __device__ __forceinline__ void tma_prefetch_map(const moert_tmap *map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"((unsigned long long)map) : "memory");
}
static __device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
static __device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
static __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* keeps the compiler from moving accumulator accesses across wgmma fences */
template <int R>
static __device__ __forceinline__ void fence_regs(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; i++) asm volatile("" : "+f"(d[i])::"memory");
}

/* Shared-memory matrix descriptor of a K-major tile with rows of 128 bytes in the 128-byte
 * swizzle (what TMA writes with CU_TENSOR_MAP_SWIZZLE_128B): start address, leading byte
 * offset 16 (unused by this layout), stride byte offset 1024 (8 rows), swizzle mode 1. */
static __device__ __forceinline__ unsigned long long smem_desc(unsigned int addr) {
  return (unsigned long long)((addr & 0x3FFFF) >> 4) | (1ull << 16) | (64ull << 32) | (1ull << 62);
}

/* D[64 x 32] += A . B^T, both operands from shared memory (descriptors): the narrow gate/up
 * tiles (BN = 64 at BM = 64) of the decode sizes */
static __device__ __forceinline__ void wgmma_n32(float (&d)[16], unsigned long long da,
                                                  unsigned long long db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32." MOERT_MMA_TYPE "." MOERT_MMA_TYPE " {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
      "}, %16, %17, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "l"(da), "l"(db));
}
/* D[64 x 24] += A . B^T: the narrow gate/up tiles of other widths (moert_prefill_narrow_width) */
static __device__ __forceinline__ void wgmma_n24(float (&d)[12], unsigned long long da,
                                                  unsigned long long db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n24k16.f32." MOERT_MMA_TYPE "." MOERT_MMA_TYPE " {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11"
      "}, %12, %13, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11])
      : "l"(da), "l"(db));
}
/* D[64 x 40] += A . B^T: the narrow gate/up tiles of other widths (moert_prefill_narrow_width) */
static __device__ __forceinline__ void wgmma_n40(float (&d)[20], unsigned long long da,
                                                  unsigned long long db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n40k16.f32." MOERT_MMA_TYPE "." MOERT_MMA_TYPE " {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19"
      "}, %20, %21, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19])
      : "l"(da), "l"(db));
}
/* D[64 x 48] += A . B^T: the narrow gate/up tiles of other widths (moert_prefill_narrow_width) */
static __device__ __forceinline__ void wgmma_n48(float (&d)[24], unsigned long long da,
                                                  unsigned long long db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n48k16.f32." MOERT_MMA_TYPE "." MOERT_MMA_TYPE " {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23"
      "}, %24, %25, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23])
      : "l"(da), "l"(db));
}
/* D[64 x 56] += A . B^T: the narrow gate/up tiles of other widths (moert_prefill_narrow_width) */
static __device__ __forceinline__ void wgmma_n56(float (&d)[28], unsigned long long da,
                                                  unsigned long long db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n56k16.f32." MOERT_MMA_TYPE "." MOERT_MMA_TYPE " {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27"
      "}, %28, %29, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27])
      : "l"(da), "l"(db));
}
/* D[64 x 64] += A . B^T, both operands from shared memory (descriptors) */
static __device__ __forceinline__ void wgmma_n64(float (&d)[32], unsigned long long da,
                                                  unsigned long long db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." MOERT_MMA_TYPE "." MOERT_MMA_TYPE " {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
      "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(da), "l"(db));
}
/* D[64 x 128] += A . B^T, both operands from shared memory (descriptors) */
static __device__ __forceinline__ void wgmma_n128(float (&d)[64], unsigned long long da,
                                                  unsigned long long db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." MOERT_MMA_TYPE "." MOERT_MMA_TYPE " {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db));
}
/* D[64 x 192] += A . B^T: the 192-row tiles (gate and up of 96 columns, or 192 down) */
static __device__ __forceinline__ void wgmma_n192(float (&d)[96], unsigned long long da,
                                                  unsigned long long db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n192k16.f32." MOERT_MMA_TYPE "." MOERT_MMA_TYPE " {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
      "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
      "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95"
      "}, %96, %97, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
        "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
      : "l"(da), "l"(db));
}
/* D[64 x 256] += A . B^T, both operands from shared memory (descriptors) */
static __device__ __forceinline__ void wgmma_n256(float (&d)[128], unsigned long long da,
                                                  unsigned long long db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32." MOERT_MMA_TYPE "." MOERT_MMA_TYPE " {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
      "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
      "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"
      "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,"
      "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127"
      "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
        "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
        "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
        "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
        "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
        "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "l"(da), "l"(db));
}

static __device__ __forceinline__ void wgmma_tile(float (&d)[16], unsigned long long da,
                                                  unsigned long long db) {
  wgmma_n32(d, da, db);
}
static __device__ __forceinline__ void wgmma_tile(float (&d)[12], unsigned long long da,
                                                  unsigned long long db) {
  wgmma_n24(d, da, db);
}
static __device__ __forceinline__ void wgmma_tile(float (&d)[20], unsigned long long da,
                                                  unsigned long long db) {
  wgmma_n40(d, da, db);
}
static __device__ __forceinline__ void wgmma_tile(float (&d)[24], unsigned long long da,
                                                  unsigned long long db) {
  wgmma_n48(d, da, db);
}
static __device__ __forceinline__ void wgmma_tile(float (&d)[28], unsigned long long da,
                                                  unsigned long long db) {
  wgmma_n56(d, da, db);
}
static __device__ __forceinline__ void wgmma_tile(float (&d)[32], unsigned long long da,
                                                  unsigned long long db) {
  wgmma_n64(d, da, db);
}
static __device__ __forceinline__ void wgmma_tile(float (&d)[64], unsigned long long da,
                                                  unsigned long long db) {
  wgmma_n128(d, da, db);
}
static __device__ __forceinline__ void wgmma_tile(float (&d)[128], unsigned long long da,
                                                  unsigned long long db) {
  wgmma_n256(d, da, db);
}
static __device__ __forceinline__ void wgmma_tile(float (&d)[96], unsigned long long da,
                                                  unsigned long long db) {
  wgmma_n192(d, da, db);
}

/* v / (1 + e^-v) with the approximate divide (rcp + mul; 0 once the denominator passes 2^126,
 * v < -87, where the exact value is -0 in bf16 anyway): the IEEE divide is a long sequence
 * in the gated epilogue, which all the consumers run while the tensor cores wait */
static __device__ __forceinline__ float silu(float v) { return __fdividef(v, 1.0f + __expf(-v)); }

/* Work item w of ntile row tiles x ncol column tiles: MOERT_ORDER=0 column tile outer (row
 * tile w % ntile, column tile w / ntile), 1 row tile outer (w / ncol, w % ncol: the column
 * tiles of one row tile run together, so its A rows are read from memory once). */
#if MOERT_ORDER
#define ITEM_ROW(w) ((w) / ncol)
#define ITEM_COL(w) ((w) % ncol)
#else
#define ITEM_ROW(w) ((w) % ntile)
#define ITEM_COL(w) ((w) / ntile)
#endif
/* The down GEMM's K split in ks parts (moert_prefill_gemm's ksplit; persistent grids): work
 * item w is part w % ks of item w / ks, its K steps [KS_KB(w), KS_KE(w)); ks = 1: all */
#define KS_KB(w, ks, ktiles) ((w) % (ks) * (ktiles) / (ks))
#define KS_KE(w, ks, ktiles) (((w) % (ks) + 1) * (ktiles) / (ks))

/* the stage ring's barriers, by thread 0, seen by the CTA after the __syncthreads */
static __device__ __forceinline__ void init_barriers(int tid, unsigned long long *s_full,
                                                     unsigned long long *s_empty) {
  if (tid == 0) {
    for (int s = 0; s < STAGES; s++) {
      mbar_init(smem_u32(&s_full[s]), MOERT_A_TMA ? 1 : 128 + 1);
      mbar_init(smem_u32(&s_empty[s]), 4 * NCONS); /* one arrive per consumer warp */
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
}

/* ---- pieces both kernels (moert_prefill_gemm, moert_prefill_layer) share ---- */

/* The ROWS = BM / 16 rows of a gathered A this producer thread copies, r = row0 + tid / 8 +
 * 16 i (8 threads a row, 16 bytes each): their sources (row gather[r], or r when gather is
 * NULL), once per item, so that a K step costs a 64-bit add and a cp.async per row (the
 * producer, not the tensor cores, set the pace when it read the row list from shared memory
 * and multiplied by the stride at every step).  Returns the rows before row_end, a bit each. */
template <int ROWS>
static __device__ __forceinline__ unsigned int a_sources(const act_t *a, long long a_stride,
                                                         const int *gather, int row0, int row_end,
                                                         int tid, const act_t *(&src)[ROWS]) {
  unsigned int row_ok = 0;
#pragma unroll
  for (int i = 0; i < ROWS; i++) {
    const int r = row0 + (tid >> 3) + 16 * i;
    const bool ok = r < row_end;
    const long long g = ok ? (gather ? gather[r] : r) : 0;
    src[i] = a + g * a_stride + (tid & 7) * 8;
    row_ok |= (ok ? 1u : 0u) << i;
  }
  return row_ok;
}

/* One K step of that A into the stage at sa, its completion arriving on full.  8 threads per
 * row, 16 rows per pass: a warp reads 4 whole 128-byte row segments; row r's 16-byte chunk j
 * goes to chunk j ^ (r % 8) of its 128-byte line (the swizzle), and r % 8 = (tid / 8) % 8 for
 * every row of this thread.  K past the end is zero-filled (any: a valid address). */
template <int ROWS>
static __device__ __forceinline__ void copy_a(unsigned int sa, const act_t *const (&src)[ROWS],
                                              unsigned int row_ok, int k0, int K, const act_t *any,
                                              int tid, unsigned int full) {
  const int j = tid & 7;
  const bool k_ok = k0 + j * 8 < K;
  const unsigned int dst = sa + (tid >> 3) * 128 + ((j ^ ((tid >> 3) & 7)) << 4);
#pragma unroll
  for (int i = 0; i < ROWS; i++) {
#if MOERT_A_SKIP
    /* a row past the tile's end is not copied at all: its shared memory keeps whatever an
     * earlier step left there, which reaches only that row's outputs (row i of the product
     * depends on row i of A alone), and those are never stored (decode-log.md v15) */
    if (row_ok >> i & 1u) cp_async16(dst + i * 16 * 128, k_ok ? src[i] + k0 : any, k_ok ? 16 : 0);
#else
    const bool ok = k_ok && (row_ok >> i & 1u);
    cp_async16(dst + i * 16 * 128, ok ? src[i] + k0 : any, ok ? 16 : 0);
#endif
  }
  cp_async_arrive_noinc(full);
}

/* A consumer's wgmma batch of one K step: A (64 rows) at sa, the NA weight tiles B_BYTES apart
 * from sb; returns once the batch before it has completed (its stage can be refilled) */
template <int NA, int R>
static __device__ __forceinline__ void mma_stage(float (&acc)[NA][R], unsigned int sa,
                                                 unsigned int sb) {
  const unsigned long long da = smem_desc(sa);
#pragma unroll
  for (int b = 0; b < NA; b++) fence_regs(acc[b]);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < BK / 16; kk++) {
    /* 16 elements = 32 bytes along K inside the swizzle atom: +2 in the descriptor */
#pragma unroll
    for (int b = 0; b < NA; b++) wgmma_tile(acc[b], da + 2 * kk, smem_desc(sb + b * B_BYTES) + 2 * kk);
  }
  wgmma_commit();
#pragma unroll
  for (int b = 0; b < NA; b++) fence_regs(acc[b]);
  wgmma_wait<1>();
}

/* A consumer's K steps of one item over the stage ring (it: the ring's clock, advanced), the
 * first step's stage already waited for when first_waited; FENCE where A was written by
 * cp.async (the generic proxy: wgmma reads through the async proxy).  Each stage is freed
 * once the batch after it has completed; the item's last stage is left to the caller. */
template <bool FENCE, int NA, int R>
static __device__ __forceinline__ void consume_item(float (&acc)[NA][R], int ktiles, int &it,
                                                    bool first_waited, unsigned int base,
                                                    unsigned int a_off, unsigned int b_off,
                                                    unsigned long long *s_full,
                                                    unsigned long long *s_empty, int lane) {
#pragma unroll
  for (int b = 0; b < NA; b++)
#pragma unroll
    for (int i = 0; i < R; i++) acc[b][i] = 0.0f;
  for (int kt = 0; kt < ktiles; kt++, it++) {
    const int s = it % STAGES;
    if (kt > 0 || !first_waited) mbar_wait(smem_u32(&s_full[s]), (it / STAGES) & 1);
    if (FENCE) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    mma_stage(acc, base + s * STAGE_BYTES + a_off, base + s * STAGE_BYTES + A_BYTES + b_off);
    /* the batch of step it-1 has completed: its stage can be refilled */
    if (kt > 0 && lane == 0) mbar_arrive(smem_u32(&s_empty[(it - 1) % STAGES]));
  }
  wgmma_wait<0>();
#pragma unroll
  for (int b = 0; b < NA; b++) fence_regs(acc[b]);
}

/* MOERT_M_SKIP (where the launch's m_skip is non-zero): consume_item's waits and releases without its wgmmas, for a consumer with no
 * row in the item (its stages are passed on as they fill; the last one left to the caller) */
static __device__ __forceinline__ void pass_item(int ktiles, int &it, unsigned long long *s_full,
                                                 unsigned long long *s_empty, int lane) {
  for (int kt = 0; kt < ktiles; kt++, it++) {
    mbar_wait(smem_u32(&s_full[it % STAGES]), (it / STAGES) & 1);
    if (kt > 0 && lane == 0) mbar_arrive(smem_u32(&s_empty[(it - 1) % STAGES]));
  }
}

/* the wide epilogue's transpose of 32-bit words inside a quad: w[j] of lane q holds columns
 * 8 j + 2 q, +1 of a row; after it w[i] of lane q holds columns 8 q + 2 i, +1 (from lane i) */
static __device__ __forceinline__ void quad_transpose(unsigned int (&w)[4], int q) {
  const bool b1 = q & 2, b0 = q & 1;
  unsigned int s0 = b1 ? w[0] : w[2], s1 = b1 ? w[1] : w[3];
  s0 = __shfl_xor_sync(MOERT_FULL_MASK, s0, 2);
  s1 = __shfl_xor_sync(MOERT_FULL_MASK, s1, 2);
  if (b1) w[0] = s0, w[1] = s1;
  else w[2] = s0, w[3] = s1;
  s0 = b0 ? w[0] : w[1], s1 = b0 ? w[2] : w[3];
  s0 = __shfl_xor_sync(MOERT_FULL_MASK, s0, 1);
  s1 = __shfl_xor_sync(MOERT_FULL_MASK, s1, 1);
  if (b0) w[0] = s0, w[2] = s1;
  else w[1] = s0, w[3] = s1;
}

/* The epilogue of a consumer's W columns from n0 + wn W: G, silu(gate) * up (up UPOFF registers on
 * in acc[NA - 1]) in the activation dtype; else acc[0] in the activation dtype (ACT) or f32.
 * The wgmma accumulator layout, 4 registers per 8 columns: {0,1} row rbase (16 warp + lane /
 * 4 of the 64), {2,3} 8 rows further; columns 8 j + 2 (lane % 4) + {0,1}.  WIDE (2-byte
 * outputs): the 4 lanes of a quad hold 4 bytes each of every 8 columns of a row; a 4 x 4
 * transpose of 32-bit words inside the quad (two xor shuffles) gives each lane 8 whole
 * columns, one 16-byte store, whole 32-byte sectors per pair of lanes.  Needs N a multiple of
 * 8 (the sm_90a path has N % 32 == 0): a block of 8 columns is all in or all out.  Every lane
 * runs the shuffles; the stores are predicated.  Only where W is a multiple of 32: the narrow
 * gate/up widths of 24-56 columns take the 4-byte stores. */
template <bool A> struct out_elem { typedef float type; };   /* an output row's element */
template <> struct out_elem<true> { typedef act_t type; };
template <bool G, bool ACT, bool WIDE, int W, int UPOFF, int NA, int R>
static __device__ __forceinline__ void store_tile(const float (&acc)[NA][R], void *out,
                                                  long long out_stride, int row0, int row_end,
                                                  int rbase, int n0, int wn, int N, int lane) {
  if constexpr (WIDE && (G || ACT) && W % 32 == 0) {
    const int q = lane & 3;
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int r = row0 + rbase + 8 * half;
      act_t *orow = (act_t *)out + (long long)r * out_stride;
#pragma unroll
      for (int m = 0; m < W / 32; m++) {
        unsigned int w[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
          const int i = 4 * (4 * m + j) + 2 * half;
          if constexpr (G)
            w[j] = moert_pack2(silu(acc[0][i]) * acc[NA - 1][UPOFF + i],
                               silu(acc[0][i + 1]) * acc[NA - 1][UPOFF + i + 1]);
          else
            w[j] = moert_pack2(acc[0][i], acc[0][i + 1]);
        }
        quad_transpose(w, q);
        const int col = n0 + wn * W + 8 * (4 * m + q);
        if (r < row_end && col < N) *(uint4 *)(orow + col) = make_uint4(w[0], w[1], w[2], w[3]);
      }
    }
  } else {
    const int cbase = n0 + wn * W + 2 * (lane & 3);
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int r = row0 + rbase + 8 * half;
      if (r >= row_end) continue;
      typename out_elem<G || ACT>::type *orow =
          (typename out_elem<G || ACT>::type *)out + (long long)r * out_stride;
#pragma unroll
      for (int jn = 0; jn < W / 8; jn++) {
        const int col = cbase + 8 * jn;
        if (col >= N) continue;
        const int i = 4 * jn + 2 * half;
        if constexpr (G) {
          const float h0 = silu(acc[0][i]) * acc[NA - 1][UPOFF + i];
          const float h1 = silu(acc[0][i + 1]) * acc[NA - 1][UPOFF + i + 1];
          *(unsigned int *)(orow + col) = moert_pack2(h0, h1);
        } else if constexpr (ACT) {
          *(unsigned int *)(orow + col) = moert_pack2(acc[0][i], acc[0][i + 1]);
        } else {
          *(float2 *)(orow + col) = make_float2(acc[0][i], acc[0][i + 1]);
        }
      }
    }
  }
}

#if MOERT_SETUP_EARLY
/* MOERT_EARLY, the down GEMM: before it waits for the gate/up GEMM (programmatic dependent
 * launch), the producer thread asks for the weight tiles of its first item's first stages:
 * they do not depend on that GEMM, and the row tiles were written before it started (the
 * tiles kernel or the routing completed before any gate/up CTA got past its own wait, and
 * all of them had got there before this grid could launch).  Read through L2 (.cg).
 * Returns the stages issued (0: no item). */
static __device__ int early_weights(const moert_tmap *b_maps, const moert_row_tile *tiles,
                                    const int *tile_count, int ncol, int ktiles, int ks,
                                    unsigned int base, unsigned long long *s_full, int w_evict) {
  const int ntile = __ldcg(tile_count);
#if MOERT_PERSISTENT || MOERT_ORDER
  const int w = (int)blockIdx.x;
  if (w >= ntile * ncol * ks) return 0;
#else
  if ((int)blockIdx.x >= ntile) return 0;
  const int w = (int)blockIdx.x + ntile * (int)blockIdx.y;
#endif
  const int wi = w / ks, kb = KS_KB(w, ks, ktiles), nk = KS_KE(w, ks, ktiles) - kb;
  const moert_row_tile tile = __ldcg(&tiles[ITEM_ROW(wi)]);
  const moert_tmap *map0 = b_maps + tile.x;
  const int n0 = ITEM_COL(wi) * BN, n = nk < STAGES ? nk : STAGES;
  tma_prefetch_map(map0);
  for (int s = 0; s < n; s++) {
    const unsigned int full = smem_u32(&s_full[s]);
    mbar_expect_tx_only(full, B_BYTES);
    tma_load_b(base + s * STAGE_BYTES + A_BYTES, map0, (kb + s) * BK, n0, full, w_evict);
  }
  return n;
}
#endif

#if !MOERT_LAYER
extern "C" __global__ void __launch_bounds__(NTHREADS, 1)
moert_prefill_gemm(const __grid_constant__ moert_tmap a_map, const moert_tmap *b_maps,
                   const unsigned long long *wtab, int up_offset, const act_t *a,
                   long long a_stride, const int *gather, const moert_row_tile *tiles,
                   const int *tile_count, int E, int N, int K, void *out, long long out_stride,
                   int w_evict, int ksplit, int m_skip) {
  (void)wtab;
  (void)up_offset;
  /* ksplit > 1 (a persistent down GEMM built with MOERT_KSPLIT=1): each item's K in ksplit
   * parts, part s of a row stored at columns [s N, (s + 1) N) of out's rows (the host passes
   * the stride of rows of ksplit N), which the combine sums (moert_combine_act2) */
#if MOERT_PERSISTENT && !MOERT_GATED && MOERT_KSPLIT
  const int ks = ksplit > 1 ? ksplit : 1;
#else
  const int ks = 1;
  (void)ksplit;
#endif
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) unsigned long long s_full[STAGES], s_empty[STAGES];
  /* stages at a 1024-byte boundary (the swizzle atom); the host adds 1 KB of slack.  The
   * CTA's set-up comes before the wait only in the down GEMM with MOERT_EARLY (it issues
   * weight tiles before waiting); the other kernels keep it after the early return, as
   * before: moving it there made ptxas spill in the one-CTA-a-tile gate/up kernels. */
#if MOERT_SETUP_EARLY
  const int tid = threadIdx.x, wg = tid >> 7;
  const unsigned int base = (smem_u32(smem_raw) + 1023u) & ~1023u;
  const int ktiles = (K + BK - 1) / BK, ncol = (N + BN - 1) / BN;
  init_barriers(tid, s_full, s_empty);
  const int early =
      tid == 0 ? early_weights(b_maps, tiles, tile_count, ncol, ktiles, ks, base, s_full, w_evict)
               : 0;
#endif
  /* programmatic dependent launch: the kernel before (tiles, or the gate/up GEMM) may still
   * be draining; nothing it wrote is read before this */
  moert_pdl_wait();
#if MOERT_SETUP_EARLY
  const int ntile = *tile_count;
#else
  const int ntile = *tile_count, ncol = (N + BN - 1) / BN;
#endif
#if MOERT_PERSISTENT
  /* work items w = blockIdx.x + i gridDim.x */
  const int total = ntile * ncol * ks;
  if ((int)blockIdx.x >= total) return; /* uniform over the CTA */
  const int w_first = blockIdx.x, w_step = gridDim.x;
#elif MOERT_ORDER
  /* one work item: w = blockIdx.x of a 1-D grid over an upper bound of the tiles */
  const int total = ntile * ncol;
  if ((int)blockIdx.x >= total) return; /* uniform over the CTA */
  const int w_first = blockIdx.x, w_step = total;
#else
  /* one work item: row tile blockIdx.x, column tile blockIdx.y */
  if ((int)blockIdx.x >= ntile) return; /* uniform over the CTA */
  const int total = ntile * (int)(blockIdx.y + 1);
  const int w_first = blockIdx.x + ntile * blockIdx.y, w_step = total;
#endif
#if !MOERT_SETUP_EARLY
  const int tid = threadIdx.x, wg = tid >> 7;
  const unsigned int base = (smem_u32(smem_raw) + 1023u) & ~1023u;
  const int ktiles = (K + BK - 1) / BK;
  init_barriers(tid, s_full, s_empty);
#endif

  if (wg == 0) {
    /* ---------------- producer warpgroup ---------------- */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 " MOERT_STR(PROD_REGS) ";\n");
#if MOERT_EARLY && MOERT_GATED
    moert_pdl_trigger(); /* see the consumers' trigger */
#endif
    if (tid == 0 && MOERT_A_TMA) tma_prefetch_map(&a_map);
    int it = 0; /* k steps issued by this CTA, over all its items: the stage ring's clock */
    for (int w = w_first; w < total; w += w_step) {
      const int wi = w / ks, kb = KS_KB(w, ks, ktiles), ke = KS_KE(w, ks, ktiles);
      const moert_row_tile tile = tiles[ITEM_ROW(wi)];
      const int expert = tile.x, row0 = tile.y, row_end = tile.z;
      const int n0 = ITEM_COL(wi) * BN;
      const moert_tmap *map0 = b_maps + expert;
      const moert_tmap *map1 = b_maps + (size_t)E + expert;
      if (tid == 0) {
        tma_prefetch_map(map0);
        if (NB == 2) tma_prefetch_map(map1);
      }
#if !MOERT_A_TMA
      const act_t *src[BM / 16];
      const unsigned int row_ok = a_sources(a, a_stride, gather, row0, row_end, tid, src);
#else
      (void)row_end;
#endif
      for (int kt = kb; kt < ke; kt++, it++) {
        const int s = it % STAGES;
        if (it >= STAGES) mbar_wait(smem_u32(&s_empty[s]), ((it / STAGES) - 1) & 1);
        const unsigned int full = smem_u32(&s_full[s]);
        const unsigned int sa = base + s * STAGE_BYTES, sb = sa + A_BYTES;
        const int k0 = kt * BK;
        if (tid == 0) {
#if MOERT_SETUP_EARLY
          /* the first item's first stages of weights may be on their way (early_weights) */
          const unsigned int tx = (it < early ? 0u : B_BYTES) + (MOERT_A_TMA ? A_BYTES : 0u);
          if (tx) mbar_expect_tx(full, tx);
          else mbar_arrive(full);
          if (it >= early) tma_load_b(sb, map0, k0, n0, full, w_evict);
#else
          mbar_expect_tx(full, NB * B_BYTES + (MOERT_A_TMA ? A_BYTES : 0));
          tma_load_b(sb, map0, k0, n0, full, w_evict);
          if (NB == 2) tma_load_b(sb + B_BYTES, map1, k0, n0, full, w_evict);
#endif
          if (MOERT_A_TMA) tma_load_2d(sa, &a_map, k0, row0, full);
        }
#if !MOERT_A_TMA
        copy_a(sa, src, row_ok, k0, K, a, tid, full);
#endif
      }
    }
#if !MOERT_A_TMA
    asm volatile("cp.async.wait_all;\n" ::: "memory"); /* leave no copy in flight at exit */
#endif
  } else {
    /* ---------------- consumer warpgroups ---------------- */
    asm volatile("setmaxnreg.inc.sync.aligned.u32 " MOERT_STR(CONS_REGS) ";\n");
#if MOERT_EARLY && MOERT_GATED
    /* MOERT_EARLY, the gate/up GEMM: the down GEMM may be scheduled now, not at the last
     * item, so that its CTAs take the SMs this grid leaves free or gives back and ask for
     * their first weight tiles while this grid finishes (early_weights).  Safe only because
     * no down CTA fits on an SM beside one of these (the host sets MOERT_EARLY only where the
     * two CTAs' shared memory passes the SM's): none can take the registers a setmaxnreg.inc
     * waits for */
    moert_pdl_trigger();
#endif
    const int cw = wg - 1, wm = cw % WG_M, wn = cw / WG_M;
    const int warp = (tid >> 5) & 3, lane = tid & 31;
    int it = 0;
    for (int w = w_first; w < total; w += w_step) {
      const int wi = w / ks, nk = KS_KE(w, ks, ktiles) - KS_KB(w, ks, ktiles);
      const moert_row_tile tile = tiles[ITEM_ROW(wi)];
      const int row0 = tile.y, row_end = tile.z;
      const int n0 = ITEM_COL(wi) * BN;
      /* part w % ks of the row: columns (w % ks) N of out's rows */
      void *const outp = (char *)out + (size_t)(w % ks) * (size_t)N *
                                           (MOERT_GATED || MOERT_OUT_ACT ? sizeof(act_t) : 4);
      /* the CTA's last item: the next kernel may be scheduled (it waits for this grid to
       * finish).  Late, not at the start: its CTAs then never sit on an SM between this
       * CTA's setmaxnreg and its registers' release (the 2026-11-27 try, a trigger at the
       * start, hung) */
      const bool last = !(MOERT_EARLY && MOERT_GATED) && w + w_step >= total;
      /* MOERT_M_SKIP (128-row tiles): a consumer whose 64 rows all lie past the tile's end
       * (an expert's last tile of 64 rows or fewer) issues no wgmma and stores nothing: the
       * other consumer then has the tensor cores to itself */
      if (((MOERT_M_SKIP && BM == 128 && m_skip) || BM == 192) && row0 + wm * 64 >= row_end) {
        pass_item(nk, it, s_full, s_empty, lane);
        if (last) moert_pdl_trigger();
        if (lane == 0) mbar_arrive(smem_u32(&s_empty[(it - 1) % STAGES]));
        continue;
      }
      float acc[NACC][MMA_ACC];
      consume_item<!MOERT_A_TMA>(acc, nk, it, false, base, wm * 64 * 128, wn * WGN * 128, s_full,
                                 s_empty, lane);
      if (last) moert_pdl_trigger();
      /* the item's last stage is free too (the producer may be filling the next item's) */
      if (lane == 0) mbar_arrive(smem_u32(&s_empty[(it - 1) % STAGES]));

      store_tile<MOERT_GATED, MOERT_GATED || MOERT_OUT_ACT, MOERT_EPI_WIDE, WGN, UP_OFF>(
          acc, outp, out_stride, row0, row_end, wm * 64 + warp * 16 + (lane >> 2), n0, wn, N, lane);
    }
  }
}
#endif /* !MOERT_LAYER */

#if MOERT_LAYER
/* MOERT_LAYER=1: moert_prefill_layer, both GEMMs of a layer in one persistent launch, for
 * the decode sizes (64-row tiles; compiled from the gate/up configuration: BN gate/up
 * columns a matrix, 2 BN down columns, so that a stage holds A + 2 BN weight rows in both
 * and the consumers' accumulators are as many).  Work items: the gate/up items (row tile
 * outer) then the down items, taken in that order from a ticket counter by each CTA's
 * producer, so a CTA asks for a down item only once every gate/up item is held by a running
 * CTA.  A down item's weights do not depend on h: its producer issues the weight tiles of
 * its first STAGES steps at once, then waits until the gate/up items of its row tile have
 * all stored their h rows (a counter a row tile, raised with release semantics after the
 * consumers' stores; read with acquire), then copies those rows.  The down weights so
 * stream while the gate/up GEMM finishes, where a second kernel started behind its last
 * item.  Waits never form a cycle: gate/up items wait for nothing but the ring, and every
 * one is held by a CTA that is running.  sync (ints, zero between launches): [0] the ticket
 * counter, set back to zero by its last draw; [8 + 8 t] the gate/up items of row tile t
 * done, [9 + 8 t] its down items past their wait, both set back to zero by the last of
 * those.  No CTA waits at its end. */
#if BM != 64 || !MOERT_GATED || MOERT_A_TMA || MOERT_FUSED_GU || !MOERT_PERSISTENT
#error "MOERT_LAYER: 64-row tiles, compiled from the persistent gate/up configuration (gathered A)"
#endif
#define L_BN_D (2 * BN)   /* down columns of an item */
#define L_WGN_D BN        /* a down consumer's columns */
#define L_ACC_D (BN / 2)  /* its accumulators: as many as the gate/up consumer's NB * ACC */
#define L_B_BYTES (2 * B_BYTES) /* weight bytes a stage, gate + up or down */
#define L_SPIN_NS 30000000000ll /* a wait past this (30 s) is a broken counter: trap, not hang;
                                * long, so that a GPU time-sliced with other work is no false alarm */
#define L_DONE(t) (8 + 8 * (t)) /* row tile t's counters: gate/up items done, down items past
                                 * their wait (a 32-byte sector a tile) */

static __device__ __forceinline__ int ld_acquire_gpu(const int *p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}
static __device__ __forceinline__ void red_release_gpu(int *p, int v) {
  asm volatile("fence.acq_rel.gpu;\nred.relaxed.gpu.global.add.s32 [%0], %1;\n" ::"l"(p), "r"(v)
               : "memory");
}
static __device__ __forceinline__ void bar_named(int id, int n) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
static __device__ __forceinline__ long long global_ns() {
  long long t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}

extern "C" __global__ void __launch_bounds__(NTHREADS, 1)
moert_prefill_layer(const moert_tmap *b_maps, const act_t *x, long long x_stride,
                    const int *gather, const moert_row_tile *tiles, const int *tile_count, int E,
                    int H, int I, act_t *h, long long h_stride, void *out, long long out_stride,
                    int *sync, int w_evict) {
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) unsigned long long s_full[STAGES], s_empty[STAGES];
  __shared__ int s_item[STAGES]; /* the work item whose first step a stage holds (-1: none left) */
  __shared__ int s_ticket;
  int *const ticket = sync;
  moert_pdl_wait(); /* the row tiles (routing or the tiles kernel) */
  const int ntile = *tile_count;
  const int ncol_g = (I + BN - 1) / BN, ncol_d = (H + L_BN_D - 1) / L_BN_D;
  const int n_g = ntile * ncol_g, total = n_g + ntile * ncol_d;
  const int kt_g = (H + BK - 1) / BK, kt_d = (I + BK - 1) / BK;
  const int tid = threadIdx.x, wg = tid >> 7;
  const unsigned int base = (smem_u32(smem_raw) + 1023u) & ~1023u;
  init_barriers(tid, s_full, s_empty);

  if (wg == 0) {
    /* ---------------- producer warpgroup ---------------- */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 48;\n");
    int it = 0; /* the stage ring's clock */
    const int j = tid & 7;
    const unsigned int dst0 = (tid >> 3) * 128 + ((j ^ ((tid >> 3) & 7)) << 4);
    /* the first item is the CTA's own; then tickets: the counter's c-th value is item
     * gridDim.x + c.  Every CTA whose first item exists draws once more than its items from
     * the counter, so the draws number exactly `total`; the last one sets it back to 0 */
    for (int first = 1;; first = 0) {
      int w = (int)blockIdx.x;
      if (!first) {
        if (tid == 0) {
          const int c = atomicAdd(ticket, 1);
          if (c == total - 1) *ticket = 0; /* every draw of this launch is made */
          s_ticket = (int)gridDim.x + c;
        }
        bar_named(1, 128);
        w = s_ticket;
        bar_named(1, 128); /* all have read it before thread 0 draws again */
      }
      if (w >= total) { /* no work left: a stage that says so, 129 arrivals */
        const int s = it % STAGES;
        if (it >= STAGES) mbar_wait(smem_u32(&s_empty[s]), ((it / STAGES) - 1) & 1);
        if (tid == 0) {
          s_item[s] = -1;
          mbar_arrive(smem_u32(&s_full[s]));
        }
        mbar_arrive(smem_u32(&s_full[s]));
        break;
      }
      const bool g = w < n_g;
      const int wl = g ? w : w - n_g, ncol = g ? ncol_g : ncol_d;
      const int rt = wl / ncol;
      const moert_row_tile tile = tiles[rt];
      const int expert = tile.x, row0 = tile.y, row_end = tile.z;
      const int n0 = (wl % ncol) * (g ? BN : L_BN_D), ktiles = g ? kt_g : kt_d, K = g ? H : I;
      const moert_tmap *map0 = b_maps + (g ? 0 : 2 * (size_t)E) + expert;
      const moert_tmap *map1 = b_maps + (size_t)E + expert;
      if (tid == 0) {
        tma_prefetch_map(map0);
        if (g) tma_prefetch_map(map1);
      }
      /* this thread's A rows: x gathered (gate/up) or h in sorted-row order (down) */
      const act_t *src[4];
      unsigned int row_ok = 0;
#pragma unroll
      for (int i = 0; i < 4; i++) {
        const int r = row0 + (tid >> 3) + 16 * i;
        const bool ok = r < row_end;
        const long long gr = ok ? (g ? (long long)gather[r] : (long long)r) : 0;
        src[i] = (g ? x + gr * x_stride : h + gr * h_stride) + j * 8;
        row_ok |= (ok ? 1u : 0u) << i;
      }
      /* a down item: the weights of its first steps now, h once its gate/up items are done */
      const int pre = g ? 0 : (ktiles < STAGES ? ktiles : STAGES);
      for (int kt = 0; kt < pre; kt++) {
        const int q = it + kt, s = q % STAGES;
        if (q >= STAGES) mbar_wait(smem_u32(&s_empty[s]), ((q / STAGES) - 1) & 1);
        if (tid == 0) {
          const unsigned int full = smem_u32(&s_full[s]);
          if (kt == 0) s_item[s] = w;
          mbar_expect_tx_only(full, L_B_BYTES);
          tma_load_w(base + s * STAGE_BYTES + A_BYTES, map0, kt * BK, n0, full, w_evict);
        }
      }
      if (!g) {
        if (tid == 0) {
          const long long t0 = global_ns();
          while (ld_acquire_gpu(&sync[L_DONE(rt)]) < ncol_g) {
            __nanosleep(128);
            if (global_ns() - t0 > L_SPIN_NS) __trap();
          }
        }
        bar_named(1, 128);
      }
      for (int kt = 0; kt < ktiles; kt++, it++) {
        const int s = it % STAGES;
        const unsigned int full = smem_u32(&s_full[s]);
        const unsigned int sa = base + s * STAGE_BYTES, sb = sa + A_BYTES;
        const int k0 = kt * BK;
        if (kt >= pre) {
          if (it >= STAGES) mbar_wait(smem_u32(&s_empty[s]), ((it / STAGES) - 1) & 1);
          if (tid == 0) {
            if (kt == 0) s_item[s] = w;
            mbar_expect_tx(full, L_B_BYTES);
            tma_load_w(sb, map0, k0, n0, full, w_evict);
            if (g) tma_load_w(sb + B_BYTES, map1, k0, n0, full, w_evict);
          }
        } else if (tid == 0) {
          mbar_arrive(full); /* its weights were asked for above */
        }
        /* copy_a's copies, but with this thread's destination offset computed once: through
         * copy_a (and a_sources with a selected source), the producer's 48 registers spilled */
        const bool k_ok = k0 + j * 8 < K;
#pragma unroll
        for (int i = 0; i < 4; i++)
          if (row_ok >> i & 1u) cp_async16(sa + dst0 + i * 16 * 128, k_ok ? src[i] + k0 : x, k_ok ? 16 : 0);
        cp_async_arrive_noinc(full);
      }
      /* the last down item of row tile rt past its wait sets the tile's counters back to 0
       * (here, off the path to its first wgmma) */
      if (!g && tid == 0 && atomicAdd(&sync[L_DONE(rt) + 1], 1) == ncol_d - 1) {
        sync[L_DONE(rt)] = 0;
        sync[L_DONE(rt) + 1] = 0;
      }
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
  } else {
    /* ---------------- consumer warpgroups ---------------- */
    asm volatile("setmaxnreg.inc.sync.aligned.u32 224;\n");
    const int cw = wg - 1, warp = (tid >> 5) & 3, lane = tid & 31;
    const int rbase = warp * 16 + (lane >> 2);
    int it = 0;
    for (;;) {
      const int s0 = it % STAGES;
      mbar_wait(smem_u32(&s_full[s0]), (it / STAGES) & 1);
      const int w = *(volatile int *)&s_item[s0];
      if (w < 0) break;
      const bool g = w < n_g;
      const int wl = g ? w : w - n_g, ncol = g ? ncol_g : ncol_d;
      const int rt = wl / ncol;
      const moert_row_tile tile = tiles[rt];
      const int row0 = tile.y, row_end = tile.z;
      if (g) {
        const int n0 = (wl % ncol) * BN;
        float acc[2][ACC];
        consume_item<true>(acc, kt_g, it, true, base, 0, cw * WGN * 128, s_full, s_empty, lane);
        if (lane == 0) mbar_arrive(smem_u32(&s_empty[(it - 1) % STAGES]));
        store_tile<true, true, MOERT_EPI_WIDE, WGN, 0>(acc, h, h_stride, row0, row_end, rbase, n0,
                                                      cw, I, lane);
        /* both consumers' rows stored: one more gate/up item of row tile rt done */
        bar_named(2, 256);
        if (tid == 128) red_release_gpu(&sync[L_DONE(rt)], 1);
      } else {
        const int n0 = (wl % ncol) * L_BN_D;
        float acc[1][L_ACC_D];
        consume_item<true>(acc, kt_d, it, true, base, 0, cw * L_WGN_D * 128, s_full, s_empty, lane);
        if (lane == 0) mbar_arrive(smem_u32(&s_empty[(it - 1) % STAGES]));
        store_tile<false, MOERT_OUT_ACT, MOERT_EPI_WIDE, L_WGN_D, 0>(
            acc, out, out_stride, row0, row_end, rbase, n0, cw, H, lane);
      }
    }
    moert_pdl_trigger(); /* the combine may be scheduled; it waits for this grid to finish */
  }
}
#endif /* MOERT_LAYER */
