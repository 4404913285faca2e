/* prefill.c — the host side of the prefill expert GEMMs (prefill.h): tile choice, NVRTC
 * requests, tensor maps and launches.  Called by backend.c's forward; docs/prefill.md. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prefill.h"

/* cuda.h's enum values (CUDA 12 and 13) */
enum {
  TMAP_DTYPE_FLOAT16 = 6,
  TMAP_DTYPE_BFLOAT16 = 9,
  TMAP_INTERLEAVE_NONE = 0,
  TMAP_SWIZZLE_128B = 3,
  TMAP_L2_PROMOTION_NONE = 0,
  TMAP_L2_PROMOTION_64B = 1,
  TMAP_L2_PROMOTION_128B = 2,
  TMAP_L2_PROMOTION_256B = 3,
  TMAP_OOB_FILL_NONE = 0 /* out-of-bounds elements read as zeros */
};

int moert_prefill_pick_bm(const int32_t *offsets, uint32_t E, uint64_t pairs) {
  /* 128 from 64 rows per expert on average: on the H200 Qwen3-30B-A3B T=1024 (64 an
   * expert) took 356-359 us with 128-row tiles against 384-388 with 64, and T=512 (32)
   * 319 against 329 the other way (docs/bench/prefill-log.md, v7).  A layer of one expert
   * (the shared expert) keeps the padding rule alone. */
  if (E > 1 && pairs >= 64ull * E) return 128;
  /* below, padded rows with each tile size; a 64-row tile runs the tensor cores less
   * efficiently (sm90: n64 wgmma instead of n128; sm80: half the reuse of each B fragment),
   * so it must save more than an eighth of the rows to be chosen */
  uint64_t pad64 = 0, pad128 = 0;
  if (offsets) {
    for (uint32_t e = 0; e < E; e++) {
      const uint64_t c = (uint64_t)(offsets[e + 1] - offsets[e]);
      pad64 += (c + 63) / 64 * 64;
      pad128 += (c + 127) / 128 * 128;
    }
  } else if (E) {
    const uint64_t c = (pairs + E - 1) / E;
    pad64 = (c + 63) / 64 * 64 * E;
    pad128 = (c + 127) / 128 * 128 * E;
  }
  return pad64 * 8 < pad128 * 7 ? 64 : 128;
}

/* a 0|1 benchmark hook: its value when set to 0 or 1, else dflt */
static int env_flag(const char *name, int dflt) {
  const char *v = getenv(name);
  return v && !strcmp(v, "0") ? 0 : v && !strcmp(v, "1") ? 1 : dflt;
}
/* a numeric benchmark hook: its value when set to a number in [lo, hi], else dflt */
static int env_int(const char *name, int lo, int hi, int dflt) {
  const char *v = getenv(name);
  char *end;
  const long n = v && *v ? strtol(v, &end, 10) : 0;
  return v && *v && !*end && n >= lo && n <= hi ? (int)n : dflt;
}
/* the layer kernel's epilogue: 1 the 4-byte stores (measured, decode-log.md v15), 2 the
 * 16-byte ones of the GEMMs where their configuration has them (an experiment, not yet run on
 * a GPU; hook MOERT_PREFILL_LAYER_WIDE=1) */
static int layer_kind(void) { return env_flag("MOERT_PREFILL_LAYER_WIDE", 0) ? 2 : 1; }

moert_status moert_prefill_configs(int cc_major, int cc_minor, moert_dtype dtype, int bm,
                                   moert_prefill_config *gu, moert_prefill_config *dn) {
  const int cc = cc_major * 10 + cc_minor;
  if (dtype != MOERT_DTYPE_BF16 && dtype != MOERT_DTYPE_F16)
    return moert_fail(MOERT_ERR_UNSUPPORTED, "the prefill GEMMs run bf16 or f16, not %s",
                      moert_dtype_name(dtype));
  if (cc < 80)
    return moert_fail(MOERT_ERR_UNSUPPORTED, "the prefill GEMMs need sm_80 or newer, not sm_%d", cc);
  if (bm != 64 && bm != 128 && !(bm == 192 && cc == 90))
    return moert_fail(MOERT_ERR_INTERNAL, "prefill tile rows %d (64 or 128; 192 on sm_90a)", bm);
  const int act = dtype == MOERT_DTYPE_BF16 ? 1 : 2;
  memset(gu, 0, sizeof *gu);
  memset(dn, 0, sizeof *dn);
  gu->act = dn->act = act;
  gu->bm = dn->bm = bm;
  gu->gated = 1;
  /* MOERT_PREFILL_SM80=1, a test hook: the mma.sync + cp.async kernels on an sm_90 GPU too
   * (they run there as well; so they are run on hardware without an A100) */
  const char *f80 = getenv("MOERT_PREFILL_SM80");
  if (cc == 90 && !(f80 && !strcmp(f80, "1"))) { /* wgmma exists only on sm_90a; later GPUs take the mma.sync kernel */
    gu->sm = dn->sm = 90;
    gu->bk = dn->bk = 64;
    /* 4 x 48 KB of the 227 KB at 128-row tiles; a benchmark hook MOERT_PREFILL_STAGES=n
     * (2..5; 5 fits 64-row tiles only: 5 x 40 KB) */
    gu->stages = dn->stages = env_int("MOERT_PREFILL_STAGES", 2, bm == 64 ? 5 : 4, 4);
    gu->bn = 128;                /* x 2 matrices: 128 accumulators per consumer thread */
    dn->bn = 256;
    /* 192-row tiles (taken where moert_prefill_tall_due says): three consumer warpgroups of
     * 64 rows (512 threads), gate/up 96 columns a matrix read by one m64n192 wgmma, down 192
     * columns, 96 accumulators a consumer thread and 48 KB stages; an expert of 129-192 rows
     * is one tile, and a consumer without rows skips its wgmmas (prefill_sm90.cu) */
    if (bm == 192) gu->bn = 96, dn->bn = 192;
    gu->a_tma = 0; /* x rows gathered by packed_token */
    /* h is contiguous in sorted-row order: a TMA box of BM rows at 128-row tiles; at 64-row
     * tiles (a few rows an expert) the cp.async copies of the tile's own rows, where the box
     * read the next experts' rows from L2 as well (decode-log.md v15).  Hook:
     * MOERT_PREFILL_DOWN_TMA = 0|1. */
    dn->a_tma = bm == 192 || env_flag("MOERT_PREFILL_DOWN_TMA", bm == 128);
    /* the gathered A's rows past the tile's end not copied at all (decode-log.md v15).  Hook:
     * MOERT_PREFILL_A_SKIP = 0|1. */
    gu->a_skip = dn->a_skip = bm == 192 || env_flag("MOERT_PREFILL_A_SKIP", 1); /* (192: the
                                                  * padding rows copied would spill) */
    /* 128-row tiles: a consumer whose 64 rows all lie past the tile's end (an expert's last
     * tile of 64 rows or fewer) can skip its wgmmas, so the other has the tensor cores alone;
     * where the launch takes it, and what was measured: moert_prefill_m_skip_due.  Hook:
     * MOERT_PREFILL_M_SKIP = 0|1.  Not with MOERT_PREFILL_A_SKIP=0 (m_skip_built). */
    gu->m_skip = dn->m_skip = bm == 128 && env_flag("MOERT_PREFILL_M_SKIP", 1);
    /* persistent grids, row tile outer, and for 128-row tiles gate and up by one wgmma: on
     * the H100 Qwen3-30B-A3B T=8192 took 1662-1663 us against 1873-1904 with one CTA per
     * 128-row tile, column tile outer, two wgmmas (docs/bench/prefill-log.md, v5); larger
     * hidden sizes take another configuration (moert_prefill_fit).  MOERT_PREFILL_PERSISTENT,
     * MOERT_PREFILL_ORDER, MOERT_PREFILL_FUSED_GU = 0|1 (benchmark hooks) force either. */
    gu->persistent = dn->persistent = env_flag("MOERT_PREFILL_PERSISTENT", 1);
    gu->order = dn->order = env_flag("MOERT_PREFILL_ORDER", 1);
    gu->fused_gu = bm == 192 || (bm == 128 && env_flag("MOERT_PREFILL_FUSED_GU", 1));
    /* the down GEMM's rows (ypair) in the activation dtype, summed by moert_combine_act: on
     * the H100 Qwen3-30B-A3B T=8192 took 1539-1540 us against 1625-1638 with f32 rows, the
     * combine 99 against 195 us (docs/bench/prefill-log.md, v6).  Hook:
     * MOERT_PREFILL_YPAIR_ACT = 0|1. */
    dn->out_act = env_flag("MOERT_PREFILL_YPAIR_ACT", 1);
    /* 2-byte outputs stored 16 bytes a lane after a transpose in each quad, not 4: on the
     * H100 Qwen3-30B-A3B T=8192 took 1354-1361 us against 1534-1537 (docs/bench/
     * prefill-log.md, v6).  Hook: MOERT_PREFILL_EPI_WIDE = 0|1. */
    gu->epi_wide = dn->epi_wide = env_flag("MOERT_PREFILL_EPI_WIDE", 1);
    /* 64-row tiles: the down GEMM's CTAs on the SMs the gate/up GEMM leaves free or gives
     * back, their first weight tiles on the way while it finishes: on the H200 Qwen3-30B-A3B
     * 1.2-1.6 us faster from T=2 to 512 (48.8 against 50.3 at T=2), Qwen3-235B-A22B T=1 86.3
     * against 88.0.  Not 128-row tiles: no gain there (Qwen3-235B-A22B T=256/512, Qwen3-30B-A3B
     * prefill T=1024/8192), Mixtral-8x7B T=512 0.7 % slower (docs/bench/decode-log.md v12).
     * Hook: MOERT_PREFILL_EARLY = 0|1. */
    gu->early = dn->early = bm != 192 && env_flag("MOERT_PREFILL_EARLY", bm == 64);
    /* the layer kernel for the default 64-row tiles too (the backend takes it where both
     * GEMMs have more items than SMs: decode-log.md v15); MOERT_PREFILL_LAYER64=0 builds none */
    gu->layer = bm == 64 && env_flag("MOERT_PREFILL_LAYER64", 1) ? layer_kind() : 0;
    /* an experiment, hook MOERT_PREFILL_GU_BN64=256: 64-row gate/up tiles of 256 columns,
     * so that each consumer's wgmmas are n128 (gate and up: 128 accumulators, as at 128-row
     * tiles) instead of n64, their weights from the 128-row boxes of the experts' maps, 3
     * stages of 72 KB; no layer kernel.  For the padding of 128-row tiles at about 128 rows an
     * expert (Mixtral-8x7B T=512: decode-log.md v17) */
    if (bm == 64 && env_int("MOERT_PREFILL_GU_BN64", 128, 256, 128) == 256) {
      gu->bn = 256;
      gu->box_rows = 128;
      gu->stages = gu->stages < 3 ? gu->stages : 3;
      gu->layer = 0;
    }
  } else {
    gu->sm = dn->sm = 80;
    gu->bk = dn->bk = 32;
    /* sm_80 and sm_90+ opt in to 163+ KB of shared memory, sm_86/sm_89 to 99 KB */
    gu->stages = dn->stages = (cc == 80 || cc >= 90) ? 4 : 3;
    gu->bn = dn->bn = 128;
  }
  return MOERT_OK;
}

void moert_prefill_fit(moert_prefill_config *gu, moert_prefill_config *dn, uint32_t hidden,
                       uint32_t intermediate) {
  if (hidden % 8) dn->out_act = 0; /* moert_combine_act reads rows by 8 columns */
  if (gu->sm != 90) return;
  /* the column tile outer for a GEMM whose one-expert weights pass MOERT_PREFILL_COL_BYTES:
   * with the row tile outer an expert's second row tile reads each weight tile again one
   * whole expert matrix later, long after L2 (50 MB on the H100/H200) has let it go */
  const uint64_t b = 2ull * hidden * intermediate; /* one expert matrix, 2-byte elements */
  gu->order = env_flag("MOERT_PREFILL_ORDER", 2 * b <= MOERT_PREFILL_COL_BYTES);
  dn->order = env_flag("MOERT_PREFILL_ORDER", b <= MOERT_PREFILL_COL_BYTES);
  if (hidden <= 2048) return;
  /* persistent grids for 64-row tiles, and for 128-row tiles with the column tile outer:
   * on the H200 Mixtral-8x7B T=512 took 966 us against 1006, prefill T=4096 4669 against
   * 4792 (docs/bench/decode-log.md, v11) */
  const int tall = gu->bm >= 128;
  gu->persistent = env_flag("MOERT_PREFILL_PERSISTENT", !tall || !gu->order);
  dn->persistent = env_flag("MOERT_PREFILL_PERSISTENT", !tall || !dn->order);
  /* the fused gate/up wgmma stays (set by moert_prefill_configs for 128-row tiles): on the
   * H200 it wins at these sizes too, two rounds against two wgmmas (docs/bench/decode-log.md
   * v19): Mixtral-8x7B T=512 1008.8-1010.2 against 1127.8-1130.9 us, T=1024 1513.6-1522.8 /
   * 1581.3-1584.6, prefill T=8192 9432-9437 / 9658-9665; Qwen3-235B-A22B prefill T=4096
   * 2732-2740 / 2781-2794, T=8192 4709-4734 / 4865-4890; DeepSeek-V3 prefill T=8192
   * 13545-13559 / 13954-14092 (an H100 measured it slower with the grids of then: prefill-log
   * v5).  Hook MOERT_PREFILL_FUSED_GU = 0|1 (read by moert_prefill_configs). */
}

void moert_prefill_narrow(moert_prefill_config *gu, moert_prefill_config *dn) {
  if (gu->sm != 90 || gu->bm != 64 || dn->bm != 64) return;
  gu->bn = 64;  /* two consumers of 32 columns, gate and up: m64n32 wgmmas */
  gu->box_rows = dn->box_rows = 0;
  dn->bn = 128; /* two consumers of 64 columns */
  /* 24 KB a stage each (A 8 KB + B 16 KB): deeper rings for the same shared memory (H200,
   * Qwen3-30B-A3B T=1: 32.5-32.6 us with 8 stages, 33.0-33.2 with 6, 35.0 with 4:
   * decode-log.md v11); a benchmark hook MOERT_PREFILL_NARROW_STAGES=n (2..8) */
  gu->stages = dn->stages = env_int("MOERT_PREFILL_NARROW_STAGES", 2, 8, 8);
  /* the down GEMM after the gate/up GEMM's last item (H200, Qwen3-30B-A3B T=1: 32.42-32.45 us
   * against 32.80-32.88 with MOERT_EARLY; decode-log.md v12) */
  gu->early = dn->early = 0;
  /* the weight maps' misses fetch 128 bytes into L2, not 256: on the H200 Qwen3-30B-A3B T=1
   * took 31.41 us against 32.06-32.11 (all maps at 128 B; T=128-512 0.3-0.9 % slower that way,
   * so only these maps; decode-log.md v15) */
  gu->l2_fetch = dn->l2_fetch = 128;
  /* both GEMMs in one launch: slower here (H200, Qwen3-30B-A3B T=1: 34.3-35.1 us against
   * 32.0-32.2 with two launches, decode-log.md v15), so only with the hook
   * MOERT_PREFILL_LAYER=1 */
  gu->layer = env_flag("MOERT_PREFILL_LAYER", 0) ? layer_kind() : 0;
  /* the down GEMM may split its K in two where even these tiles leave it few items (the
   * backend's ksplit_due: Mixtral-8x7B T=1, decode-log.md v17); the backend clears it for a
   * layer that never splits (the code costs a little even when off: v18) */
  dn->ksplit = 1;
}

double moert_prefill_fill(uint64_t items, unsigned int sm_count) {
  const uint64_t sms = sm_count ? sm_count : 132;
  const uint64_t rounds = (items + sms - 1) / sms;
  return rounds ? (double)items / (double)(rounds * sms) : 0.0;
}

/* the narrow gate/up widths prefill_sm90.cu has: 48 to 128 columns by 16 (m64n24 to m64n64
 * wgmmas a consumer) */
#define NARROW_MIN 48
#define NARROW_MAX 128
#define NARROW_STEP 16

bool moert_prefill_narrow_width_ok(int bn) {
  return bn >= NARROW_MIN && bn <= NARROW_MAX && bn % NARROW_STEP == 0;
}

int moert_prefill_narrow_pick(uint32_t intermediate, uint64_t touched, unsigned int sm_count) {
  int best = 64;
  double best_fill = 0.0;
  for (int w = NARROW_MAX; w >= NARROW_MIN; w -= NARROW_STEP) { /* ties: the widest */
    const double fill =
        moert_prefill_fill(touched * ((intermediate + (uint32_t)w - 1) / (uint32_t)w), sm_count);
    if (fill > best_fill + 1e-9) best = w, best_fill = fill;
  }
  return best;
}

void moert_prefill_narrow_width(moert_prefill_config *gu, int bn) {
  if (gu->sm != 90 || gu->bm != 64 || !gu->gated || bn == gu->bn) return;
  if (!moert_prefill_narrow_width_ok(bn)) return;
  gu->bn = bn;
  /* as many stages as the narrow ring has, or as fit in 227 KB with 2 KB of alignment and barriers */
  const int stage = (gu->bm + 2 * bn) * 128, fit = (232448 - 2048) / stage;
  if (gu->stages > fit) gu->stages = fit;
  gu->layer = 0; /* the layer kernel's down tiles are twice the gate/up width: not these */
}

/* whether c's module has MOERT_M_SKIP: sm90 128-row tiles, not with the padding rows of a
 * gathered A copied (that fused gate/up kernel would spill) */
static bool m_skip_built(const moert_prefill_config *c) {
  return c->sm == 90 && c->bm == 128 && c->m_skip && (c->a_skip || c->a_tma);
}

void moert_prefill_make_request(const moert_prefill_config *c, moert_prefill_request *out) {
  memset(out, 0, sizeof *out);
  out->req.source = c->sm == 90 ? "prefill_sm90.cu" : "prefill_sm80.cu";
  out->req.fmad = true;
  int n = 0;
  snprintf(out->text[n++], sizeof out->text[0], "MOERT_ACT=%d", c->act);
  snprintf(out->text[n++], sizeof out->text[0], "MOERT_GATED=%d", c->gated);
  snprintf(out->text[n++], sizeof out->text[0], "MOERT_BM=%d", c->bm);
  snprintf(out->text[n++], sizeof out->text[0], "MOERT_BN=%d", c->bn);
  snprintf(out->text[n++], sizeof out->text[0], "MOERT_STAGES=%d", c->stages);
  if (c->sm == 90) {
    snprintf(out->text[n++], sizeof out->text[0], "MOERT_A_TMA=%d", c->a_tma);
    if (c->persistent) snprintf(out->text[n++], sizeof out->text[0], "MOERT_PERSISTENT=1");
    if (c->order) snprintf(out->text[n++], sizeof out->text[0], "MOERT_ORDER=1");
    if (c->fused_gu) snprintf(out->text[n++], sizeof out->text[0], "MOERT_FUSED_GU=1");
    if (c->out_act) snprintf(out->text[n++], sizeof out->text[0], "MOERT_OUT_ACT=1");
    if (c->epi_wide) snprintf(out->text[n++], sizeof out->text[0], "MOERT_EPI_WIDE=1");
    if (c->early) snprintf(out->text[n++], sizeof out->text[0], "MOERT_EARLY=1");
    if (c->a_skip && !c->a_tma) snprintf(out->text[n++], sizeof out->text[0], "MOERT_A_SKIP=1");
    if (m_skip_built(c)) snprintf(out->text[n++], sizeof out->text[0], "MOERT_M_SKIP=1");
    if (c->ksplit && !c->gated && c->persistent)
      snprintf(out->text[n++], sizeof out->text[0], "MOERT_KSPLIT=1");
    if (c->box_rows > 0 && c->box_rows < c->bn)
      snprintf(out->text[n++], sizeof out->text[0], "MOERT_BOX_ROWS=%d", c->box_rows);
  } else
    snprintf(out->text[n++], sizeof out->text[0], "MOERT_BK=%d", c->bk);
  for (int i = 0; i < n; i++) out->req.defines[i] = out->text[i];
  out->req.num_defines = (size_t)n;
}

unsigned int moert_prefill_threads(const moert_prefill_config *c) {
  return c->sm != 90 ? 256 : c->bm == 192 ? 512 : 384; /* 192-row tiles: three consumers */
}

unsigned int moert_prefill_smem(const moert_prefill_config *c) {
  const unsigned nb = c->gated ? 2 : 1;
  if (c->sm == 90) /* stages x (A + B tiles) of 128-byte rows, + 1 KB to align to 1 KB */
    return (unsigned)c->stages * ((unsigned)c->bm + nb * (unsigned)c->bn) * 128u + 1024u;
  /* stages x (BM + NB x BN) rows of BK + 8 elements */
  return (unsigned)c->stages * ((unsigned)c->bm + nb * (unsigned)c->bn) *
         ((unsigned)c->bk + 8u) * 2u;
}

uint64_t moert_prefill_max_tiles(uint64_t pairs, uint32_t E, int bm) {
  const uint64_t full = (pairs + (uint64_t)bm - 1) / (uint64_t)bm;
  return full + (E < pairs ? E : pairs);
}

size_t moert_prefill_tiles_bytes(uint64_t pairs, uint32_t E, int bm) {
  return (size_t)(16 + 16 * moert_prefill_max_tiles(pairs, E, bm));
}

int moert_prefill_down_parts(const moert_prefill_kernels *k, const moert_prefill_args *a) {
  const moert_prefill_config *dn = &k->down;
  if ((k->fn_layer && a->layer_sync) || a->ksplit <= 1) return 1; /* no down launch, no split */
  /* rows in the 2-byte dtype: two parts fit the room of one f32 row */
  return dn->sm == 90 && dn->persistent && dn->ksplit && dn->out_act ? a->ksplit : 1;
}

void moert_prefill_grid(const moert_prefill_config *c, uint64_t pairs, uint32_t E, uint32_t N,
                        unsigned int parts, unsigned int sm_count, unsigned int *gx,
                        unsigned int *gy) {
  const uint64_t t = moert_prefill_max_tiles(pairs, E, c->bm);
  *gx = (unsigned int)(t ? t : 1);
  *gy = (unsigned int)((N + (uint32_t)c->bn - 1) / (uint32_t)c->bn);
  if (c->persistent) {
    const uint64_t items = (uint64_t)*gx * *gy * (parts > 1 ? parts : 1),
                   ctas = sm_count ? sm_count : 132;
    *gx = (unsigned int)(items < ctas ? items : ctas);
    *gy = 1;
  } else if (c->order) {
    *gx *= *gy; /* 1-D: row tile w / ncol, column tile w % ncol */
    *gy = 1;
  }
}

/* ---- tensor maps ---- */

moert_status moert_prefill_tmap_encoder(const moert_cuda_driver *cu, moert_tmap_encode_fn *out) {
  void *p = cu && cu->lib ? dlsym(cu->lib, "cuTensorMapEncodeTiled") : NULL;
  if (!p)
    return moert_fail(MOERT_ERR_BACKEND_UNAVAILABLE, "the CUDA driver has no "
                      "cuTensorMapEncodeTiled (CUDA 12.0 or newer is needed for TMA)");
  *(void **)out = p;
  return MOERT_OK;
}

/* the map of moert_prefill_encode_map with a miss's L2 fetch of l2_fetch bytes (128, else
 * 256); the benchmark hook MOERT_PREFILL_L2_PROMOTION = 0 (none), 64, 128 or 256 wins over it,
 * read when a map is encoded (decode-log.md v15) */
static moert_status encode_map(moert_tmap_encode_fn enc, moert_dtype dtype, const void *addr,
                               uint64_t rows, uint64_t K, uint64_t row_stride, uint32_t box_rows,
                               int l2_fetch, void *map);

moert_status moert_prefill_encode_map(moert_tmap_encode_fn enc, moert_dtype dtype,
                                      const void *addr, uint64_t rows, uint64_t K,
                                      uint64_t row_stride, uint32_t box_rows, void *map) {
  return encode_map(enc, dtype, addr, rows, K, row_stride, box_rows, 256, map);
}

static moert_status encode_map(moert_tmap_encode_fn enc, moert_dtype dtype, const void *addr,
                               uint64_t rows, uint64_t K, uint64_t row_stride, uint32_t box_rows,
                               int l2_fetch, void *map) {
  if (K % 8 || row_stride % 8 || row_stride < K || (uintptr_t)addr % 16 || box_rows == 0 ||
      box_rows > 256 || rows == 0 || rows > (1ull << 32) || K > (1ull << 32))
    return moert_fail(MOERT_ERR_UNSUPPORTED, "a TMA tensor map of [%llu, %llu] (row stride %llu, "
                      "at %p, box rows %u): K and the stride must be multiples of 8, the address "
                      "16-byte aligned", (unsigned long long)rows, (unsigned long long)K,
                      (unsigned long long)row_stride, addr, box_rows);
  const uint64_t dims[2] = {K, rows};
  const uint64_t strides[1] = {row_stride * 2}; /* bytes, of dimension 1 */
  const uint32_t box[2] = {64, box_rows};
  const uint32_t elem[2] = {1, 1};
  const char *pe = getenv("MOERT_PREFILL_L2_PROMOTION");
  const int promotion = pe && !strcmp(pe, "0")     ? TMAP_L2_PROMOTION_NONE
                        : pe && !strcmp(pe, "64")  ? TMAP_L2_PROMOTION_64B
                        : pe && !strcmp(pe, "128") ? TMAP_L2_PROMOTION_128B
                        : pe && !strcmp(pe, "256") ? TMAP_L2_PROMOTION_256B
                        : l2_fetch == 128          ? TMAP_L2_PROMOTION_128B
                                                   : TMAP_L2_PROMOTION_256B;
  CUresult rc = enc(map, dtype == MOERT_DTYPE_BF16 ? TMAP_DTYPE_BFLOAT16 : TMAP_DTYPE_FLOAT16, 2,
                    (void *)(uintptr_t)addr, dims, strides, box, elem, TMAP_INTERLEAVE_NONE,
                    TMAP_SWIZZLE_128B, promotion, TMAP_OOB_FILL_NONE);
  if (rc != MOERT_CUDA_SUCCESS)
    return moert_fail(MOERT_ERR_DRIVER, "cuTensorMapEncodeTiled([%llu, %llu] at %p, box 64 x %u) "
                      "failed with CUDA error %d", (unsigned long long)rows,
                      (unsigned long long)K, addr, box_rows, rc);
  return MOERT_OK;
}

moert_status moert_prefill_encode_weights(moert_tmap_encode_fn enc, moert_dtype dtype,
                                          const moert_prefill_config *gu,
                                          const moert_prefill_config *dn, uint32_t E, uint32_t H,
                                          uint32_t I, const void *const *gate,
                                          const void *const *up, const void *const *down,
                                          void *maps_host) {
  unsigned char *m = maps_host;
  moert_status st = MOERT_OK;
  /* the box rows: the tile's columns, or box_rows where the kernel loads a tile as boxes */
  const uint32_t gbox = (uint32_t)(gu->box_rows > 0 ? gu->box_rows : gu->bn);
  const uint32_t dbox = (uint32_t)(dn->box_rows > 0 ? dn->box_rows : dn->bn);
  for (uint32_t e = 0; e < E && st == MOERT_OK; e++) {
    st = encode_map(enc, dtype, gate[e], I, H, H, gbox, gu->l2_fetch,
                                  m + (size_t)e * MOERT_TMAP_BYTES);
    if (st == MOERT_OK)
      st = encode_map(enc, dtype, up[e], I, H, H, gbox, gu->l2_fetch,
                                    m + ((size_t)E + e) * MOERT_TMAP_BYTES);
    if (st == MOERT_OK)
      st = encode_map(enc, dtype, down[e], H, I, I, dbox, dn->l2_fetch,
                                    m + (2 * (size_t)E + e) * MOERT_TMAP_BYTES);
  }
  return st;
}

/* ---- modules and launches ---- */

static moert_status function(const moert_cuda_driver *cu, CUmodule m, const char *name,
                             CUfunction *f) {
  CUresult rc = cu->cuModuleGetFunction(f, m, name);
  if (rc == MOERT_CUDA_SUCCESS) return MOERT_OK;
  char what[96];
  snprintf(what, sizeof what, "cuModuleGetFunction(%s)", name);
  return moert_cuda_fail(cu, rc, what);
}

moert_status moert_prefill_load(moert_jit_cache *jit, const moert_cuda_driver *cu,
                                const moert_prefill_config *gu, const moert_prefill_config *dn,
                                moert_prefill_kernels *out) {
  if (gu->bm != dn->bm || gu->sm != dn->sm)
    return moert_fail(MOERT_ERR_INTERNAL, "prefill: both GEMMs must share the row tile");
  memset(out, 0, sizeof *out);
  out->gate_up = *gu;
  out->down = *dn;
  CUdevice dev;
  int sms = 0, smem_sm = 0;
  if (cu->cuCtxGetDevice(&dev) == MOERT_CUDA_SUCCESS) {
    (void)cu->cuDeviceGetAttribute(&sms, MOERT_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
    (void)cu->cuDeviceGetAttribute(&smem_sm,
                                   MOERT_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,
                                   dev);
  }
  /* the early launch of the down GEMM only where none of its CTAs fits on an SM beside a
   * gate/up CTA (prefill_sm90.cu, MOERT_EARLY): else it could take the registers a
   * setmaxnreg.inc of that CTA waits for, and wait itself for that CTA's grid */
  if (gu->early && (smem_sm <= 0 || (uint64_t)moert_prefill_smem(gu) + moert_prefill_smem(dn) +
                                            2048u <= (uint64_t)smem_sm))
    out->gate_up.early = out->down.early = 0;
  gu = &out->gate_up;
  dn = &out->down;
  moert_status st;
  if (gu->sm == 90 && (st = moert_prefill_tmap_encoder(cu, &out->encode)) != MOERT_OK) return st;
  moert_prefill_request q;
  CUmodule m;
  moert_prefill_make_request(gu, &q);
  if ((st = moert_jit_module(jit, &q.req, &m)) != MOERT_OK ||
      (st = function(cu, m, "moert_prefill_tiles", &out->fn_tiles)) != MOERT_OK ||
      (st = function(cu, m, "moert_prefill_gemm", &out->fn_gate_up)) != MOERT_OK)
    return st;
  moert_prefill_make_request(dn, &q);
  if ((st = moert_jit_module(jit, &q.req, &m)) != MOERT_OK ||
      (st = function(cu, m, "moert_prefill_gemm", &out->fn_down)) != MOERT_OK)
    return st;
  out->smem_gate_up = moert_prefill_smem(gu);
  out->smem_down = moert_prefill_smem(dn);
  /* the SMs of the current context's device (persistent grids): one CTA per SM */
  out->sm_count = sms > 0 ? (unsigned int)sms : 0;
  CUresult rc = cu->cuFuncSetAttribute(out->fn_gate_up,
                                       MOERT_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                       (int)out->smem_gate_up);
  if (rc == MOERT_CUDA_SUCCESS)
    rc = cu->cuFuncSetAttribute(out->fn_down, MOERT_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                (int)out->smem_down);
  if (rc != MOERT_CUDA_SUCCESS)
    return moert_cuda_fail(cu, rc, "cuFuncSetAttribute (prefill shared memory)");
  /* the layer kernel where it fits these configurations */
  if (gu->layer && !moert_prefill_layer_fits(gu, dn)) out->gate_up.layer = 0;
  if (gu->layer) {
    moert_prefill_make_layer_request(gu, dn, &q);
    if ((st = moert_jit_module(jit, &q.req, &m)) != MOERT_OK ||
        (st = function(cu, m, "moert_prefill_layer", &out->fn_layer)) != MOERT_OK)
      return st;
    rc = cu->cuFuncSetAttribute(out->fn_layer, MOERT_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                (int)out->smem_gate_up);
    if (rc != MOERT_CUDA_SUCCESS)
      return moert_cuda_fail(cu, rc, "cuFuncSetAttribute (prefill layer shared memory)");
  }
  return MOERT_OK;
}

int moert_prefill_layer_fits(const moert_prefill_config *gu, const moert_prefill_config *dn) {
  return gu->sm == 90 && dn->sm == 90 && gu->gated && gu->bm == 64 && dn->bm == 64 &&
         gu->persistent && !gu->a_tma && !gu->fused_gu && dn->bn == 2 * gu->bn &&
         dn->stages == gu->stages;
}

void moert_prefill_make_layer_request(const moert_prefill_config *gu,
                                      const moert_prefill_config *dn, moert_prefill_request *out) {
  moert_prefill_config l = *gu;
  l.out_act = dn->out_act;
  l.early = 0;                            /* not read by the layer kernel */
  l.epi_wide = gu->layer == 2 && gu->epi_wide; /* its 16-byte stores: an experiment */
  moert_prefill_make_request(&l, out);
  size_t n = out->req.num_defines;
  snprintf(out->text[n], sizeof out->text[0], "MOERT_LAYER=1");
  out->req.defines[n] = out->text[n];
  out->req.num_defines = n + 1;
}

/* The 192-row tiles (sm_90a; three consumer warpgroups, one tile for an expert of 129-192
 * rows where the 128-row tiles take two) where the plan would take 128-row tiles, the experts
 * average more than 112 and at most 176 rows, and the gate/up grid has the row tile outer
 * (an expert's gate and up matrices within MOERT_PREFILL_COL_BYTES).  H200, two rounds
 * against the 128-row tiles (decode-log.md v21, calls 5-6): Qwen3-30B-A3B prefill T=2048
 * (128 rows an expert) 403.9-407.7 us against 435.2-436.3, T=2560 (160) 442.1-454.4 /
 * 526.5-557.1; Qwen3-235B-A22B T=2048 1459.3-1546.3 / 1578.8-1611.4; DeepSeek-V3 T=4096
 * 7928.7-7974.9 / 8626.9-8685.5.  Slower outside: Qwen3-30B-A3B T=1536 (96 rows) 372.4-376.9 /
 * 364.4-364.5, T=3072 (192) 648.0-649.7 / 566.1-595.6, T=4096 765.0-776.5 / 660.7-674.0; and
 * Mixtral-8x7B T=512 (128 rows, the column tile outer) 1072.8-1076.0 / 1000.2-1001.1.  Hook
 * MOERT_PREFILL_TALL = 0 never, 1 wherever the plan takes 128-row tiles (or
 * MOERT_PREFILL_BM=192): mode 0, 1; else the rule. */
int moert_prefill_tall_due(int mode, uint32_t E, uint32_t H, uint32_t I, uint64_t pairs) {
  if (mode == 0 || mode == 1) return mode;
  return pairs > 112ull * E && pairs <= 176ull * E &&
         4ull * H * I <= MOERT_PREFILL_COL_BYTES; /* the gate/up grid's row tile outer */
}

/* The 128-row down GEMM's K in two parts where its items (about pairs / 128 + E / 2 row
 * tiles, an expert's last one partial, times H / 256 column tiles) fill their last round of
 * SMs so poorly that twice as many half items end at least a fifth sooner: Mixtral-8x7B
 * T=512, ~192 items on 132 SMs, two rounds for 1.45 (its down GEMM at 1.67x its floor against
 * the gate/up's 1.36x: decode-log.md v20), split 384 in three half rounds.  H200, split /
 * not, two rounds in each of two calls (decode-log.md v21): Mixtral-8x7B T=512 997.7-1003.4
 * against 1011.7-1017.6 us and 968.9-969.7 / 990.7-991.7 (the down GEMM 346 against 373 us in
 * the timeline); not at T=1024 (5 half rounds for 3: 1559.6-1645.4 / 1536.7-1651.9) nor
 * prefill T=2048 (9 for 5: 2383.5-2605.5 / 2289.0-2684.7), which a tenth took; T=256 (not due,
 * the module built with the split) 717.8-729.8 / 716.0-735.0.  The backend's hook
 * MOERT_PREFILL_KSPLIT128=0: never. */
uint64_t moert_prefill_down_items(uint32_t E, uint32_t H, uint64_t pairs, int bm, int bn) {
  if (bm <= 0 || bn <= 0) return 0;
  return (pairs / (uint64_t)bm + (pairs < E ? pairs : E) / 2) *
         (((uint64_t)H + (uint64_t)bn - 1) / (uint64_t)bn);
}

int moert_prefill_ksplit_rows_due(uint32_t E, uint32_t H, uint32_t I, uint64_t pairs,
                                  unsigned int sm_count, int bm, int bn) {
  if (I < 4 * 64 || E == 0 || bm <= 0 || bn <= 0) return 0;
  const uint64_t sms = sm_count ? sm_count : 132;
  const uint64_t items = moert_prefill_down_items(E, H, pairs, bm, bn);
  const uint64_t whole = (items + sms - 1) / sms, halves = (2 * items + sms - 1) / sms;
  return 10 * halves <= 16 * whole; /* halves / 2 <= 0.8 whole */
}

int moert_prefill_ksplit128_due(uint32_t E, uint32_t H, uint32_t I, uint64_t pairs,
                                unsigned int sm_count) {
  return moert_prefill_ksplit_rows_due(E, H, I, pairs, sm_count, 128, 256);
}

int moert_prefill_m_skip_due(const moert_prefill_config *c, uint64_t pairs, uint32_t E) {
  if (!m_skip_built(c)) return 0;
  /* Only where experts average 96 rows or fewer: one tile each, nearly always.  An expert of
   * several row tiles has them run side by side (the column tile outer, or a few column
   * tiles a row tile), reading each weight tile from L2 together; a tile whose consumer
   * skips runs ahead, and the weights (evict_first) are gone before its sibling asks.  H200,
   * two rounds each, skip off / on (docs/bench/decode-log.md v20): gains at ~64 rows an
   * expert - DeepSeek-V3 prefill T=2048 6126-6145 / 5760-5849 us, Mixtral-8x7B T=256
   * 725-736 / 708-715, Qwen3-30B-A3B T=1024 344-353 / 342-349, Qwen3-235B-A22B T=1024
   * 1255-1257 / 1241-1243; losses above - Mixtral T=512 985-996 / 1129, T=1024 1555-1558 /
   * 1666-1696 (with a ticket counter), Qwen3-30B-A3B T=4096 640-644 / 661-668, DeepSeek-V3
   * T=8192 13471-13555 / 13870-13917 (Qwen3-235B-A22B T=8192 gained 2 %, 4566-4642 /
   * 4470-4478: not taken). */
  return pairs <= 96ull * E;
}

size_t moert_prefill_layer_sync_bytes(uint64_t pairs, uint32_t E) {
  return (size_t)(32 * (1 + moert_prefill_max_tiles(pairs, E, 64)));
}

moert_status moert_prefill_launch(const moert_cuda_driver *cu, const moert_prefill_kernels *k,
                                  const moert_prefill_args *a, CUstream stream) {
  const moert_prefill_config *gu = &k->gate_up, *dn = &k->down;
  if (a->pairs == 0) return MOERT_OK;
  if (a->pairs > 0x7fffffffull || a->num_experts == 0)
    return moert_fail(MOERT_ERR_UNSUPPORTED, "prefill: %llu rows over %u experts",
                      (unsigned long long)a->pairs, a->num_experts);
  const moert_dtype dtype = gu->act == 1 ? MOERT_DTYPE_BF16 : MOERT_DTYPE_F16;
  int E = (int)a->num_experts, bm = gu->bm, H = (int)a->hidden, I = (int)a->intermediate;
  CUdeviceptr count = a->tiles, tiles = a->tiles + 16, null = 0;
  moert_status st;
  void *pt[] = {(void *)&a->offsets, &E, &bm, &tiles, &count};
  /* programmatic dependent launch only for the sm_90 kernels (they wait first, trigger late) */
  const unsigned pdl = gu->sm == 90 && dn->sm == 90 ? a->pdl : 0u;
  if (!a->tiles_ready &&
      (st = moert_cuda_launch(cu, k->fn_tiles, 1, 1, 1024, 0, stream, pt, "moert_prefill_tiles",
                   pdl & 1u)) != MOERT_OK)
    return st;

  /* the layer kernel: both GEMMs in one persistent launch */
  if (k->fn_layer && a->layer_sync) {
    CUdeviceptr maps = a->maps, x = a->x, gather = a->gather, h = a->h, out = a->out;
    CUdeviceptr sync = a->layer_sync;
    long long xs = a->x_stride, hs = a->h_stride, os = a->out_stride;
    int evict = a->w_evict != 0;
    void *p[] = {&maps, &x, &xs, &gather, &tiles, &count, &E, &H, &I, &h, &hs, &out, &os, &sync,
                 &evict};
    const uint64_t items = moert_prefill_max_tiles(a->pairs, a->num_experts, 64) *
                           (((uint64_t)I + gu->bn - 1) / (uint64_t)gu->bn +
                            ((uint64_t)H + dn->bn - 1) / (uint64_t)dn->bn);
    const uint64_t ctas = k->sm_count ? k->sm_count : 132;
    return moert_cuda_launch(cu, k->fn_layer, (unsigned)(items < ctas ? items : ctas), 1,
                             moert_prefill_threads(gu), k->smem_gate_up, stream, p,
                             "moert_prefill_layer", pdl & 2u);
  }
  /* the kernels' A tensor map: unused (zeros) except for sm90's down GEMM, where it covers
   * h [pairs, I] */
  _Alignas(64) unsigned char amap[MOERT_TMAP_BYTES];
  memset(amap, 0, sizeof amap);
  unsigned gx, gy;
  /* the sm90 kernels' last parameters (the sm80 kernel has none: the driver reads as many
   * parameters as the kernel takes) */
  int evict = a->w_evict & 1, evict_down = (a->w_evict >> 1) & 1;
  /* gate/up: A = x gathered by packed_token, B = gate and up (maps [0, 2E) or wtab [0, 2E)) */
  {
    CUdeviceptr maps = a->maps, wtab = a->wtab, x = a->x, gather = a->gather, h = a->h;
    long long xs = a->x_stride, hs = a->h_stride;
    int up_offset = E;
    int one = 1; /* no K split */
    int skip = moert_prefill_m_skip_due(gu, a->pairs, a->num_experts);
    void *p[] = {amap, &maps, &wtab, &up_offset, &x, &xs, &gather, &tiles, &count, &E, &I, &H,
                 &h, &hs, &evict, &one, &skip};
    moert_prefill_grid(gu, a->pairs, a->num_experts, (uint32_t)I, 1, k->sm_count, &gx, &gy);
    if ((st = moert_cuda_launch(cu, k->fn_gate_up, gx, gy, moert_prefill_threads(gu), k->smem_gate_up,
                     stream, p, "moert_prefill_gemm (gate/up)", pdl & 2u)) != MOERT_OK)
      return st;
  }
  /* down: A = h in sorted-row order, B = down (maps [2E, 3E) or wtab [2E, 3E)) */
  {
    if (dn->sm == 90 && dn->a_tma &&
        (st = moert_prefill_encode_map(k->encode, dtype, (const void *)(uintptr_t)a->h, a->pairs,
                                       (uint64_t)I, (uint64_t)a->h_stride, (uint32_t)dn->bm,
                                       amap)) != MOERT_OK)
      return st;
    CUdeviceptr maps = a->maps ? a->maps + 2ull * (uint64_t)E * MOERT_TMAP_BYTES : 0;
    CUdeviceptr wtab = a->wtab ? a->wtab + 2ull * (uint64_t)E * 8 : 0, h = a->h, out = a->out;
    int ks = moert_prefill_down_parts(k, a); /* rows of ks parts of H each */
    long long hs = a->h_stride, os = a->out_stride * ks;
    int up_offset = 0;
    int skip = moert_prefill_m_skip_due(dn, a->pairs, a->num_experts);
    void *p[] = {amap, &maps, &wtab, &up_offset, &h, &hs, &null, &tiles, &count, &E, &H, &I,
                 &out, &os, &evict_down, &ks, &skip};
    moert_prefill_grid(dn, a->pairs, a->num_experts, (uint32_t)H, (unsigned)ks, k->sm_count,
                       &gx, &gy);
    /* MOERT_EARLY: the down GEMM launched during the gate/up GEMM only where it has work
     * items (about one a touched expert and column tile) for half of the SMs or more; with
     * fewer, those few CTAs started on the SMs the gate/up GEMM gave back first ran slower
     * (H200, Mixtral-8x7B T=1, 32 items: 238.0 us against 200.7, docs/bench/decode-log.md
     * v12), so it waits for the whole gate/up grid there, as without the hook */
    unsigned pdl_down = pdl & 4u;
    if (dn->early && pdl_down) {
      const uint64_t touched = a->pairs < a->num_experts ? a->pairs : a->num_experts;
      const uint64_t items = (touched + a->pairs / (uint64_t)dn->bm) *
                             (((uint64_t)H + (uint64_t)dn->bn - 1) / (uint64_t)dn->bn) *
                             (uint64_t)ks;
      if (2 * items < (uint64_t)(k->sm_count ? k->sm_count : 132)) pdl_down = 0;
    }
    st = moert_cuda_launch(cu, k->fn_down, gx, gy, moert_prefill_threads(dn), k->smem_down, stream, p,
                "moert_prefill_gemm (down)", pdl_down);
  }
  return st;
}
