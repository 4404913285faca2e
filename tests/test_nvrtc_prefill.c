/* test_nvrtc_prefill.c — the prefill GEMMs (issue 5) compile with NVRTC, with no GPU, and
 * without a register spill in any configuration (ptxas --warn-on-spills as an error):
 *  - ptx/prefill_sm90.cu for sm_90a (wgmma, TMA, mbarriers, setmaxnreg) in bf16 and f16,
 *    gate/up and down, 64- and 128-row tiles, A gathered and A by TMA: a CUBIN holding
 *    both kernels;
 *  - the same source for plain sm_90 is refused with a sentence naming sm_90a;
 *  - ptx/prefill_sm80.cu for sm_80, sm_86 and sm_89 in bf16 and f16, both GEMMs, both tile
 *    heights, with the stages runtime/cuda/prefill.c picks for each;
 *  - the host helpers of runtime/cuda/prefill.c: tile choice, configurations within each
 *    architecture's shared memory, tile bounds and grids, the -D requests.
 * NVRTC must be present (like test_nvrtc_compile).  Links moert_static for the hooks.
 * MOERT_PREFILL_DUMP_DIR=dir writes every CUBIN there (<source>-<arch>-g<gated>-bm<bm>-
 * a<a_tma>-act<act>.cubin), for cuobjdump -sass / -res-usage (docs/prefill.md). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_api.h"
#include "cuda/jit.h"
#include "cuda/prefill.h"
#include "internal.h"

static const moert_nvrtc *nvrtc_or_fail(void) {
  const moert_nvrtc *nv = NULL;
  char why[512] = "";
  moert_status st = moert_nvrtc_get(&nv, why, sizeof why);
  ck_assert_msg(st == MOERT_OK, "NVRTC must be present for this test: %s", why);
  return nv;
}

static bool has_bytes(const void *hay, size_t n, const char *needle) {
  const size_t m = strlen(needle);
  const unsigned char *h = hay;
  for (size_t i = 0; i + m <= n; i++)
    if (memcmp(h + i, needle, m) == 0) return true;
  return false;
}

static void compile_request(const moert_nvrtc *nv, const moert_prefill_config *c,
                            moert_prefill_request *qp, const char *arch);
static void compile_cubin(const moert_nvrtc *nv, const moert_prefill_config *c, const char *arch) {
  moert_prefill_request q;
  moert_prefill_make_request(c, &q);
  compile_request(nv, c, &q, arch);
}
/* the layer kernel's module of these two configurations */
static void compile_layer(const moert_nvrtc *nv, const moert_prefill_config *gu,
                          const moert_prefill_config *dn, const char *arch) {
  ck_assert(moert_prefill_layer_fits(gu, dn));
  moert_prefill_request q;
  moert_prefill_make_layer_request(gu, dn, &q);
  ck_assert_str_eq(q.req.defines[q.req.num_defines - 1], "MOERT_LAYER=1");
  compile_request(nv, gu, &q, arch);
}
static void compile_request(const moert_nvrtc *nv, const moert_prefill_config *c,
                            moert_prefill_request *qp, const char *arch) {
  moert_prefill_request q = *qp;
  for (size_t i = 0; i < q.req.num_defines; i++) q.req.defines[i] = q.text[i];
  /* ptxas fails on a spill: the register budgets (sm90: setmaxnreg 48 producer / 224
   * consumer; sm80: __launch_bounds__) must fit every configuration */
  q.req.no_spills = true;
  void *image = NULL;
  size_t size = 0;
  moert_status st = moert_jit_compile(nv, &q.req, arch, &image, &size);
  ck_assert_msg(st == MOERT_OK, "%s (gated %d, bm %d, bn %d, stages %d) for %s: %s", q.req.source,
                c->gated, c->bm, c->bn, c->stages, arch, moert_last_error());
  ck_assert_ptr_nonnull(image);
  ck_assert_msg(size > 1024 && memcmp(image, "\177ELF", 4) == 0, "%s for %s is not a CUBIN",
                q.req.source, arch);
  const bool layer = !strcmp(q.req.defines[q.req.num_defines - 1], "MOERT_LAYER=1");
  ck_assert_msg(has_bytes(image, size, layer ? "moert_prefill_layer" : "moert_prefill_gemm") &&
                    has_bytes(image, size, "moert_prefill_tiles"),
                "%s for %s lacks a kernel", q.req.source, arch);
  const char *dir = getenv("MOERT_PREFILL_DUMP_DIR");
  if (dir && *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%.12s-%s-g%d-bm%d-a%d-act%d%s.cubin", dir, q.req.source, arch,
             c->gated, c->bm, c->a_tma, c->act, layer ? "-layer" : "");
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(image, 1, size, f), size);
    ck_assert_int_eq(fclose(f), 0);
  }
  free(image);
}

/* sm_90a, act x bm over 4 loop iterations, gate/up and down each: the configured kernels
 * (persistent, row tile outer, 128-row gate/up as one wgmma); the other A path, one CTA per
 * tile, column tile outer, two wgmmas; one CTA per tile, row tile outer (a 1-D grid);
 * persistent, column tile outer */
START_TEST(test_sm90a_compiles) {
  const moert_nvrtc *nv = nvrtc_or_fail();
  const moert_dtype dt = _i & 1 ? MOERT_DTYPE_F16 : MOERT_DTYPE_BF16;
  const int bm = _i & 2 ? 64 : 128;
  moert_prefill_config gu, dn;
  ck_assert_int_eq(moert_prefill_configs(9, 0, dt, bm, &gu, &dn), MOERT_OK);
  ck_assert_int_eq(gu.sm, 90);
  ck_assert_int_eq(dn.a_tma, bm == 128); /* 64-row tiles: h by cp.async, the tile's rows only */
  ck_assert_int_eq(gu.a_skip, 1);
  compile_cubin(nv, &gu, "sm_90a");
  compile_cubin(nv, &dn, "sm_90a");
  moert_prefill_config g2 = gu, d2 = dn;
  g2.a_tma = 1; /* x already gathered into sorted order */
  d2.a_tma = !dn.a_tma; /* h by the other path */
  d2.out_act = 0; /* f32 rows */
  g2.persistent = d2.persistent = g2.order = d2.order = g2.fused_gu = 0;
  compile_cubin(nv, &g2, "sm_90a");
  compile_cubin(nv, &d2, "sm_90a");
  g2.early = d2.early = !gu.early; /* both triggers, weights before the wait or not */
  compile_cubin(nv, &g2, "sm_90a");
  compile_cubin(nv, &d2, "sm_90a");
  g2.early = d2.early = gu.early;
  g2 = gu;
  d2 = dn;
  g2.persistent = d2.persistent = 0;
  compile_cubin(nv, &g2, "sm_90a");
  compile_cubin(nv, &d2, "sm_90a");
  g2 = gu;
  g2.order = 0;
  g2.epi_wide = 0; /* 4-byte stores */
  compile_cubin(nv, &g2, "sm_90a");
  if (bm == 128) { /* the fused gate/up in the grids of larger hidden sizes (moert_prefill_fit) */
    g2 = gu;
    ck_assert_int_eq(g2.fused_gu, 1);
    g2.order = 0; /* persistent, column tile outer */
    compile_cubin(nv, &g2, "sm_90a");
    g2.order = 1, g2.persistent = 0; /* one CTA a tile, row tile outer */
    compile_cubin(nv, &g2, "sm_90a");
    d2 = dn; /* the down GEMM's K split (MOERT_PREFILL_KSPLIT128), persistent, column outer */
    d2.ksplit = 1, d2.order = 0;
    compile_cubin(nv, &d2, "sm_90a");
  }
  g2 = gu;
  d2 = dn;
  d2.a_tma = 0;
  g2.a_skip = d2.a_skip = 0; /* the padding rows copied as zeros */
  compile_cubin(nv, &g2, "sm_90a");
  compile_cubin(nv, &d2, "sm_90a");
  /* the narrow tiles of the decode sizes (64-row tiles only: m64n32 gate/up wgmmas), with
   * both epilogues */
  g2 = gu;
  d2 = dn;
  moert_prefill_narrow(&g2, &d2);
  if (bm == 64) {
    ck_assert_int_eq(g2.bn, 64);
    ck_assert_int_eq(d2.bn, 128);
    ck_assert_int_eq(g2.l2_fetch, 128); /* their maps' L2 misses fetch 128 bytes */
    ck_assert_int_eq(d2.l2_fetch, 128);
    ck_assert_int_eq(gu.l2_fetch, 0);   /* the default maps' 256 */
    ck_assert_uint_le(moert_prefill_smem(&g2), 232448);
    ck_assert_uint_le(moert_prefill_smem(&d2), 232448);
    compile_cubin(nv, &g2, "sm_90a");
    compile_cubin(nv, &d2, "sm_90a");
    { /* MOERT_PREFILL_GU_BN64=256 (an experiment): 64-row gate/up tiles of 256 columns, n128
       * wgmmas, loaded as two 128-row boxes */
      moert_prefill_config w = gu;
      w.bn = 256, w.box_rows = 128, w.stages = 3, w.layer = 0;
      ck_assert_uint_le(moert_prefill_smem(&w), 232448);
      moert_prefill_request wq;
      moert_prefill_make_request(&w, &wq);
      ck_assert_str_eq(wq.req.defines[wq.req.num_defines - 1], "MOERT_BOX_ROWS=128");
      compile_cubin(nv, &w, "sm_90a");
    }
    { /* the narrow gate/up widths whose items fill the SMs best at T = 1 (m64n24 to m64n56
       * wgmmas, 4-byte stores), and the choices for the models' shapes on 132 SMs */
      ck_assert_int_eq(moert_prefill_narrow_pick(768, 8, 132), 48);    /* 128 items, not 96 */
      ck_assert_int_eq(moert_prefill_narrow_pick(1536, 8, 132), 96);   /* 128, not 96 */
      ck_assert_int_eq(moert_prefill_narrow_pick(14336, 2, 132), 112); /* 256, not 448 */
      ck_assert_int_eq(moert_prefill_narrow_pick(768, 8, 0), 48);      /* SMs unknown: 132 */
      ck_assert_int_eq(moert_prefill_narrow_pick(4096, 1, 132), 48);   /* 86 items: most */
      ck_assert(moert_prefill_narrow_width_ok(48) && moert_prefill_narrow_width_ok(128));
      ck_assert(!moert_prefill_narrow_width_ok(72) && !moert_prefill_narrow_width_ok(32) &&
                !moert_prefill_narrow_width_ok(144) && !moert_prefill_narrow_width_ok(-1));
      ck_assert_double_eq_tol(moert_prefill_fill(96, 132), 96.0 / 132, 1e-12);
      ck_assert_double_eq_tol(moert_prefill_fill(448, 132), 448.0 / 528, 1e-12); /* 4 rounds */
      ck_assert_double_eq_tol(moert_prefill_fill(264, 0), 1.0, 1e-12);           /* 132 SMs */
      ck_assert_double_eq(moert_prefill_fill(0, 132), 0.0);
      static const int widths[] = {48, 80, 96, 112};
      for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        moert_prefill_config w = g2;
        moert_prefill_narrow_width(&w, widths[i]);
        ck_assert_int_eq(w.bn, widths[i]);
        ck_assert_int_eq(w.layer, 0);
        ck_assert_int_ge(w.stages, 2);
        ck_assert_uint_le(moert_prefill_smem(&w), 232448);
        compile_cubin(nv, &w, "sm_90a");
      }
      moert_prefill_config w = g2;
      moert_prefill_narrow_width(&w, 96); /* loaded as two boxes of 48 rows (the backend's maps
                                           * where the one-token width is 48) */
      w.box_rows = 48;
      moert_prefill_request bq;
      moert_prefill_make_request(&w, &bq);
      ck_assert_str_eq(bq.req.defines[bq.req.num_defines - 1], "MOERT_BOX_ROWS=48");
      compile_cubin(nv, &w, "sm_90a");
      w = g2;
      moert_prefill_narrow_width(&w, 72); /* not a width the kernel has: no change */
      ck_assert_int_eq(w.bn, 64);
      ck_assert_int_eq(w.stages, g2.stages);
    }
    g2.epi_wide = d2.epi_wide = 0;
    compile_cubin(nv, &g2, "sm_90a");
    compile_cubin(nv, &d2, "sm_90a");
    /* the layer kernel (both GEMMs in one launch) of the narrow tiles, by default there, with
     * rows in the activation dtype and in f32, and of the default 64-row tiles */
    moert_prefill_narrow(&g2, &d2);
    ck_assert_int_eq(g2.layer, 0); /* MOERT_PREFILL_LAYER=1 only */
    compile_layer(nv, &g2, &d2, "sm_90a");
    d2.out_act = !d2.out_act;
    compile_layer(nv, &g2, &d2, "sm_90a");
    ck_assert_int_eq(gu.layer, 1);
    compile_layer(nv, &gu, &dn, "sm_90a");
    g2 = gu; /* with the GEMMs' 16-byte stores (MOERT_PREFILL_LAYER_WIDE=1, an experiment) */
    g2.layer = 2;
    moert_prefill_request lq;
    moert_prefill_make_layer_request(&g2, &dn, &lq);
    int wide = 0;
    for (size_t i = 0; i < lq.req.num_defines; i++) wide |= !strcmp(lq.req.defines[i], "MOERT_EPI_WIDE=1");
    ck_assert_int_eq(wide, 1);
    compile_layer(nv, &g2, &dn, "sm_90a");
    d2 = dn;
    moert_prefill_narrow(&g2, &d2);
    g2.layer = 2;
    compile_layer(nv, &g2, &d2, "sm_90a");
    g2 = gu;
    g2.persistent = 0; /* the layer kernel is persistent only */
    ck_assert(!moert_prefill_layer_fits(&g2, &dn));
  } else { /* no change to 128-row tiles */
    ck_assert_int_eq(g2.bn, gu.bn);
    ck_assert_int_eq(d2.bn, dn.bn);
    ck_assert_int_eq(g2.stages, gu.stages);
  }
}
END_TEST

/* sm_90a's 192-row tiles (an experiment: MOERT_PREFILL_TALL=1), bf16 and f16: three consumer
 * warpgroups, gate/up 96 columns a matrix by one m64n192 wgmma, down 192; in the grids
 * moert_prefill_fit gives the hidden sizes (persistent row outer, persistent column outer,
 * one CTA a tile row outer) */
START_TEST(test_sm90a_tall_compiles) {
  const moert_nvrtc *nv = nvrtc_or_fail();
  const moert_dtype dt = _i & 1 ? MOERT_DTYPE_F16 : MOERT_DTYPE_BF16;
  moert_prefill_config gu, dn;
  ck_assert_int_eq(moert_prefill_configs(9, 0, dt, 192, &gu, &dn), MOERT_OK);
  ck_assert_int_eq(gu.bm, 192);
  ck_assert_int_eq(gu.bn, 96);
  ck_assert_int_eq(dn.bn, 192);
  ck_assert_uint_eq(moert_prefill_threads(&gu), 512);
  ck_assert_int_eq(gu.fused_gu, 1);
  ck_assert_int_eq(dn.a_tma, 1);
  ck_assert_int_eq(gu.early + dn.early + gu.layer + gu.m_skip + dn.m_skip, 0);
  ck_assert_uint_eq(moert_prefill_smem(&gu), 4u * (192 + 2 * 96) * 128 + 1024);
  ck_assert_uint_eq(moert_prefill_smem(&dn), 4u * (192 + 192) * 128 + 1024);
  compile_cubin(nv, &gu, "sm_90a");
  compile_cubin(nv, &dn, "sm_90a");
  moert_prefill_config g2 = gu, d2 = dn;
  g2.order = d2.order = 0; /* persistent, column tile outer (Mixtral-8x7B) */
  compile_cubin(nv, &g2, "sm_90a");
  compile_cubin(nv, &d2, "sm_90a");
  g2.order = d2.order = 1, g2.persistent = d2.persistent = 0; /* one CTA a tile */
  compile_cubin(nv, &g2, "sm_90a");
  compile_cubin(nv, &d2, "sm_90a");
  ck_assert_int_eq(gu.a_skip, 1); /* always: the padding rows copied would spill */
}
END_TEST

START_TEST(test_sm90_without_a_is_refused) {
  const moert_nvrtc *nv = nvrtc_or_fail();
  moert_prefill_config gu, dn;
  ck_assert_int_eq(moert_prefill_configs(9, 0, MOERT_DTYPE_BF16, 128, &gu, &dn), MOERT_OK);
  moert_prefill_request q;
  moert_prefill_make_request(&gu, &q);
  void *image = NULL;
  size_t size = 0;
  ck_assert_int_eq(moert_jit_compile(nv, &q.req, "sm_90", &image, &size), MOERT_ERR_COMPILE);
  ck_assert_ptr_null(image);
  ck_assert_msg(strstr(moert_last_error(), "sm_90a") != NULL, "the log should name sm_90a: %s",
                moert_last_error());
}
END_TEST

/* sm_80, sm_86, sm_89 x bf16/f16: both GEMMs, both tile heights */
static const int cc80[][2] = {{8, 0}, {8, 6}, {8, 9}};
START_TEST(test_sm80_compiles) {
  const moert_nvrtc *nv = nvrtc_or_fail();
  const int *cc = cc80[_i / 2];
  const moert_dtype dt = _i & 1 ? MOERT_DTYPE_F16 : MOERT_DTYPE_BF16;
  char arch[16];
  snprintf(arch, sizeof arch, "sm_%d%d", cc[0], cc[1]);
  for (int bm = 64; bm <= 128; bm *= 2) {
    moert_prefill_config gu, dn;
    ck_assert_int_eq(moert_prefill_configs(cc[0], cc[1], dt, bm, &gu, &dn), MOERT_OK);
    ck_assert_int_eq(gu.sm, 80);
    compile_cubin(nv, &gu, arch);
    compile_cubin(nv, &dn, arch);
  }
}
END_TEST

/* the MOERT_PREFILL_SM80 hook runs the mma.sync kernels on an sm_90 GPU: they compile for
 * sm_90a too, and the hook switches the configuration of an sm_90 GPU to them */
START_TEST(test_sm80_on_sm90a) {
  const moert_nvrtc *nv = nvrtc_or_fail();
  const moert_dtype dt = _i ? MOERT_DTYPE_F16 : MOERT_DTYPE_BF16;
  ck_assert_int_eq(setenv("MOERT_PREFILL_SM80", "1", 1), 0);
  for (int bm = 64; bm <= 128; bm *= 2) {
    moert_prefill_config gu, dn;
    ck_assert_int_eq(moert_prefill_configs(9, 0, dt, bm, &gu, &dn), MOERT_OK);
    ck_assert_int_eq(gu.sm, 80);
    ck_assert_int_eq(dn.sm, 80);
    ck_assert_int_eq(gu.stages, 4);
    compile_cubin(nv, &gu, "sm_90a");
    compile_cubin(nv, &dn, "sm_90a");
  }
  ck_assert_int_eq(unsetenv("MOERT_PREFILL_SM80"), 0);
  moert_prefill_config gu, dn;
  ck_assert_int_eq(moert_prefill_configs(9, 0, dt, 128, &gu, &dn), MOERT_OK);
  ck_assert_int_eq(gu.sm, 90);
}
END_TEST

START_TEST(test_bad_defines_are_refused) {
  const moert_nvrtc *nv = nvrtc_or_fail();
  moert_prefill_config gu, dn;
  ck_assert_int_eq(moert_prefill_configs(8, 0, MOERT_DTYPE_BF16, 128, &gu, &dn), MOERT_OK);
  gu.act = 3; /* f32 has no prefill kernel */
  moert_prefill_request q;
  moert_prefill_make_request(&gu, &q);
  void *image = NULL;
  size_t size = 0;
  ck_assert_int_eq(moert_jit_compile(nv, &q.req, "sm_80", &image, &size), MOERT_ERR_COMPILE);
  ck_assert_ptr_nonnull(strstr(moert_last_error(), "bf16"));
  gu.act = 1;
  gu.bm = 96;
  moert_prefill_make_request(&gu, &q);
  ck_assert_int_eq(moert_jit_compile(nv, &q.req, "sm_80", &image, &size), MOERT_ERR_COMPILE);
  ck_assert_ptr_nonnull(strstr(moert_last_error(), "MOERT_BM must be 64 or 128"));
}
END_TEST

/* ---- host helpers, no NVRTC needed ---- */

START_TEST(test_configs_fit_shared_memory) {
  /* opt-in shared memory per block: sm_80 163 KB, sm_86/sm_89 99 KB, sm_90 227 KB */
  static const struct {
    int major, minor;
    unsigned limit;
  } cards[] = {{8, 0, 166912}, {8, 6, 101376}, {8, 9, 101376}, {9, 0, 232448}};
  for (size_t c = 0; c < sizeof cards / sizeof cards[0]; c++)
    for (int bm = 64; bm <= 128; bm *= 2)
      for (int d = 0; d < 2; d++) {
        moert_prefill_config gu, dn;
        ck_assert_int_eq(moert_prefill_configs(cards[c].major, cards[c].minor,
                                               d ? MOERT_DTYPE_F16 : MOERT_DTYPE_BF16, bm, &gu, &dn),
                         MOERT_OK);
        ck_assert_msg(moert_prefill_smem(&gu) <= cards[c].limit && moert_prefill_smem(&dn) <= cards[c].limit,
                      "sm_%d%d bm %d: %u / %u bytes of shared memory", cards[c].major,
                      cards[c].minor, bm, moert_prefill_smem(&gu), moert_prefill_smem(&dn));
        ck_assert_int_eq(gu.bm, dn.bm);
        ck_assert_uint_eq(moert_prefill_threads(&gu), cards[c].major == 9 ? 384 : 256);
      }
  moert_prefill_config gu, dn;
  ck_assert_int_eq(moert_prefill_configs(9, 0, MOERT_DTYPE_BF16, 128, &gu, &dn), MOERT_OK);
  ck_assert_uint_eq(moert_prefill_smem(&gu), 4u * (128 + 2 * 128) * 128 + 1024);
  ck_assert_uint_eq(moert_prefill_smem(&dn), 4u * (128 + 256) * 128 + 1024);
  ck_assert_int_eq(moert_prefill_configs(7, 5, MOERT_DTYPE_BF16, 128, &gu, &dn), MOERT_ERR_UNSUPPORTED);
  /* 192-row tiles: sm_90a only (the wgmma kernel's three consumers) */
  ck_assert_int_eq(moert_prefill_configs(9, 0, MOERT_DTYPE_BF16, 192, &gu, &dn), MOERT_OK);
  ck_assert_uint_le(moert_prefill_smem(&gu), 232448);
  ck_assert_uint_le(moert_prefill_smem(&dn), 232448);
  ck_assert_int_eq(moert_prefill_configs(8, 0, MOERT_DTYPE_BF16, 192, &gu, &dn), MOERT_ERR_INTERNAL);
  ck_assert_int_eq(moert_prefill_configs(10, 0, MOERT_DTYPE_BF16, 192, &gu, &dn), MOERT_ERR_INTERNAL);
  ck_assert_int_eq(moert_prefill_configs(9, 0, MOERT_DTYPE_F32, 128, &gu, &dn), MOERT_ERR_UNSUPPORTED);
  /* a GPU newer than Hopper takes the mma.sync kernel (wgmma is sm_90a only) */
  ck_assert_int_eq(moert_prefill_configs(10, 0, MOERT_DTYPE_BF16, 128, &gu, &dn), MOERT_OK);
  ck_assert_int_eq(gu.sm, 80);
}
END_TEST

START_TEST(test_tiles_and_grid) {
  /* Qwen3-30B-A3B at T = 8192: 65536 pairs over 128 experts */
  const uint64_t pairs = 8192ull * 8;
  ck_assert_uint_eq(moert_prefill_max_tiles(pairs, 128, 128), 512 + 128);
  ck_assert_uint_eq(moert_prefill_max_tiles(5, 128, 128), 1 + 5); /* no more than one per row */
  ck_assert_uint_eq(moert_prefill_tiles_bytes(pairs, 128, 64), 16 + 16 * (1024 + 128));
  moert_prefill_config gu, dn;
  ck_assert_int_eq(moert_prefill_configs(9, 0, MOERT_DTYPE_BF16, 128, &gu, &dn), MOERT_OK);
  unsigned gx, gy;
  /* persistent (one CTA per SM, or one per work item when fewer), row tile outer; gate and
   * up by one wgmma with 128-row tiles only */
  ck_assert_int_eq(gu.persistent, 1);
  ck_assert_int_eq(gu.order, 1);
  ck_assert_int_eq(gu.fused_gu, 1);
  ck_assert_int_eq(dn.fused_gu, 0);
  moert_prefill_config g64, d64;
  ck_assert_int_eq(moert_prefill_configs(9, 0, MOERT_DTYPE_BF16, 64, &g64, &d64), MOERT_OK);
  ck_assert_int_eq(g64.persistent, 1);
  ck_assert_int_eq(d64.persistent, 1);
  ck_assert_int_eq(g64.fused_gu, 0);
  /* above hidden 2048: one CTA per 128-row tile (gate and up still by one wgmma); 64-row
   * tiles persistent; the
   * row tile outer unless one expert's matrices of the GEMM pass MOERT_PREFILL_COL_BYTES
   * (unless the benchmark hooks are set) */
  if (!getenv("MOERT_PREFILL_PERSISTENT") && !getenv("MOERT_PREFILL_ORDER") &&
      !getenv("MOERT_PREFILL_FUSED_GU") && !getenv("MOERT_PREFILL_YPAIR_ACT") &&
      !getenv("MOERT_PREFILL_EPI_WIDE")) {
    moert_prefill_config g = gu, d = dn;
    moert_prefill_fit(&g, &d, 2048, 768); /* Qwen3-30B-A3B */
    ck_assert_int_eq(g.persistent + g.order + g.fused_gu + d.order, 4);
    moert_prefill_fit(&g, &d, 4096, 1536); /* Qwen3-235B-A22B */
    ck_assert_int_eq(g.persistent + d.persistent, 0);
    ck_assert_int_eq(g.fused_gu, 1);
    ck_assert_int_eq(g.order + d.order, 2);
    moert_prefill_fit(&g64, &d64, 7168, 2048); /* DeepSeek-V3: 59 MB of gate and up */
    ck_assert_int_eq(g64.persistent + d64.persistent, 2);
    ck_assert_int_eq(g64.order + d64.order, 2);
    /* the down rows in the activation dtype only where moert_combine_act can read them (8
     * columns at a time) */
    ck_assert_int_eq(d.out_act + d64.out_act, 2);
    /* Mixtral-8x7B: 235 MB of gate and up, 117 MB of down an expert, both tile heights */
    moert_prefill_fit(&g, &d, 4096, 14336);
    ck_assert_int_eq(g.order + d.order, 0);
    ck_assert_int_eq(g.persistent + d.persistent, 2); /* 128-row tiles, the column outer */
    ck_assert_int_eq(g.fused_gu, 1);
    moert_prefill_fit(&g64, &d64, 4096, 14336);
    ck_assert_int_eq(g64.order + d64.order, 0);
    ck_assert_int_eq(g64.persistent, 1);
    /* the threshold on each GEMM alone: 128 MB of gate and up, 64 MB of down */
    moert_prefill_fit(&g, &d, 2048, 16384);
    ck_assert_int_eq(g.order, 0);
    ck_assert_int_eq(d.order, 1);
    moert_prefill_fit(&g64, &d64, 2052, 768);
    ck_assert_int_eq(d64.out_act, 0);
  }
  moert_prefill_grid(&gu, pairs, 128, 768, 1, 132, &gx, &gy);
  ck_assert_uint_eq(gx, 132);
  ck_assert_uint_eq(gy, 1);
  moert_prefill_grid(&gu, 5, 128, 768, 1, 132, &gx, &gy);
  ck_assert_uint_eq(gx, (1 + 5) * 6);
  moert_prefill_grid(&gu, 5, 128, 768, 2, 132, &gx, &gy); /* K in two parts: twice the items */
  ck_assert_uint_eq(gx, 2 * (1 + 5) * 6);
  moert_prefill_grid(&gu, 64, 128, 768, 2, 132, &gx, &gy); /* at most a CTA an SM */
  ck_assert_uint_eq(gx, 132);
  gu.persistent = dn.persistent = 0; /* one CTA per tile, row tile outer: 1-D */
  moert_prefill_grid(&gu, pairs, 128, 768, 1, 132, &gx, &gy);
  ck_assert_uint_eq(gx, 640 * 6);
  ck_assert_uint_eq(gy, 1);
  gu.order = dn.order = 0; /* column tile outer: row tiles x column tiles */
  moert_prefill_grid(&gu, pairs, 128, 768, 1, 132, &gx, &gy);
  ck_assert_uint_eq(gx, 640);
  ck_assert_uint_eq(gy, 6);
  moert_prefill_grid(&dn, pairs, 128, 2048, 1, 132, &gx, &gy);
  ck_assert_uint_eq(gy, 8);
  /* T = 262144: 2^21 rows, 2^32 elements of h; the grid still fits */
  moert_prefill_grid(&gu, 262144ull * 8, 128, 768, 1, 132, &gx, &gy);
  ck_assert_uint_eq(gx, 16384 + 128);
  /* the tile height: 32 rows per expert -> 64; 64 and more -> 128 */
  ck_assert_int_eq(moert_prefill_pick_bm(NULL, 128, 512 * 8), 64);
  ck_assert_int_eq(moert_prefill_pick_bm(NULL, 128, 1024 * 8 - 1), 64);
  ck_assert_int_eq(moert_prefill_pick_bm(NULL, 128, 1024 * 8), 128);
  ck_assert_int_eq(moert_prefill_pick_bm(NULL, 128, 8192 * 8), 128);
  int32_t offs[5] = {0, 40, 100, 130, 200}; /* 40, 60, 30, 70 rows */
  ck_assert_int_eq(moert_prefill_pick_bm(offs, 4, 200), 64); /* 320 vs 512 padded rows */
  int32_t near[5] = {0, 100, 230, 300, 520}; /* 704 vs 768: not an eighth less */
  ck_assert_int_eq(moert_prefill_pick_bm(near, 4, 520), 128);
  int32_t even[3] = {0, 256, 512};
  ck_assert_int_eq(moert_prefill_pick_bm(even, 2, 512), 128);
}
END_TEST

START_TEST(test_requests) {
  moert_prefill_config gu, dn;
  ck_assert_int_eq(moert_prefill_configs(9, 0, MOERT_DTYPE_F16, 64, &gu, &dn), MOERT_OK);
  moert_prefill_request q;
  moert_prefill_make_request(&dn, &q);
  ck_assert_str_eq(q.req.source, "prefill_sm90.cu");
  ck_assert_uint_eq(q.req.num_defines, 12);
  const char *want[] = {"MOERT_ACT=2",    "MOERT_GATED=0", "MOERT_BM=64",        "MOERT_BN=256",
                        "MOERT_STAGES=4", "MOERT_A_TMA=0", "MOERT_PERSISTENT=1", "MOERT_ORDER=1",
                        "MOERT_OUT_ACT=1", "MOERT_EPI_WIDE=1", "MOERT_EARLY=1", "MOERT_A_SKIP=1"};
  for (int i = 0; i < 12; i++) ck_assert_str_eq(q.req.defines[i], want[i]);
  ck_assert_int_eq(moert_prefill_configs(9, 0, MOERT_DTYPE_BF16, 128, &gu, &dn), MOERT_OK);
  moert_prefill_make_request(&gu, &q); /* 128-row tiles: no early launch of the down GEMM */
  ck_assert_uint_eq(q.req.num_defines, 12);
  ck_assert_str_eq(q.req.defines[8], "MOERT_FUSED_GU=1");
  ck_assert_str_eq(q.req.defines[9], "MOERT_EPI_WIDE=1");
  ck_assert_str_eq(q.req.defines[10], "MOERT_A_SKIP=1");
  ck_assert_str_eq(q.req.defines[11], "MOERT_M_SKIP=1"); /* an empty consumer skips its wgmmas */
  gu.a_skip = 0; /* not with the padding rows copied (that kernel would spill) */
  moert_prefill_make_request(&gu, &q);
  ck_assert_uint_eq(q.req.num_defines, 10);
  gu.a_skip = 1;
  gu.early = 1;
  moert_prefill_make_request(&gu, &q);
  ck_assert_uint_eq(q.req.num_defines, 13);
  ck_assert_str_eq(q.req.defines[10], "MOERT_EARLY=1");
  moert_prefill_make_request(&dn, &q); /* 128-row tiles: h by TMA, no A_SKIP */
  ck_assert_str_eq(q.req.defines[5], "MOERT_A_TMA=1");
  for (size_t i = 0; i < q.req.num_defines; i++) ck_assert_str_ne(q.req.defines[i], "MOERT_A_SKIP=1");
  ck_assert_str_eq(q.req.defines[q.req.num_defines - 1], "MOERT_M_SKIP=1");
  /* the launches' m_skip: only where experts average 96 rows or fewer (one tile each) */
  ck_assert_int_eq(moert_prefill_m_skip_due(&dn, 768, 8), 1);
  ck_assert_int_eq(moert_prefill_m_skip_due(&dn, 769, 8), 0);
  ck_assert_int_eq(moert_prefill_m_skip_due(&dn, 8192, 128), 1); /* Qwen3-30B-A3B T=1024 */
  ck_assert_int_eq(moert_prefill_m_skip_due(&dn, 32768, 128), 0); /* T=4096 */
  dn.m_skip = 0;
  ck_assert_int_eq(moert_prefill_m_skip_due(&dn, 768, 8), 0);
  dn.m_skip = 1;
  dn.bm = 64; /* 128-row tiles only */
  ck_assert_int_eq(moert_prefill_m_skip_due(&dn, 768, 8), 0);
  dn.bm = 128;
  /* the 192-row tiles' rule: 113-176 rows an expert, the gate/up grid with the row tile outer
   * (Qwen3-30B-A3B, Qwen3-235B-A22B, DeepSeek-V3; not Mixtral-8x7B's column-outer grid) */
  ck_assert_int_eq(moert_prefill_tall_due(-1, 128, 2048, 768, 2048 * 8), 1);   /* 128 rows */
  ck_assert_int_eq(moert_prefill_tall_due(-1, 128, 2048, 768, 2560 * 8), 1);   /* 160 */
  ck_assert_int_eq(moert_prefill_tall_due(-1, 128, 2048, 768, 176 * 128), 1);
  ck_assert_int_eq(moert_prefill_tall_due(-1, 128, 2048, 768, 176 * 128 + 1), 0);
  ck_assert_int_eq(moert_prefill_tall_due(-1, 128, 2048, 768, 112 * 128), 0);
  ck_assert_int_eq(moert_prefill_tall_due(-1, 128, 2048, 768, 1536 * 8), 0);   /* 96 */
  ck_assert_int_eq(moert_prefill_tall_due(-1, 128, 2048, 768, 3072 * 8), 0);   /* 192 */
  ck_assert_int_eq(moert_prefill_tall_due(-1, 128, 4096, 1536, 2048 * 8), 1);  /* 235B */
  ck_assert_int_eq(moert_prefill_tall_due(-1, 256, 7168, 2048, 4096 * 8), 1);  /* DeepSeek */
  ck_assert_int_eq(moert_prefill_tall_due(-1, 8, 4096, 14336, 512 * 2), 0);    /* Mixtral */
  ck_assert_int_eq(moert_prefill_tall_due(0, 128, 2048, 768, 2048 * 8), 0);    /* the hook */
  ck_assert_int_eq(moert_prefill_tall_due(1, 8, 4096, 14336, 512 * 2), 1);
  /* the 128-row down GEMM's K split: Mixtral-8x7B T=512 alone (192 items on 132 SMs) */
  ck_assert_int_eq(moert_prefill_ksplit128_due(8, 4096, 14336, 512 * 2, 132), 1);
  ck_assert_int_eq(moert_prefill_ksplit128_due(8, 4096, 14336, 256 * 2, 132), 0);
  ck_assert_int_eq(moert_prefill_ksplit128_due(8, 4096, 14336, 1024 * 2, 132), 0);
  ck_assert_int_eq(moert_prefill_ksplit128_due(8, 4096, 14336, 2048 * 2, 132), 0);
  ck_assert_int_eq(moert_prefill_ksplit128_due(128, 2048, 768, 2048 * 8, 132), 0);
  ck_assert_int_eq(moert_prefill_ksplit128_due(8, 4096, 192, 512 * 2, 132), 0); /* short K */
  ck_assert_uint_eq(moert_prefill_down_items(8, 4096, 512 * 2, 128, 256), (8 + 4) * 16);
  ck_assert_uint_eq(moert_prefill_down_items(8, 4096, 512 * 2, 192, 192), (5 + 4) * 22);
  /* the same for the 192-row tiles' down GEMM (192 columns): Mixtral-8x7B T=512, 198 items */
  ck_assert_int_eq(moert_prefill_ksplit_rows_due(8, 4096, 14336, 512 * 2, 132, 192, 192), 1);
  ck_assert_int_eq(moert_prefill_ksplit_rows_due(128, 2048, 768, 2048 * 8, 132, 192, 192), 0);
  ck_assert_int_eq(moert_prefill_configs(8, 6, MOERT_DTYPE_BF16, 128, &gu, &dn), MOERT_OK);
  moert_prefill_make_request(&gu, &q);
  ck_assert_str_eq(q.req.source, "prefill_sm80.cu");
  ck_assert_str_eq(q.req.defines[4], "MOERT_STAGES=3");
  ck_assert_str_eq(q.req.defines[5], "MOERT_BK=32");
}
END_TEST

int main(void) {
  Suite *s = suite_create("nvrtc_prefill");
  TCase *tc = tcase_create("compile");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, test_sm90a_compiles, 0, 4);
  tcase_add_loop_test(tc, test_sm90a_tall_compiles, 0, 2);
  tcase_add_test(tc, test_sm90_without_a_is_refused);
  tcase_add_loop_test(tc, test_sm80_compiles, 0, 6);
  tcase_add_loop_test(tc, test_sm80_on_sm90a, 0, 2);
  tcase_add_test(tc, test_bad_defines_are_refused);
  suite_add_tcase(s, tc);
  TCase *th = tcase_create("host");
  tcase_add_test(th, test_configs_fit_shared_memory);
  tcase_add_test(th, test_tiles_and_grid);
  tcase_add_test(th, test_requests);
  suite_add_tcase(s, th);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
