/* test_forward.c — the CPU forward against the float64 reference (tests/support/mt_ref.c).
 *
 * Every case routes fresh random logits with the library, reads the routing it made
 * (moert_scratch_routing; the router itself is tested in test_router.c), and compares y
 * with mt_ref_forward run in double on exactly the dtype-rounded x and weights the library
 * saw and the float32 routing weights it used.  y is poisoned (NaN patterns) beforehand, so
 * an element the forward did not write fails; the weights of experts no token was routed to
 * are NaN, so a forward that reads them (or adds them with weight 0) fails too; strided x
 * has NaN in its padding, strided y keeps poison in its padding.
 *
 * Error bounds, by the dtype of x and y (the weights' dtype does not enter: the reference
 * uses the same rounded weights):
 *  - f32: the only error is float32 accumulation, about sqrt(n) * 6e-8 relative for dots of
 *    n <= 2048 terms (~3e-6), so rel L2 < 1e-5 and each element within 1e-5 |ref| +
 *    1e-4 rms(row).  A wrong index, weight or activation is off by O(1).
 *  - bf16: y is rounded to 8 significant bits: up to 2^-8 = 3.9e-3 relative per element
 *    (rel L2 ~1.3e-3 for uniform rounding).  Bound rel L2 < 1e-2 and each element within
 *    2^-8 |ref| + 4e-3 rms(row), the rms term allowing an implementation that rounds the
 *    intermediate h to bf16 as GPU kernels do (a further ~2^-9 relative per h element,
 *    averaged by the down projection).
 *  - f16: 11 significant bits: 2^-11 = 4.9e-4 per element; rel L2 < 2e-3, each element
 *    within 2^-11 |ref| + 5e-4 rms(row).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moert_test.h"

/* ---- one layer, its data, the library's routing and the reference ---- */

typedef struct fw {
  moert_layer_desc d;
  uint32_t T;
  size_t wes, aes;       /* weight / activation element sizes */
  unsigned char *used;   /* [E] routed to by some token */
  void **g, **u, **dn;   /* [E] per-expert matrices; unused experts share the NaN ones */
  void *nan_gu, *nan_d;
  void *sg, *su, *sd, *sgw;
  void *st_g, *st_u, *st_gu, *st_d; /* stacked copies, made on demand */
  void *x;               /* [T, xs] act dtype, NaN padding */
  uint64_t xs;
  double *xd;            /* [T, H] */
  int32_t *ids;          /* [T, k] the library's routing */
  float *wf;
  double *w;
  double *yref;          /* [T, H] */
  moert_scratch *s;
} fw;

static moert_layer_desc mkdesc(uint32_t E, uint32_t k, uint32_t H, uint32_t I, uint32_t Is,
                               moert_shared_gate sg, moert_dtype act, moert_dtype wt,
                               moert_router_kind kind, uint32_t renorm, uint32_t ng,
                               uint32_t tg, float scale) {
  moert_layer_desc d;
  MT_OK(moert_layer_desc_init(&d));
  d.num_experts = E;
  d.top_k = k;
  d.hidden = H;
  d.intermediate = I;
  d.shared_intermediate = Is;
  d.shared_gate = sg;
  d.act_dtype = act;
  d.weight_dtype = wt;
  d.router = kind;
  d.renormalize = renorm;
  d.n_group = ng;
  d.topk_group = tg;
  d.routed_scaling_factor = scale;
  return d;
}

static void fill_weights(mt_rng *r, void *p, moert_dtype dt, size_t n, uint32_t fan_in) {
  double a = sqrt(3.0 / fan_in); /* unit-variance outputs for unit-variance inputs */
  mt_fill_uniform(r, p, dt, n, -a, a);
}

/* Routes T random tokens on a new scratch of rt and builds the weights of the experts the
 * library routed to. */
static void fw_setup(fw *f, mt_rng *rng, moert_runtime *rt, const moert_layer_desc *d,
                     uint32_t T, uint32_t x_pad) {
  memset(f, 0, sizeof *f);
  f->d = *d;
  f->T = T;
  const uint32_t E = d->num_experts, k = d->top_k, H = d->hidden, I = d->intermediate;
  const uint32_t Is = d->shared_intermediate;
  f->wes = mt_dtype_size(d->weight_dtype);
  f->aes = mt_dtype_size(d->act_dtype);
  MT_OK(moert_scratch_create(rt, d, T > 0 ? T : 1, &f->s));
  /* route */
  float *logits = mt_alloc(sizeof(float) * ((size_t)T * E + 1));
  for (size_t i = 0; i < (size_t)T * E; i++) logits[i] = (float)(2.0 * mt_normal(rng));
  float bias[512];
  for (uint32_t e = 0; e < E; e++) bias[e] = (float)mt_uniform(rng, -0.1, 0.1);
  moert_route_args ra;
  memset(&ra, 0, sizeof ra);
  ra.struct_size = sizeof ra;
  ra.num_tokens = T;
  ra.logits_dtype = MOERT_DTYPE_F32;
  ra.memory = MOERT_MEMORY_HOST;
  ra.logits = logits;
  ra.correction_bias = d->router == MOERT_ROUTER_SIGMOID_GROUP_TOPK ? bias : NULL;
  MT_OK(moert_route(f->s, &ra, NULL));
  mt_free(logits);
  moert_routing_view v;
  memset(&v, 0, sizeof v);
  v.struct_size = sizeof v;
  MT_OK(moert_scratch_routing(f->s, &v));
  ck_assert_uint_eq(v.num_tokens, T);
  f->ids = mt_alloc(sizeof(int32_t) * ((size_t)T * k + 1));
  f->wf = mt_alloc(sizeof(float) * ((size_t)T * k + 1));
  f->w = mt_alloc(sizeof(double) * ((size_t)T * k + 1));
  f->used = calloc(E, 1);
  for (size_t i = 0; i < (size_t)T * k; i++) {
    f->ids[i] = v.expert_ids[i];
    f->wf[i] = v.expert_weights[i];
    f->w[i] = v.expert_weights[i];
    ck_assert_msg(f->ids[i] >= 0 && (uint32_t)f->ids[i] < E, "routed id %d", f->ids[i]);
    f->used[f->ids[i]] = 1;
  }
  /* weights */
  const size_t ngu = (size_t)I * H, nd = (size_t)H * I;
  f->g = calloc(E, sizeof(void *));
  f->u = calloc(E, sizeof(void *));
  f->dn = calloc(E, sizeof(void *));
  f->nan_gu = mt_alloc(ngu * f->wes);
  f->nan_d = mt_alloc(nd * f->wes);
  mt_poison(f->nan_gu, d->weight_dtype, ngu);
  mt_poison(f->nan_d, d->weight_dtype, nd);
  for (uint32_t e = 0; e < E; e++) {
    if (!f->used[e]) {
      f->g[e] = f->u[e] = f->nan_gu;
      f->dn[e] = f->nan_d;
      continue;
    }
    f->g[e] = mt_alloc(ngu * f->wes);
    f->u[e] = mt_alloc(ngu * f->wes);
    f->dn[e] = mt_alloc(nd * f->wes);
    fill_weights(rng, f->g[e], d->weight_dtype, ngu, H);
    fill_weights(rng, f->u[e], d->weight_dtype, ngu, H);
    fill_weights(rng, f->dn[e], d->weight_dtype, nd, I);
  }
  if (Is) {
    f->sg = mt_alloc((size_t)Is * H * f->wes);
    f->su = mt_alloc((size_t)Is * H * f->wes);
    f->sd = mt_alloc((size_t)H * Is * f->wes);
    f->sgw = mt_alloc((size_t)H * f->wes);
    fill_weights(rng, f->sg, d->weight_dtype, (size_t)Is * H, H);
    fill_weights(rng, f->su, d->weight_dtype, (size_t)Is * H, H);
    fill_weights(rng, f->sd, d->weight_dtype, (size_t)H * Is, Is);
    fill_weights(rng, f->sgw, d->weight_dtype, H, H);
  }
  /* x */
  f->xs = H + x_pad;
  f->x = mt_alloc(((size_t)T * f->xs + 1) * f->aes);
  mt_poison(f->x, d->act_dtype, (size_t)T * f->xs + 1);
  f->xd = mt_alloc(sizeof(double) * ((size_t)T * H + 1));
  for (uint32_t t = 0; t < T; t++)
    for (uint32_t h = 0; h < H; h++)
      f->xd[(size_t)t * H + h] = mt_store(f->x, d->act_dtype, (size_t)t * f->xs + h,
                                          mt_uniform(rng, -1.0, 1.0));
}

static const double *fw_ref(fw *f) {
  if (!f->yref) {
    mt_ref_layer L = {
        .E = f->d.num_experts, .k = f->d.top_k, .H = f->d.hidden, .I = f->d.intermediate,
        .Is = f->d.shared_intermediate, .shared_gate = f->d.shared_gate,
        .wdtype = f->d.weight_dtype, .gate = (const void *const *)f->g,
        .up = (const void *const *)f->u, .down = (const void *const *)f->dn, .sgate = f->sg,
        .sup = f->su, .sdown = f->sd, .sgate_w = f->sgw};
    f->yref = mt_alloc(sizeof(double) * ((size_t)f->T * f->d.hidden + 1));
    mt_ref_forward(&L, f->T, f->xd, f->ids, f->w, f->yref);
  }
  return f->yref;
}

static void make_stacked(fw *f) {
  if (f->st_g) return;
  const uint32_t E = f->d.num_experts, H = f->d.hidden, I = f->d.intermediate;
  const size_t m = (size_t)I * H * f->wes;
  f->st_g = mt_alloc(E * m);
  f->st_u = mt_alloc(E * m);
  f->st_gu = mt_alloc(2 * E * m);
  f->st_d = mt_alloc(E * m);
  for (uint32_t e = 0; e < E; e++) {
    memcpy((char *)f->st_g + e * m, f->g[e], m);
    memcpy((char *)f->st_u + e * m, f->u[e], m);
    memcpy((char *)f->st_gu + 2 * e * m, f->g[e], m);
    memcpy((char *)f->st_gu + (2 * e + 1) * m, f->u[e], m);
    memcpy((char *)f->st_d + e * m, f->dn[e], m);
  }
}

static moert_experts *fw_experts(fw *f, moert_runtime *rt, moert_weight_layout layout) {
  moert_experts_desc w;
  memset(&w, 0, sizeof w);
  w.struct_size = sizeof w;
  w.layout = layout;
  w.memory = MOERT_MEMORY_HOST;
  if (layout != MOERT_LAYOUT_PER_EXPERT) make_stacked(f);
  if (layout == MOERT_LAYOUT_STACKED) {
    w.gate = f->st_g;
    w.up = f->st_u;
    w.down = f->st_d;
  } else if (layout == MOERT_LAYOUT_STACKED_GATE_UP) {
    w.gate_up = f->st_gu;
    w.down = f->st_d;
  } else {
    w.gate_ptrs = (const void *const *)f->g;
    w.up_ptrs = (const void *const *)f->u;
    w.down_ptrs = (const void *const *)f->dn;
  }
  w.shared_gate = f->sg;
  w.shared_up = f->su;
  w.shared_down = f->sd;
  w.shared_expert_gate = f->d.shared_gate == MOERT_SHARED_GATE_SIGMOID ? f->sgw : NULL;
  moert_experts *ex = NULL;
  MT_OK(moert_experts_create(rt, &f->d, &w, &ex));
  return ex;
}

/* A y buffer [T, ys] poisoned everywhere. */
static void *new_y(const fw *f, uint64_t ys) {
  size_t n = (size_t)f->T * ys + 1;
  void *y = mt_alloc(n * f->aes);
  mt_poison(y, f->d.act_dtype, n);
  return y;
}

static moert_status run_forward(moert_scratch *s, moert_experts *ex, const fw *f, void *y,
                                uint64_t ys, uint32_t accumulate) {
  moert_forward_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.experts = ex;
  a.memory = MOERT_MEMORY_HOST;
  a.x = f->x;
  a.x_row_stride = f->xs == f->d.hidden ? 0 : f->xs; /* 0 = packed */
  a.y = y;
  a.y_row_stride = ys;
  a.accumulate = accumulate;
  return moert_forward(s, &a, NULL);
}

static void bounds(moert_dtype act, double *l2, double *rel, double *rms) {
  switch (act) {
    case MOERT_DTYPE_F32: *l2 = 1e-5; *rel = 1e-5; *rms = 1e-4; break;
    case MOERT_DTYPE_BF16: *l2 = 1e-2; *rel = 1.0 / 256; *rms = 4e-3; break;
    default: *l2 = 2e-3; *rel = 1.0 / 2048; *rms = 5e-4; break;
  }
}

static void check_y(const fw *f, const void *y, uint64_t ys, const double *ref, const char *what) {
  double l2, rel, rms;
  bounds(f->d.act_dtype, &l2, &rel, &rms);
  mt_cmp c;
  const uint32_t H = f->d.hidden;
  mt_compare(y, f->d.act_dtype, ys, ref, f->T, H, rel, rms, &c);
  ck_assert_msg(c.nonfinite == 0,
                "%s: %zu of %u elements not finite (unwritten poison, or NaN weights of an "
                "unrouted expert read); first at token %zu col %zu = %g, reference %g",
                what, c.nonfinite, f->T * H, c.first_nonfinite / H, c.first_nonfinite % H,
                mt_load(y, f->d.act_dtype, (c.first_nonfinite / H) * ys + c.first_nonfinite % H),
                ref[c.first_nonfinite]);
  ck_assert_msg(c.rel_l2 < l2, "%s: rel L2 error %.3g >= %.3g (worst token %zu col %zu: %.9g vs "
                "reference %.9g)", what, c.rel_l2, l2, c.worst / H, c.worst % H, c.worst_got,
                c.worst_ref);
  ck_assert_msg(c.max_err <= 1.0,
                "%s: token %zu col %zu: %.9g vs reference %.9g, error %.3g times the bound "
                "(%g |ref| + %g rms(row)); rel L2 %.3g", what, c.worst / H, c.worst % H,
                c.worst_got, c.worst_ref, c.max_err, rel, rms, c.rel_l2);
  /* the padding of a strided y is not written */
  for (uint32_t t = 0; t < f->T; t++)
    for (uint64_t h = H; h < ys; h++)
      ck_assert_msg(mt_is_poison(y, f->d.act_dtype, (size_t)t * ys + h),
                    "%s: padding of y written at token %u col %llu", what, t,
                    (unsigned long long)h);
}

static void fw_free(fw *f) {
  for (uint32_t e = 0; e < f->d.num_experts; e++)
    if (f->used && f->used[e]) {
      mt_free(f->g[e]);
      mt_free(f->u[e]);
      mt_free(f->dn[e]);
    }
  free(f->g);
  free(f->u);
  free(f->dn);
  free(f->used);
  mt_free(f->nan_gu);
  mt_free(f->nan_d);
  mt_free(f->sg);
  mt_free(f->su);
  mt_free(f->sd);
  mt_free(f->sgw);
  mt_free(f->st_g);
  mt_free(f->st_u);
  mt_free(f->st_gu);
  mt_free(f->st_d);
  mt_free(f->x);
  mt_free(f->xd);
  mt_free(f->ids);
  mt_free(f->wf);
  mt_free(f->w);
  mt_free(f->yref);
  moert_scratch_destroy(f->s);
}

/* FNV-1a over every weight byte of the routed and shared experts. */
static uint64_t weights_hash(const fw *f) {
  uint64_t h = 0xcbf29ce484222325ull;
  const size_t m = (size_t)f->d.intermediate * f->d.hidden * f->wes;
  const size_t ms = (size_t)f->d.shared_intermediate * f->d.hidden * f->wes;
  for (uint32_t e = 0; e < f->d.num_experts; e++) {
    if (!f->used[e]) continue;
    const void *mats[3] = {f->g[e], f->u[e], f->dn[e]};
    for (int i = 0; i < 3; i++)
      for (size_t b = 0; b < m; b++) h = (h ^ ((const unsigned char *)mats[i])[b]) * 0x100000001b3ull;
  }
  if (ms) {
    const void *mats[3] = {f->sg, f->su, f->sd};
    for (int i = 0; i < 3; i++)
      for (size_t b = 0; b < ms; b++) h = (h ^ ((const unsigned char *)mats[i])[b]) * 0x100000001b3ull;
  }
  return h;
}

/* ---- shapes x dtypes ---- */

typedef struct shape {
  const char *name;
  uint32_t E, k, H, I, Is, T;
  moert_shared_gate sg;
  moert_router_kind kind;
  uint32_t renorm, ng, tg;
  float scale;
} shape;

static const shape SHAPES[] = {
    {"mixtral-like", 8, 2, 64, 96, 0, 19, MOERT_SHARED_GATE_NONE, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f},
    {"qwen2-like shared+sigmoid gate", 16, 4, 128, 80, 160, 23, MOERT_SHARED_GATE_SIGMOID,
     MOERT_ROUTER_SOFTMAX_TOPK, 0, 0, 0, 1.0f},
    {"deepseek-like groups+shared", 32, 4, 96, 64, 48, 29, MOERT_SHARED_GATE_NONE,
     MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 4, 2, 2.5f},
    {"odd sizes", 5, 3, 37, 29, 11, 13, MOERT_SHARED_GATE_SIGMOID, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f},
    {"many tokens (chunks)", 16, 4, 64, 32, 0, 700, MOERT_SHARED_GATE_NONE,
     MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f},
    {"one token, k 1", 12, 1, 48, 40, 0, 1, MOERT_SHARED_GATE_NONE, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f},
};
#define NSHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])

static const moert_dtype COMBOS[][2] = { /* act, weight */
    {MOERT_DTYPE_F32, MOERT_DTYPE_F32},   {MOERT_DTYPE_BF16, MOERT_DTYPE_BF16},
    {MOERT_DTYPE_F16, MOERT_DTYPE_F16},   {MOERT_DTYPE_F32, MOERT_DTYPE_BF16},
    {MOERT_DTYPE_F32, MOERT_DTYPE_F16},   {MOERT_DTYPE_BF16, MOERT_DTYPE_F32},
    {MOERT_DTYPE_F16, MOERT_DTYPE_BF16},
};
#define NCOMBOS (int)(sizeof COMBOS / sizeof COMBOS[0])

static moert_layer_desc shape_desc(const shape *sh, moert_dtype act, moert_dtype wt) {
  return mkdesc(sh->E, sh->k, sh->H, sh->I, sh->Is, sh->sg, act, wt, sh->kind, sh->renorm,
                sh->ng, sh->tg, sh->scale);
}

/* loop index = shape * NCOMBOS + combo */
START_TEST(shapes_dtypes) {
  MT_RNG(rng);
  const shape *sh = &SHAPES[_i / NCOMBOS];
  const moert_dtype act = COMBOS[_i % NCOMBOS][0], wt = COMBOS[_i % NCOMBOS][1];
  moert_layer_desc d = shape_desc(sh, act, wt);
  moert_runtime *rt = mt_cpu_runtime(2);
  fw f;
  fw_setup(&f, &rng, rt, &d, sh->T, 0);
  moert_experts *ex = fw_experts(&f, rt, MOERT_LAYOUT_PER_EXPERT);
  void *y = new_y(&f, d.hidden);
  const size_t xbytes = ((size_t)f.T * f.xs + 1) * f.aes;
  void *x_before = mt_alloc(xbytes);
  memcpy(x_before, f.x, xbytes);
  const uint64_t w_before = weights_hash(&f);
  MT_OK(run_forward(f.s, ex, &f, y, 0, 0));
  char what[160];
  snprintf(what, sizeof what, "%s (E %u k %u H %u I %u Is %u T %u), act %s, weights %s", sh->name,
           sh->E, sh->k, sh->H, sh->I, sh->Is, sh->T, mt_dtype_name(act), mt_dtype_name(wt));
  check_y(&f, y, d.hidden, fw_ref(&f), what);
  ck_assert_msg(memcmp(x_before, f.x, xbytes) == 0, "%s: forward wrote x", what);
  ck_assert_msg(weights_hash(&f) == w_before, "%s: forward wrote the weights", what);
  mt_free(x_before);
  mt_free(y);
  moert_experts_destroy(ex);
  fw_free(&f);
  moert_runtime_destroy(rt);
}
END_TEST

/* Qwen3-30B-A3B: E 128, k 8, H 2048, I 768; a few tokens (the reference is slow). */
START_TEST(qwen3_30b_dims) {
  MT_RNG(rng);
  /* 0: f32 act, bf16 weights; 1: bf16 act, bf16 weights; 2: f32 act, f32 weights */
  const moert_dtype act = _i == 1 ? MOERT_DTYPE_BF16 : MOERT_DTYPE_F32;
  const moert_dtype wt = _i == 2 ? MOERT_DTYPE_F32 : MOERT_DTYPE_BF16;
  moert_layer_desc d = mkdesc(128, 8, 2048, 768, 0, MOERT_SHARED_GATE_NONE, act, wt,
                              MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  moert_runtime *rt = mt_cpu_runtime(0);
  fw f;
  fw_setup(&f, &rng, rt, &d, _i == 2 ? 2 : 3, 8);
  moert_experts *ex = fw_experts(&f, rt, MOERT_LAYOUT_PER_EXPERT);
  void *y = new_y(&f, 2048 + 5);
  MT_OK(run_forward(f.s, ex, &f, y, 2048 + 5, 0));
  char what[96];
  snprintf(what, sizeof what, "Qwen3-30B-A3B dims, T %u, %s act, %s weights", f.T,
           mt_dtype_name(act), mt_dtype_name(wt));
  check_y(&f, y, 2048 + 5, fw_ref(&f), what);
  mt_free(y);
  moert_experts_destroy(ex);
  fw_free(&f);
  moert_runtime_destroy(rt);
}
END_TEST

/* STACKED, STACKED_GATE_UP and PER_EXPERT give the same bits. */
START_TEST(layouts_identical) {
  MT_RNG(rng);
  const shape *sh = &SHAPES[_i % 4];
  const moert_dtype act = _i < 4 ? MOERT_DTYPE_F32 : MOERT_DTYPE_BF16;
  const moert_dtype wt = _i < 4 ? MOERT_DTYPE_BF16 : MOERT_DTYPE_F16;
  moert_layer_desc d = shape_desc(sh, act, wt);
  moert_runtime *rt = mt_cpu_runtime(2);
  fw f;
  fw_setup(&f, &rng, rt, &d, sh->T, 3);
  static const moert_weight_layout L[3] = {MOERT_LAYOUT_STACKED, MOERT_LAYOUT_STACKED_GATE_UP,
                                           MOERT_LAYOUT_PER_EXPERT};
  void *y[3];
  const size_t bytes = (size_t)f.T * d.hidden * f.aes;
  for (int l = 0; l < 3; l++) {
    moert_experts *ex = fw_experts(&f, rt, L[l]);
    y[l] = new_y(&f, d.hidden);
    MT_OK(run_forward(f.s, ex, &f, y[l], 0, 0));
    moert_experts_destroy(ex);
  }
  char what[160];
  snprintf(what, sizeof what, "%s, act %s, weights %s, layout STACKED", sh->name,
           mt_dtype_name(act), mt_dtype_name(wt));
  check_y(&f, y[0], d.hidden, fw_ref(&f), what);
  for (int l = 1; l < 3; l++) {
    size_t at = 0;
    while (at < bytes && ((char *)y[0])[at] == ((char *)y[l])[at]) at++;
    ck_assert_msg(at == bytes, "%s: layout %u differs from STACKED at element %zu: %.9g vs %.9g",
                  what, L[l], at / f.aes, mt_load(y[l], act, at / f.aes),
                  mt_load(y[0], act, at / f.aes));
  }
  for (int l = 0; l < 3; l++) mt_free(y[l]);
  fw_free(&f);
  moert_runtime_destroy(rt);
}
END_TEST

/* accumulate = 1: y = y0 + moe(x). */
START_TEST(accumulate) {
  MT_RNG(rng);
  const shape *sh = &SHAPES[1 + _i % 3];
  const moert_dtype act = COMBOS[_i % 3][0];
  moert_layer_desc d = shape_desc(sh, act, MOERT_DTYPE_BF16);
  moert_runtime *rt = mt_cpu_runtime(2);
  fw f;
  fw_setup(&f, &rng, rt, &d, sh->T, 0);
  moert_experts *ex = fw_experts(&f, rt, MOERT_LAYOUT_STACKED_GATE_UP);
  const uint32_t H = d.hidden;
  const uint64_t ys = H + 7;
  void *y = new_y(&f, ys);
  const double *ref = fw_ref(&f);
  double *want = mt_alloc(sizeof(double) * f.T * H);
  for (uint32_t t = 0; t < f.T; t++)
    for (uint32_t h = 0; h < H; h++)
      want[t * H + h] = mt_store(y, act, t * ys + h, mt_uniform(&rng, -0.5, 0.5)) + ref[t * H + h];
  MT_OK(run_forward(f.s, ex, &f, y, ys, 1));
  char what[160];
  snprintf(what, sizeof what, "accumulate, %s, act %s", sh->name, mt_dtype_name(act));
  check_y(&f, y, ys, want, what);
  /* accumulating twice adds twice */
  for (uint32_t t = 0; t < f.T; t++)
    for (uint32_t h = 0; h < H; h++)
      want[t * H + h] = mt_load(y, act, t * ys + h) + ref[t * H + h];
  MT_OK(run_forward(f.s, ex, &f, y, ys, 1));
  check_y(&f, y, ys, want, what);
  mt_free(want);
  mt_free(y);
  moert_experts_destroy(ex);
  fw_free(&f);
  moert_runtime_destroy(rt);
}
END_TEST

/* Row strides on x and y (x padding is NaN; y padding must stay poisoned). */
START_TEST(row_strides) {
  MT_RNG(rng);
  static const uint32_t xpad[3] = {1, 16, 100}, ypad[3] = {3, 0, 64};
  const shape *sh = &SHAPES[_i];
  moert_layer_desc d = shape_desc(sh, COMBOS[_i][0], COMBOS[_i][1]);
  moert_runtime *rt = mt_cpu_runtime(2);
  fw f;
  fw_setup(&f, &rng, rt, &d, sh->T, xpad[_i]);
  moert_experts *ex = fw_experts(&f, rt, MOERT_LAYOUT_STACKED);
  const uint64_t ys = d.hidden + ypad[_i];
  void *y = new_y(&f, ys);
  MT_OK(run_forward(f.s, ex, &f, y, ys, 0));
  char what[160];
  snprintf(what, sizeof what, "%s, x stride H+%u, y stride H+%u", sh->name, xpad[_i], ypad[_i]);
  check_y(&f, y, ys, fw_ref(&f), what);
  mt_free(y);
  moert_experts_destroy(ex);
  fw_free(&f);
  moert_runtime_destroy(rt);
}
END_TEST

/* Same bits from two runs, from 1, 2, 3 and 4 threads, and from moert_moe. */
START_TEST(determinism) {
  MT_RNG(rng);
  const moert_dtype act = COMBOS[_i][0], wt = COMBOS[_i][1];
  moert_layer_desc d = mkdesc(16, 4, 256, 128, 96, MOERT_SHARED_GATE_SIGMOID, act, wt,
                              MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  moert_runtime *rt1 = mt_cpu_runtime(1);
  fw f;
  fw_setup(&f, &rng, rt1, &d, 150, 0);
  moert_experts *ex1 = fw_experts(&f, rt1, MOERT_LAYOUT_PER_EXPERT);
  const size_t bytes = (size_t)f.T * d.hidden * f.aes;
  void *y1 = new_y(&f, d.hidden), *y2 = new_y(&f, d.hidden);
  MT_OK(run_forward(f.s, ex1, &f, y1, 0, 0));
  check_y(&f, y1, d.hidden, fw_ref(&f), "determinism, 1 thread");
  MT_OK(run_forward(f.s, ex1, &f, y2, 0, 0));
  ck_assert_msg(memcmp(y1, y2, bytes) == 0, "two runs on one thread differ (%s)",
                mt_dtype_name(act));
  static const uint32_t threads[3] = {2, 3, 4};
  for (int n = 0; n < 3; n++) {
    moert_runtime *rt = mt_cpu_runtime(threads[n]);
    moert_scratch *s = NULL;
    MT_OK(moert_scratch_create(rt, &d, f.T, &s));
    MT_OK(moert_set_routing(s, f.T, f.ids, f.wf, NULL));
    moert_experts *ex = fw_experts(&f, rt, MOERT_LAYOUT_PER_EXPERT);
    for (int rep = 0; rep < 2; rep++) {
      mt_poison(y2, act, (size_t)f.T * d.hidden);
      MT_OK(run_forward(s, ex, &f, y2, 0, 0));
      size_t at = 0;
      while (at < bytes && ((char *)y1)[at] == ((char *)y2)[at]) at++;
      ck_assert_msg(at == bytes, "%u threads (run %d) differ from 1 thread at element %zu: %.9g "
                    "vs %.9g (%s)", threads[n], rep, at / f.aes, mt_load(y2, act, at / f.aes),
                    mt_load(y1, act, at / f.aes), mt_dtype_name(act));
    }
    moert_experts_destroy(ex);
    moert_scratch_destroy(s);
    moert_runtime_destroy(rt);
  }
  mt_free(y1);
  mt_free(y2);
  moert_experts_destroy(ex1);
  fw_free(&f);
  moert_runtime_destroy(rt1);
}
END_TEST

/* moert_moe = moert_route + moert_forward, bit for bit. */
START_TEST(moe_one_shot) {
  MT_RNG(rng);
  const uint32_t E = 16, k = 4, H = 64, I = 48, T = 40;
  moert_layer_desc d = mkdesc(E, k, H, I, 32, MOERT_SHARED_GATE_NONE, MOERT_DTYPE_BF16,
                              MOERT_DTYPE_BF16, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 4, 2, 2.5f);
  moert_runtime *rt = mt_cpu_runtime(2);
  /* every expert used: all weights random */
  const size_t m = (size_t)I * H * 2;
  void *gu = mt_alloc(2 * E * m), *dn = mt_alloc(E * m), *sg = mt_alloc(32 * H * 2),
       *su = mt_alloc(32 * H * 2), *sd = mt_alloc(32 * H * 2);
  fill_weights(&rng, gu, MOERT_DTYPE_BF16, 2 * E * m / 2, H);
  fill_weights(&rng, dn, MOERT_DTYPE_BF16, E * m / 2, I);
  fill_weights(&rng, sg, MOERT_DTYPE_BF16, 32 * H, H);
  fill_weights(&rng, su, MOERT_DTYPE_BF16, 32 * H, H);
  fill_weights(&rng, sd, MOERT_DTYPE_BF16, 32 * H, 32);
  moert_experts_desc w;
  memset(&w, 0, sizeof w);
  w.struct_size = sizeof w;
  w.layout = MOERT_LAYOUT_STACKED_GATE_UP;
  w.memory = MOERT_MEMORY_HOST;
  w.gate_up = gu;
  w.down = dn;
  w.shared_gate = sg;
  w.shared_up = su;
  w.shared_down = sd;
  moert_experts *ex = NULL;
  MT_OK(moert_experts_create(rt, &d, &w, &ex));
  uint16_t *logits = mt_alloc(2 * T * E), *x = mt_alloc(2 * T * H), *y1 = mt_alloc(2 * T * H),
           *y2 = mt_alloc(2 * T * H);
  mt_fill_uniform(&rng, logits, MOERT_DTYPE_BF16, T * E, -4, 4);
  mt_fill_uniform(&rng, x, MOERT_DTYPE_BF16, T * H, -1, 1);
  float bias[16];
  for (uint32_t e = 0; e < E; e++) bias[e] = (float)mt_uniform(&rng, -0.1, 0.1);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, &d, T, &s));
  moert_route_args ra;
  memset(&ra, 0, sizeof ra);
  ra.struct_size = sizeof ra;
  ra.num_tokens = T;
  ra.logits_dtype = MOERT_DTYPE_BF16;
  ra.memory = MOERT_MEMORY_HOST;
  ra.logits = logits;
  ra.correction_bias = bias;
  moert_forward_args fa;
  memset(&fa, 0, sizeof fa);
  fa.struct_size = sizeof fa;
  fa.experts = ex;
  fa.memory = MOERT_MEMORY_HOST;
  fa.x = x;
  fa.y = y1;
  mt_poison(y1, MOERT_DTYPE_BF16, T * H);
  mt_poison(y2, MOERT_DTYPE_BF16, T * H);
  MT_OK(moert_route(s, &ra, NULL));
  MT_OK(moert_forward(s, &fa, NULL));
  fa.y = y2;
  MT_OK(moert_moe(s, &ra, &fa, NULL));
  ck_assert_msg(memcmp(y1, y2, 2 * T * H) == 0, "moert_moe differs from route + forward");
  for (uint32_t i = 0; i < T * H; i++)
    ck_assert_msg(!mt_is_poison(y1, MOERT_DTYPE_BF16, i), "y[%u] not written", i);
  moert_scratch_destroy(s);
  moert_experts_destroy(ex);
  moert_runtime_destroy(rt);
  mt_free(gu);
  mt_free(dn);
  mt_free(sg);
  mt_free(su);
  mt_free(sd);
  mt_free(logits);
  mt_free(x);
  mt_free(y1);
  mt_free(y2);
}
END_TEST

/* T = 0: nothing to do, nothing written; x and y may be NULL. */
START_TEST(zero_tokens) {
  MT_RNG(rng);
  const shape *sh = &SHAPES[1];
  moert_layer_desc d = shape_desc(sh, MOERT_DTYPE_F32, MOERT_DTYPE_F32);
  moert_runtime *rt = mt_cpu_runtime(2);
  fw f;
  fw_setup(&f, &rng, rt, &d, 4, 0);
  moert_experts *ex = fw_experts(&f, rt, MOERT_LAYOUT_PER_EXPERT);
  MT_OK(moert_set_routing(f.s, 0, NULL, NULL, NULL));
  float y[8];
  mt_poison(y, MOERT_DTYPE_F32, 8);
  moert_forward_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.experts = ex;
  a.memory = MOERT_MEMORY_HOST;
  a.x = f.x;
  a.y = y;
  MT_OK(moert_forward(f.s, &a, NULL));
  for (int i = 0; i < 8; i++) ck_assert_msg(mt_is_poison(y, MOERT_DTYPE_F32, i), "T = 0 wrote y");
  a.x = NULL;
  a.y = NULL;
  MT_OK(moert_forward(f.s, &a, NULL));
  moert_experts_destroy(ex);
  fw_free(&f);
  moert_runtime_destroy(rt);
}
END_TEST

/* Caller-supplied routing (set_routing) with arbitrary weights, negative ones included. */
START_TEST(set_routing_forward) {
  MT_RNG(rng);
  const shape *sh = &SHAPES[3];
  moert_layer_desc d = shape_desc(sh, MOERT_DTYPE_F32, MOERT_DTYPE_F32);
  moert_runtime *rt = mt_cpu_runtime(2);
  fw f;
  fw_setup(&f, &rng, rt, &d, sh->T, 0);
  /* new weights for the same ids */
  for (uint32_t i = 0; i < f.T * d.top_k; i++) {
    f.wf[i] = (float)mt_uniform(&rng, -1.0, 1.0);
    f.w[i] = f.wf[i];
  }
  MT_OK(moert_set_routing(f.s, f.T, f.ids, f.wf, NULL));
  moert_experts *ex = fw_experts(&f, rt, MOERT_LAYOUT_PER_EXPERT);
  void *y = new_y(&f, d.hidden);
  MT_OK(run_forward(f.s, ex, &f, y, 0, 0));
  check_y(&f, y, d.hidden, fw_ref(&f), "set_routing weights");
  mt_free(y);
  moert_experts_destroy(ex);
  fw_free(&f);
  moert_runtime_destroy(rt);
}
END_TEST

/* One scratch reused for two layers (two experts views, alternately) gives each layer's
 * own result. */
START_TEST(scratch_reuse_across_layers) {
  MT_RNG(rng);
  const shape *sh = &SHAPES[1];
  moert_layer_desc d = shape_desc(sh, MOERT_DTYPE_BF16, MOERT_DTYPE_BF16);
  moert_runtime *rt = mt_cpu_runtime(2);
  fw a, b;
  fw_setup(&a, &rng, rt, &d, sh->T, 0);
  fw_setup(&b, &rng, rt, &d, sh->T - 5, 2);
  moert_experts *exa = fw_experts(&a, rt, MOERT_LAYOUT_PER_EXPERT);
  moert_experts *exb = fw_experts(&b, rt, MOERT_LAYOUT_STACKED);
  void *ya = new_y(&a, d.hidden), *yb = new_y(&b, d.hidden);
  const size_t na = (size_t)a.T * d.hidden * a.aes, nb = (size_t)b.T * d.hidden * b.aes;
  void *ya1 = mt_alloc(na), *yb1 = mt_alloc(nb);
  /* reference bits: each layer on its own scratch */
  MT_OK(run_forward(a.s, exa, &a, ya, 0, 0));
  MT_OK(run_forward(b.s, exb, &b, yb, 0, 0));
  check_y(&a, ya, d.hidden, fw_ref(&a), "layer A");
  check_y(&b, yb, d.hidden, fw_ref(&b), "layer B");
  memcpy(ya1, ya, na);
  memcpy(yb1, yb, nb);
  /* both layers through a.s, alternately */
  for (int rep = 0; rep < 3; rep++) {
    MT_OK(moert_set_routing(a.s, b.T, b.ids, b.wf, NULL));
    mt_poison(yb, d.act_dtype, (size_t)b.T * d.hidden);
    MT_OK(run_forward(a.s, exb, &b, yb, 0, 0));
    ck_assert_msg(memcmp(yb, yb1, nb) == 0, "layer B on layer A's scratch differs (rep %d)", rep);
    MT_OK(moert_set_routing(a.s, a.T, a.ids, a.wf, NULL));
    mt_poison(ya, d.act_dtype, (size_t)a.T * d.hidden);
    MT_OK(run_forward(a.s, exa, &a, ya, 0, 0));
    ck_assert_msg(memcmp(ya, ya1, na) == 0, "layer A after layer B differs (rep %d)", rep);
  }
  mt_free(ya);
  mt_free(yb);
  mt_free(ya1);
  mt_free(yb1);
  moert_experts_destroy(exa);
  moert_experts_destroy(exb);
  fw_free(&a);
  fw_free(&b);
  moert_runtime_destroy(rt);
}
END_TEST

/* A runtime is shared by threads, each with its own scratch: results as if alone. */
typedef struct conc_job {
  moert_scratch *s;
  moert_experts *ex;
  const fw *f;
  const void *want;
  size_t bytes;
  int mismatches, failures;
} conc_job;

static void *conc_thread(void *arg) {
  conc_job *j = arg;
  void *y = mt_alloc(j->bytes);
  for (int rep = 0; rep < 40; rep++) {
    mt_poison(y, j->f->d.act_dtype, j->bytes / j->f->aes);
    if (run_forward(j->s, j->ex, j->f, y, 0, 0) != MOERT_OK) j->failures++;
    else if (memcmp(y, j->want, j->bytes) != 0) j->mismatches++;
  }
  mt_free(y);
  return NULL;
}

START_TEST(concurrent_scratches) {
  MT_RNG(rng);
  const shape *sh = &SHAPES[_i ? 2 : 0];
  moert_layer_desc d = shape_desc(sh, MOERT_DTYPE_F32, MOERT_DTYPE_BF16);
  moert_runtime *rt = mt_cpu_runtime(2);
  enum { NT = 3 };
  fw f[NT];
  moert_experts *ex[NT];
  void *want[NT];
  conc_job jobs[NT];
  pthread_t th[NT];
  for (int i = 0; i < NT; i++) {
    fw_setup(&f[i], &rng, rt, &d, sh->T + (uint32_t)i, 0);
    ex[i] = fw_experts(&f[i], rt, MOERT_LAYOUT_STACKED_GATE_UP);
    want[i] = new_y(&f[i], d.hidden);
    MT_OK(run_forward(f[i].s, ex[i], &f[i], want[i], 0, 0));
    check_y(&f[i], want[i], d.hidden, fw_ref(&f[i]), "concurrent, alone");
    jobs[i] = (conc_job){f[i].s, ex[i], &f[i], want[i], (size_t)f[i].T * d.hidden * f[i].aes, 0, 0};
  }
  for (int i = 0; i < NT; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, conc_thread, &jobs[i]), 0);
  for (int i = 0; i < NT; i++) ck_assert_int_eq(pthread_join(th[i], NULL), 0);
  for (int i = 0; i < NT; i++) {
    ck_assert_msg(jobs[i].failures == 0, "thread %d: %d forwards failed", i, jobs[i].failures);
    ck_assert_msg(jobs[i].mismatches == 0, "thread %d: %d of 40 concurrent forwards differ from "
                  "the same forward alone (%s)", i, jobs[i].mismatches, sh->name);
    mt_free(want[i]);
    moert_experts_destroy(ex[i]);
    fw_free(&f[i]);
  }
  moert_runtime_destroy(rt);
}
END_TEST

int main(void) {
  Suite *su = suite_create("forward");
  TCase *tc = tcase_create("forward");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, shapes_dtypes, 0, NSHAPES * NCOMBOS);
  tcase_add_loop_test(tc, qwen3_30b_dims, 0, 3);
  tcase_add_loop_test(tc, layouts_identical, 0, 8);
  tcase_add_loop_test(tc, accumulate, 0, 3);
  tcase_add_loop_test(tc, row_strides, 0, 3);
  tcase_add_loop_test(tc, determinism, 0, 3);
  tcase_add_test(tc, moe_one_shot);
  tcase_add_test(tc, zero_tokens);
  tcase_add_test(tc, set_routing_forward);
  tcase_add_test(tc, scratch_reuse_across_layers);
  tcase_add_loop_test(tc, concurrent_scratches, 0, 2);
  suite_add_tcase(su, tc);
  return mt_run_suite(su);
}
