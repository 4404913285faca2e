/* test_gpu_prefill.c — the prefill GEMMs (runtime/cuda/prefill.c, ptx/prefill_sm90.cu on
 * sm_90a, ptx/prefill_sm80.cu elsewhere) run directly through the private hooks, on random
 * data over a random plan, against a float64 CPU reference:
 *  - Qwen3-30B-A3B dims (E 128, k 8, H 2048, I 768), T in {256, 1024, 8192}, bf16 (and f16 at
 *    T = 256 and 1024), both tile heights, uneven expert loads (a hot expert, idle experts);
 *  - weights behind per-expert pointers in a shuffled order (one tensor map per expert);
 *  - h and out poisoned first: every row must be written (finite), and a sample of 64 rows
 *    (row tile edges, and random rows of 6 random experts) must match the reference: h = silu(x Wg^T) * (x Wu^T) (relative L2 per row < 1e-2,
 *    the bf16 rounding of h), out = h_gpu Wd^T (relative L2 per row < 2e-3: f32 sums of
 *    exactly the GPU's h);
 *  - on sm_90a also the down GEMM with h read by cp.async instead of TMA.
 * MOERT_PREFILL_TIMING=1 also times the three launches (tiles, gate/up, down) and prints
 * TFLOP/s (6 T k H I flops); MOERT_PREFILL_T=n runs only T = n.
 * With no GPU it prints why and exits 0 (skip).  Links moert_static for the private hooks. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GPU_TEST_SEED 0x5eed5eed12345678ull
#include "support/gpu_test.h"
#include "cuda/jit.h"
#include "cuda/prefill.h"
#include "internal.h"

static const moert_nvrtc *nv;
static int cc_major, cc_minor;
static moert_jit_cache jit;

static uint16_t to_act(moert_dtype dt, float f) {
  return dt == MOERT_DTYPE_BF16 ? moert_f32_to_bf16(f) : moert_f32_to_f16(f);
}

/* big arrays: windows of a pool of random values at random offsets (a window is 64 K
 * values, less than one expert matrix, so no two experts or tokens share their data); the
 * pool is 4 M values, so a fill costs 4 M conversions, not one per element */
#define POOL (1u << 22)
#define WINDOW (1u << 16)
static void fill(moert_dtype dt, uint16_t *p, size_t n, float a) {
  uint16_t *pool = malloc((size_t)POOL * 2);
  ck_assert_ptr_nonnull(pool);
  for (size_t i = 0; i < POOL; i++) pool[i] = to_act(dt, uniform(a));
  copy_windows(p, n, pool, POOL, WINDOW);
  free(pool);
}

/* n values of dtype dt as floats (exact: bf16 and f16 are floats) */
static void to_float(moert_dtype dt, const uint16_t *p, size_t n, float *out) {
  for (size_t i = 0; i < n; i++) out[i] = moert_load_f32(p, dt, i);
}

static int cmp_by_expert(const void *a, const void *b, void *experts) {
  const int32_t *ex = experts;
  const size_t ra = *(const size_t *)a, rb = *(const size_t *)b;
  if (ex[ra] != ex[rb]) return ex[ra] < ex[rb] ? -1 : 1;
  return ra < rb ? -1 : ra > rb;
}

typedef struct qcase {
  uint32_t T;
  moert_dtype dt;
  int bm;       /* 0: moert_prefill_pick_bm; 192 (sm_90a only) the tall tiles */
  int down_cp;  /* sm_90a: h the other way in the down GEMM (cp.async at 128-row tiles, TMA
                 * at 64) */
  int epi;      /* sm_90a: 0 the defaults (down rows in the activation dtype, 16-byte
                 * stores), 1 f32 down rows, 2 4-byte stores of the 2-byte outputs, 3 the
                 * narrow tiles of the decode sizes (moert_prefill_narrow, 64-row tiles), 4 the
                 * gathered A's padding rows copied as zeros (no MOERT_A_SKIP), 5 the
                 * narrow tiles' layer kernel (both GEMMs in one launch), 6 the layer kernel
                 * of the default 64-row tiles, 7 the layer kernels with 16-byte stores (the
                 * narrow tiles' at T=1, the default tiles' elsewhere), 8 the narrow tiles
                 * with the down GEMM's K in two parts (rows of two parts, summed here as
                 * moert_combine_act sums them), 9 64-row gate/up tiles of 256 columns loaded
                 * as two 128-row boxes (MOERT_PREFILL_GU_BN64=256, an experiment), 10-13
                 * the narrow tiles at the other gate/up widths moert_prefill_narrow_pick
                 * takes: 48 columns (m64n24 wgmmas), 96 loaded as two 48-row boxes (the
                 * maps of a layer whose widths are 48 and 96), 112 and 80 (I = 768 is no
                 * multiple of those: a partial column tile), 14-15 the fused gate/up wgmma
                 * (128-row tiles) in the grids of the larger hidden sizes (moert_prefill_fit):
                 * persistent with the column tile outer (Mixtral-8x7B), one CTA a tile with
                 * the row tile outer (Qwen3-235B-A22B, DeepSeek-V3), 16 the 128-row down
                 * GEMM's K in two parts in the persistent column-outer grid (Mixtral-8x7B
                 * T=512: ksplit128_due); with bm 192 the same numbers apply to the 192-row
                 * tiles */
} qcase;
/* the narrow gate/up width and TMA box rows of epi 10-13 */
static const int narrow_widths[4][2] = {{48, 0}, {96, 48}, {112, 0}, {80, 0}};

static const qcase cases[] = {
    {1024, MOERT_DTYPE_BF16, 0, 0, 0},  {1024, MOERT_DTYPE_BF16, 128, 0, 0},
    {1024, MOERT_DTYPE_BF16, 64, 1, 0}, {1024, MOERT_DTYPE_F16, 0, 0, 0},
    {8192, MOERT_DTYPE_BF16, 0, 0, 0},  {8192, MOERT_DTYPE_BF16, 64, 0, 0},
    /* few rows per expert: mostly partial tiles (and quick under compute-sanitizer) */
    {256, MOERT_DTYPE_BF16, 64, 0, 0},  {256, MOERT_DTYPE_F16, 128, 1, 0},
    /* sm_90a's other epilogues: the f32 rows of the decode path's layout, 4-byte stores (the
     * other kernels run these as the cases above) */
    {1024, MOERT_DTYPE_BF16, 128, 0, 1}, {256, MOERT_DTYPE_F16, 64, 1, 1},
    {1024, MOERT_DTYPE_BF16, 128, 0, 2}, {256, MOERT_DTYPE_F16, 64, 0, 2},
    /* the narrow tiles (on other GPUs these run the default kernels again) */
    {256, MOERT_DTYPE_BF16, 64, 0, 3},   {1024, MOERT_DTYPE_F16, 64, 1, 3},
    /* the padding rows zero-filled, with h by cp.async too */
    {256, MOERT_DTYPE_BF16, 64, 0, 4},   {1024, MOERT_DTYPE_F16, 128, 1, 4},
    /* both GEMMs in one launch: few and many row tiles, both tile widths */
    {1, MOERT_DTYPE_BF16, 64, 0, 5},     {256, MOERT_DTYPE_BF16, 64, 0, 5},
    {1024, MOERT_DTYPE_F16, 64, 0, 5},   {32, MOERT_DTYPE_BF16, 64, 0, 6},
    {1024, MOERT_DTYPE_BF16, 64, 0, 6},
    {1, MOERT_DTYPE_BF16, 64, 0, 7},     {256, MOERT_DTYPE_F16, 64, 0, 7},
    /* the down GEMM's K in two parts (the narrow tiles of Mixtral-8x7B's T=1) */
    {1, MOERT_DTYPE_BF16, 64, 0, 8},     {256, MOERT_DTYPE_F16, 64, 0, 8},
    /* 64-row gate/up tiles of 256 columns (an experiment's kernels) */
    {256, MOERT_DTYPE_BF16, 64, 0, 9},   {1024, MOERT_DTYPE_F16, 64, 0, 9},
    /* the narrow tiles at the gate/up widths that fill the SMs (decode sizes) */
    {1, MOERT_DTYPE_BF16, 64, 0, 10},    {256, MOERT_DTYPE_F16, 64, 0, 10},
    {4, MOERT_DTYPE_BF16, 64, 0, 11},    {256, MOERT_DTYPE_BF16, 64, 0, 11},
    {1, MOERT_DTYPE_F16, 64, 0, 12},     {32, MOERT_DTYPE_BF16, 64, 0, 12},
    {2, MOERT_DTYPE_BF16, 64, 0, 13},    {256, MOERT_DTYPE_F16, 64, 0, 13},
    /* the fused gate/up in the grids of the larger hidden sizes */
    {1024, MOERT_DTYPE_BF16, 128, 0, 14}, {8192, MOERT_DTYPE_F16, 128, 0, 14},
    {1024, MOERT_DTYPE_F16, 128, 0, 15},  {8192, MOERT_DTYPE_BF16, 128, 0, 15},
    /* the 128-row down GEMM's K in two parts, the column tile outer (MOERT_PREFILL_KSPLIT128) */
    {1024, MOERT_DTYPE_BF16, 128, 0, 16}, {256, MOERT_DTYPE_F16, 128, 0, 16},
    /* 192-row tiles (sm_90a; MOERT_PREFILL_TALL): experts of 16, 64 (the hot one two or three
     * tiles), 192, 256 rows; in the grids of the larger hidden sizes (epi 14, 15) */
    {256, MOERT_DTYPE_BF16, 192, 0, 0},   {1024, MOERT_DTYPE_F16, 192, 0, 0},
    {3072, MOERT_DTYPE_BF16, 192, 0, 0},  {4096, MOERT_DTYPE_F16, 192, 0, 0},
    {2048, MOERT_DTYPE_BF16, 192, 0, 14}, {2048, MOERT_DTYPE_F16, 192, 0, 15},
};

enum { E = 128, K_TOP = 8, H = 2048, I = 768 };

START_TEST(test_prefill_vs_cpu) {
  const qcase *c = &cases[_i];
  const char *only = getenv("MOERT_PREFILL_T");
  if (only && *only && (uint32_t)atoi(only) != c->T) return;
  const char *only_bm = getenv("MOERT_PREFILL_CASE_BM"); /* the cases of one tile height */
  if (only_bm && *only_bm && atoi(only_bm) != c->bm) return;
  const uint32_t T = c->T;
  if (c->bm == 192 && !(cc_major == 9 && cc_minor == 0)) return; /* sm_90a's tiles only */
  const size_t pairs = (size_t)T * K_TOP, mat = (size_t)I * H;
  const moert_dtype dt = c->dt;

  /* routing: k distinct experts per token; expert 3 is hot (a third of the tokens), experts
   * 100..109 idle */
  int32_t *ids = malloc(pairs * 4), *offsets = calloc(E + 1, 4), *packed = malloc(pairs * 4);
  int32_t *expert_of = malloc(pairs * 4), *fillc = calloc(E, 4);
  ck_assert(ids && offsets && packed && expert_of && fillc);
  for (uint32_t t = 0; t < T; t++)
    for (int j = 0; j < K_TOP; j++) {
      int e;
      bool dup;
      do {
        e = (j == 0 && rnd() % 3 == 0) ? 3 : (int)(rnd() % E);
        dup = e >= 100 && e < 110;
        for (int q = 0; q < j; q++) dup = dup || ids[(size_t)t * K_TOP + q] == e;
      } while (dup);
      ids[(size_t)t * K_TOP + j] = e;
      offsets[e + 1]++;
    }
  for (int e = 0; e < E; e++) offsets[e + 1] += offsets[e];
  for (size_t p = 0; p < pairs; p++) { /* stable counting sort, like the plan */
    const int e = ids[p];
    const size_t r = (size_t)offsets[e] + (size_t)fillc[e]++;
    packed[r] = (int32_t)(p / K_TOP);
    expert_of[r] = e;
  }
  ck_assert_int_eq(offsets[E], (int32_t)pairs);

  /* data: x [T, H]; weights [E][I, H] gate, up and [E][H, I] down, expert e stored at slot
   * perm[e] so the kernels must follow the pointers */
  uint16_t *x = malloc((size_t)T * H * 2), *wg = malloc(E * mat * 2), *wu = malloc(E * mat * 2),
           *wd = malloc(E * mat * 2);
  ck_assert(x && wg && wu && wd);
  fill(dt, x, (size_t)T * H, 1.0f);
  fill(dt, wg, E * mat, 1.0f / sqrtf((float)H));
  fill(dt, wu, E * mat, 1.0f / sqrtf((float)H));
  fill(dt, wd, E * mat, 1.0f / sqrtf((float)I));
  int perm[E];
  for (int e = 0; e < E; e++) perm[e] = e;
  for (int e = E - 1; e > 0; e--) {
    const int j = (int)(rnd() % (uint64_t)(e + 1)), t = perm[e];
    perm[e] = perm[j], perm[j] = t;
  }
  CUdeviceptr dx, dg, du, dd, doff, dpacked, dtab, dmaps = 0, dtiles, dh, dout;
  const int bm = c->bm ? c->bm : moert_prefill_pick_bm(offsets, E, pairs);
  CU(cu->cuMemAlloc(&dx, (size_t)T * H * 2));
  CU(cu->cuMemAlloc(&dg, E * mat * 2));
  CU(cu->cuMemAlloc(&du, E * mat * 2));
  CU(cu->cuMemAlloc(&dd, E * mat * 2));
  CU(cu->cuMemAlloc(&doff, (E + 1) * 4));
  CU(cu->cuMemAlloc(&dpacked, pairs * 4));
  CU(cu->cuMemAlloc(&dtab, 3 * E * 8));
  CU(cu->cuMemAlloc(&dtiles, moert_prefill_tiles_bytes(pairs, E, bm)));
  CU(cu->cuMemAlloc(&dh, pairs * I * 2));
  CU(cu->cuMemAlloc(&dout, pairs * H * 4));
  CU(cu->cuMemcpyHtoD(dx, x, (size_t)T * H * 2));
  const void *pg[E], *pu[E], *pd[E];
  unsigned long long tab[3 * E];
  for (int e = 0; e < E; e++) {
    const size_t off = (size_t)perm[e] * mat;
    CU(cu->cuMemcpyHtoD(dg + off * 2, wg + (size_t)e * mat, mat * 2));
    CU(cu->cuMemcpyHtoD(du + off * 2, wu + (size_t)e * mat, mat * 2));
    CU(cu->cuMemcpyHtoD(dd + off * 2, wd + (size_t)e * mat, mat * 2));
    pg[e] = (const void *)(uintptr_t)(dg + off * 2);
    pu[e] = (const void *)(uintptr_t)(du + off * 2);
    pd[e] = (const void *)(uintptr_t)(dd + off * 2);
    tab[e] = (uintptr_t)pg[e], tab[E + e] = (uintptr_t)pu[e], tab[2 * E + e] = (uintptr_t)pd[e];
  }
  CU(cu->cuMemcpyHtoD(doff, offsets, (E + 1) * 4));
  CU(cu->cuMemcpyHtoD(dpacked, packed, pairs * 4));
  CU(cu->cuMemcpyHtoD(dtab, tab, sizeof tab));

  moert_prefill_config gu, dn;
  OK(moert_prefill_configs(cc_major, cc_minor, dt, bm, &gu, &dn));
  if (c->down_cp && dn.sm == 90) dn.a_tma = !dn.a_tma;
  if (dn.sm == 90 && c->epi == 1) dn.out_act = 0;
  if (dn.sm == 90 && c->epi == 2) gu.epi_wide = dn.epi_wide = 0;
  if (dn.sm == 90 && (c->epi == 3 || c->epi == 5 || c->epi == 8 || (c->epi == 7 && T == 1) ||
                      (c->epi >= 10 && c->epi <= 13)))
    moert_prefill_narrow(&gu, &dn);
  if (dn.sm == 90 && c->epi >= 10 && c->epi <= 13) {
    moert_prefill_narrow_width(&gu, narrow_widths[c->epi - 10][0]);
    ck_assert_int_eq(gu.bn, narrow_widths[c->epi - 10][0]);
    gu.box_rows = narrow_widths[c->epi - 10][1];
  }
  gu.layer = dn.sm != 90 ? 0 : c->epi == 5 || c->epi == 6 ? 1 : c->epi == 7 ? 2 : 0;
  if (dn.sm == 90 && c->epi == 4) gu.a_skip = dn.a_skip = 0;
  if (dn.sm == 90 && c->epi == 9) gu.bn = 256, gu.box_rows = 128, gu.stages = 3, gu.layer = 0;
  if (dn.sm == 90 && c->epi == 16) { /* the 128-row down GEMM's K split (an experiment's) */
    dn.persistent = 1;
    dn.order = 0; /* Mixtral-8x7B's grid */
    dn.ksplit = 1;
  }
  if (dn.sm == 90 && (c->epi == 14 || c->epi == 15)) {
    ck_assert_int_eq(gu.fused_gu, 1);
    gu.persistent = dn.persistent = c->epi == 14;
    gu.order = dn.order = c->epi == 15;
  }
  moert_prefill_kernels k;
  OK(moert_prefill_load(&jit, cu, &gu, &dn, &k));
  if (gu.sm == 90) {
    void *maps = aligned_alloc(64, 3 * E * MOERT_TMAP_BYTES);
    ck_assert_ptr_nonnull(maps);
    OK(moert_prefill_encode_weights(k.encode, dt, &gu, &dn, E, H, I, pg, pu, pd, maps));
    CU(cu->cuMemAlloc(&dmaps, 3 * E * MOERT_TMAP_BYTES));
    CU(cu->cuMemcpyHtoD(dmaps, maps, 3 * E * MOERT_TMAP_BYTES));
    free(maps);
  }
  printf("prefill T=%u %s: sm%d kernel, %d-row tiles, gate/up %dx%d, down %dx%d (A by %s), "
         "%d stages, down rows in %s, %d-byte stores, padding rows %s%s\n", T, moert_dtype_name(dt),
         gu.sm, bm, gu.bm, gu.bn, dn.bm, dn.bn, dn.sm == 90 && dn.a_tma ? "TMA" : "cp.async",
         gu.stages, dn.out_act ? moert_dtype_name(dt) : "f32", gu.epi_wide ? 16 : 4,
         gu.a_skip ? "not copied" : "zero-filled",
         !k.fn_layer ? "" : k.gate_up.layer == 2 ? ", one launch (16-byte stores)" : ", one launch");

  /* parts of each down row: the K split where asked (persistent sm90 down GEMMs; the rows
   * in the 2-byte dtype, two fit in dout's f32 room) */
  const size_t parts =
      (c->epi == 8 || c->epi == 16) && dn.sm == 90 && dn.persistent && dn.ksplit && dn.out_act
          ? 2
          : 1;
  if (parts > 1) printf("  the down GEMM's K in %zu parts\n", parts);
  moert_prefill_args a = {.num_experts = E, .hidden = H, .intermediate = I, .pairs = pairs,
                          .offsets = doff, .gather = dpacked, .x = dx, .x_stride = H,
                          .wtab = dtab, .maps = dmaps, .tiles = dtiles, .h = dh,
                          .h_stride = I, .out = dout, .out_stride = H, .ksplit = (int)parts};
  ck_assert_int_eq(moert_prefill_down_parts(&k, &a), (int)parts); /* the launch splits so */
  CUdeviceptr dsync = 0;
  const size_t sync_bytes = moert_prefill_layer_sync_bytes(pairs, E);
  if (gu.layer && gu.sm == 90) { /* the layer kernel: its counters, zero */
    ck_assert_ptr_nonnull(k.fn_layer);
    int32_t *zeros = calloc(1, sync_bytes);
    ck_assert_ptr_nonnull(zeros);
    CU(cu->cuMemAlloc(&dsync, sync_bytes));
    CU(cu->cuMemcpyHtoD(dsync, zeros, sync_bytes));
    free(zeros);
    a.layer_sync = dsync;
  }
  CU(cu->cuMemsetD32Async(dh, 0xffffffffu, pairs * I / 2, NULL)); /* NaN in bf16 and f16 */
  CU(cu->cuMemsetD32Async(dout, 0xffffffffu, pairs * H, NULL));
  OK(moert_prefill_launch(cu, &k, &a, NULL));
  CU(cu->cuStreamSynchronize(NULL));
  if (dsync) {
    /* the counters are back at zero, and a second launch on new poison gives the same bits */
    int32_t *sy = malloc(sync_bytes);
    const size_t ob = pairs * H * (dn.out_act ? 2 : 4);
    unsigned char *first = malloc(ob), *second = malloc(ob);
    ck_assert(sy && first && second);
    CU(cu->cuMemcpyDtoH(sy, dsync, sync_bytes));
    for (size_t i = 0; i < sync_bytes / 4; i++)
      ck_assert_msg(sy[i] == 0, "layer counter %zu is %d after the launch", i, sy[i]);
    CU(cu->cuMemcpyDtoH(first, dout, ob));
    CU(cu->cuMemsetD32Async(dh, 0xffffffffu, pairs * I / 2, NULL));
    CU(cu->cuMemsetD32Async(dout, 0xffffffffu, pairs * H, NULL));
    OK(moert_prefill_launch(cu, &k, &a, NULL));
    CU(cu->cuStreamSynchronize(NULL));
    CU(cu->cuMemcpyDtoH(second, dout, ob));
    ck_assert_msg(memcmp(first, second, ob) == 0, "the layer kernel's second launch differs");
    CU(cu->cuMemcpyDtoH(sy, dsync, sync_bytes));
    for (size_t i = 0; i < sync_bytes / 4; i++)
      ck_assert_msg(sy[i] == 0, "layer counter %zu is %d after the second launch", i, sy[i]);
    free(sy), free(first), free(second);
  }
  uint16_t *h = malloc(pairs * I * 2);
  float *out = malloc(pairs * H * 4);
  ck_assert(h && out);
  CU(cu->cuMemcpyDtoH(h, dh, pairs * I * 2));
  if (dn.out_act) { /* the rows in the activation dtype: checked for poison, then widened */
    uint16_t *o16 = malloc(pairs * H * 2 * parts);
    float *of = malloc(pairs * H * 4 * parts);
    ck_assert(o16 && of);
    CU(cu->cuMemcpyDtoH(o16, dout, pairs * H * 2 * parts));
    const uint16_t expo = dt == MOERT_DTYPE_BF16 ? 0x7f80u : 0x7c00u;
    for (size_t i = 0; i < pairs * H * parts; i++)
      if ((o16[i] & expo) == expo)
        ck_abort_msg("out[%zu] part %zu [%zu] not written (expert %d)", i / (H * parts),
                     i / H % parts, i % H, expert_of[i / (H * parts)]);
    to_float(dt, o16, pairs * H * parts, of);
    for (size_t r = 0; r < pairs; r++) /* the parts added in order, as the combine does */
      for (size_t n = 0; n < H; n++) {
        float v = of[r * parts * H + n];
        for (size_t q = 1; q < parts; q++) v += of[(r * parts + q) * H + n];
        out[r * H + n] = v;
      }
    free(o16), free(of);
  } else {
    CU(cu->cuMemcpyDtoH(out, dout, pairs * H * 4));
  }
  int32_t ntiles = 0;
  CU(cu->cuMemcpyDtoH(&ntiles, dtiles, 4));
  int64_t want_tiles = 0;
  for (int e = 0; e < E; e++) want_tiles += (offsets[e + 1] - offsets[e] + bm - 1) / bm;
  ck_assert_int_eq(ntiles, want_tiles);

  /* every row written: no NaN or infinity left (the poison is all ones), by the bits */
  {
    const uint16_t expo = dt == MOERT_DTYPE_BF16 ? 0x7f80u : 0x7c00u;
    for (size_t i = 0; i < pairs * I; i++)
      if ((h[i] & expo) == expo)
        ck_abort_msg("h[%zu][%zu] not written (expert %d)", i / I, i % I, expert_of[i / I]);
    const uint32_t *ob = (const uint32_t *)out;
    for (size_t i = 0; i < pairs * H; i++)
      if ((ob[i] & 0x7f800000u) == 0x7f800000u)
        ck_abort_msg("out[%zu][%zu] not written (expert %d)", i / H, i % H, expert_of[i / H]);
  }

  /* a sample of rows: the first and last of the hot expert and of a few others (so the
   * first and last row tiles of experts), the rest random rows of 6 random experts; checked
   * expert by expert, each sampled expert's weights converted to float once */
  size_t sample[64];
  int ns = 0;
  if (offsets[4] > offsets[3]) /* (at T=1 the hot expert may have no row) */
    sample[ns++] = (size_t)offsets[3], sample[ns++] = (size_t)offsets[4] - 1;
  sample[ns++] = 0, sample[ns++] = pairs - 1;
  for (int e = 0; e < 8; e++)
    if (offsets[e + 1] > offsets[e]) sample[ns++] = (size_t)offsets[e + 1] - 1;
  int pick[6];
  for (int j = 0; j < 6; j++) {
    do pick[j] = (int)(rnd() % E);
    while (offsets[pick[j] + 1] == offsets[pick[j]]);
  }
  while (ns < 64) {
    const int e = pick[rnd() % 6];
    sample[ns++] = (size_t)offsets[e] + rnd() % (uint64_t)(offsets[e + 1] - offsets[e]);
  }
  qsort_r(sample, (size_t)ns, sizeof sample[0], cmp_by_expert, expert_of);
  double worst_h = 0, worst_o = 0;
  double *g = malloc(I * sizeof *g);
  float *fg = malloc(mat * 4), *fu = malloc(mat * 4), *fd = malloc(mat * 4), *fx = malloc(H * 4);
  float *fh = malloc(I * 4);
  ck_assert(g && fg && fu && fd && fx && fh);
  int cur = -1, experts_checked = 0;
  for (int s = 0; s < ns; s++) {
    const size_t r = sample[s];
    const int e = expert_of[r];
    if (e != cur) {
      to_float(dt, wg + (size_t)e * mat, mat, fg);
      to_float(dt, wu + (size_t)e * mat, mat, fu);
      to_float(dt, wd + (size_t)e * mat, mat, fd);
      cur = e, experts_checked++;
    }
    to_float(dt, x + (size_t)packed[r] * H, H, fx);
    to_float(dt, h + r * I, I, fh);
    double num = 0, den = 0;
    for (int n = 0; n < I; n++) {
      const float *gr = fg + (size_t)n * H, *ur = fu + (size_t)n * H;
      double sg = 0, su = 0;
      for (int q = 0; q < H; q++) {
        sg += (double)fx[q] * gr[q];
        su += (double)fx[q] * ur[q];
      }
      g[n] = sg / (1.0 + exp(-sg)) * su;
      const double d = fh[n] - g[n];
      num += d * d, den += g[n] * g[n];
    }
    const double eh = sqrt(num / (den > 0 ? den : 1));
    ck_assert_msg(eh < 1e-2, "T=%u row %zu (expert %d, token %d): h relative L2 error %.3g", T,
                  r, e, packed[r], eh);
    num = den = 0;
    for (int n = 0; n < H; n++) {
      const float *dr = fd + (size_t)n * I;
      double o = 0;
      for (int q = 0; q < I; q++) o += (double)fh[q] * dr[q];
      const double d = out[r * H + n] - o;
      num += d * d, den += o * o;
    }
    const double eo = sqrt(num / (den > 0 ? den : 1));
    /* rows rounded to bf16 add about 2^-9 / sqrt(3) = 1.1e-3 of relative L2 error */
    const double tol_o = dn.out_act && dt == MOERT_DTYPE_BF16 ? 4e-3 : 2e-3;
    ck_assert_msg(eo < tol_o, "T=%u row %zu (expert %d): out relative L2 error %.3g", T, r, e,
                  eo);
    if (eh > worst_h) worst_h = eh;
    if (eo > worst_o) worst_o = eo;
  }
  printf("  %d rows of %d experts checked: worst relative L2 error h %.2e, out %.2e; %d "
         "tiles\n", ns, experts_checked, worst_h, worst_o, ntiles);
  free(g), free(fg), free(fu), free(fd), free(fx), free(fh);

  const char *timing = getenv("MOERT_PREFILL_TIMING");
  if (timing && *timing && strcmp(timing, "0") != 0) {
    for (int w = 0; w < 3; w++) OK(moert_prefill_launch(cu, &k, &a, NULL));
    CU(cu->cuStreamSynchronize(NULL));
    const int iters = T >= 8192 ? 20 : 50;
    const double t0 = now_ms();
    for (int it = 0; it < iters; it++) OK(moert_prefill_launch(cu, &k, &a, NULL));
    CU(cu->cuStreamSynchronize(NULL));
    const double ms = (now_ms() - t0) / iters;
    const double flops = 6.0 * T * K_TOP * (double)H * I;
    printf("  timing: T=%u %s %d-row tiles: %.3f ms per layer (tiles + gate/up + down), "
           "%.1f TFLOP/s (%.1f GFLOP)\n", T, moert_dtype_name(dt), bm, ms, flops / ms / 1e9,
           flops / 1e9);
  }

  CUdeviceptr all[] = {dx, dg, du, dd, doff, dpacked, dtab, dmaps, dtiles, dh, dout, dsync};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (all[i]) cu->cuMemFree(all[i]);
  free(ids), free(offsets), free(packed), free(expert_of), free(fillc);
  free(x), free(wg), free(wu), free(wd), free(h), free(out);
}
END_TEST

int main(void) {
  char why[512] = "";
  if (moert_cuda_driver_get(&cu, why, sizeof why) != MOERT_OK) {
    printf("test_gpu_prefill: skipped, no GPU: %s\n", why);
    return 0;
  }
  CUdevice dev;
  if (cu->cuDeviceGet(&dev, 0) != 0 || cu->cuDevicePrimaryCtxRetain(&ctx, dev) != 0 ||
      cu->cuCtxSetCurrent(ctx) != 0) {
    printf("test_gpu_prefill: skipped, CUDA device 0 cannot be used\n");
    return 0;
  }
  cu->cuDeviceGetAttribute(&cc_major, MOERT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
  cu->cuDeviceGetAttribute(&cc_minor, MOERT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
  if (cc_major < 8) {
    printf("test_gpu_prefill: skipped, the GPU is sm_%d%d (sm_80 or newer needed)\n", cc_major,
           cc_minor);
    return 0;
  }
  if (moert_nvrtc_get(&nv, why, sizeof why) != MOERT_OK) {
    printf("test_gpu_prefill: FAILED, a GPU but no NVRTC: %s\n", why);
    return 1;
  }
  char arch[32];
  if (moert_jit_pick_arch(nv, cc_major, cc_minor, arch, sizeof arch) != MOERT_OK ||
      moert_jit_cache_init(&jit, cu, nv, ctx, arch, getenv("MOERT_CACHE_DIR")) != MOERT_OK) {
    printf("test_gpu_prefill: FAILED to set up the JIT: %s\n", moert_last_error());
    return 1;
  }
  char name[128] = "";
  cu->cuDeviceGetName(name, (int)sizeof name, dev);
  printf("test_gpu_prefill: %s, sm_%d%d, %s, NVRTC %d.%d\n", name, cc_major, cc_minor, arch,
         nv->major, nv->minor);
  Suite *s = suite_create("gpu_prefill");
  TCase *tc = tcase_create("prefill");
  tcase_set_timeout(tc, 900);
  tcase_add_loop_test(tc, test_prefill_vs_cpu, 0, (int)(sizeof cases / sizeof cases[0]));
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_set_fork_status(sr, CK_NOFORK); /* CUDA does not survive fork(); one process */
  srunner_run_all(sr, CK_VERBOSE);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  moert_jit_cache_fini(&jit);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
