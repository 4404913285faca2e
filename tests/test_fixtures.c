/* test_fixtures.c — every case in tests/fixtures/ (MoE blocks computed by Hugging Face
 * transformers' own modeling code; see tests/fixtures/README.md) as an outside oracle:
 *  - moert_route on the stored router_logits (f32) picks the same expert set as topk_ids for
 *    every token, with the same weights to float32 rounding (|diff| <= 2e-6 (1 + |w|));
 *  - moert_forward on the stored bf16 x and weights (gate_up_proj is the
 *    MOERT_LAYOUT_STACKED_GATE_UP layout, and PER_EXPERT pointers into it must give the same
 *    bits) gives y: with f32 activations (the bf16 x values widened) to rel L2 < 1e-5 (the
 *    README measures ~3e-7 between transformers' f32 and float64; each element within
 *    1e-5 |ref| + 1e-4 rms(row)); with bf16 activations y is rounded to bf16: rel L2 < 1e-2,
 *    each element within 2^-8 |ref| + 4e-3 rms(row) (the bounds of test_forward.c).
 * qwen2: no renormalisation, a shared expert with a sigmoid gate; deepseek_v3: sigmoid
 * scores, correction bias, 4 groups (top 2), scale 2.5, a shared expert.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moert_test.h"

static char g_cases[16][128];
static int g_ncases;

typedef struct fxcase {
  mt_fixture fx;
  moert_layer_desc d;
  uint32_t T;
  const mt_fx_tensor *x, *logits, *gate_up, *down, *ids, *w, *y, *sg, *su, *sd, *sgate, *bias;
} fxcase;

static const mt_fx_tensor *need(const mt_fixture *fx, const char *name, const char *dtype) {
  const mt_fx_tensor *t = mt_fixture_tensor(fx, name);
  ck_assert_msg(t != NULL, "fixture %s has no tensor %s", fx->name, name);
  ck_assert_msg(!strcmp(t->dtype, dtype), "fixture %s: %s is %s, expected %s", fx->name, name,
                t->dtype, dtype);
  return t;
}

static void load_case(fxcase *c, int index, moert_dtype act) {
  memset(c, 0, sizeof *c);
  ck_assert_msg(index < g_ncases, "no fixture %d", index);
  char err[512];
  int rc = mt_fixture_load(g_cases[index], &c->fx, err, sizeof err);
  ck_assert_msg(rc == 0, "loading fixture %s: %s", g_cases[index], err);
  mt_fixture *fx = &c->fx;
  moert_layer_desc *d = &c->d;
  MT_OK(moert_layer_desc_init(d));
  d->num_experts = (uint32_t)mt_fixture_get_long(fx, "experts", 0);
  d->top_k = (uint32_t)mt_fixture_get_long(fx, "top_k", 0);
  d->hidden = (uint32_t)mt_fixture_get_long(fx, "hidden", 0);
  d->intermediate = (uint32_t)mt_fixture_get_long(fx, "intermediate", 0);
  d->shared_intermediate = (uint32_t)mt_fixture_get_long(fx, "shared_intermediate", 0);
  const char *sg = mt_fixture_get(fx, "shared_gate");
  d->shared_gate = sg && !strcmp(sg, "sigmoid") ? MOERT_SHARED_GATE_SIGMOID : MOERT_SHARED_GATE_NONE;
  d->act_dtype = act;
  d->weight_dtype = MOERT_DTYPE_BF16;
  const char *router = mt_fixture_get(fx, "router");
  ck_assert_msg(router != NULL, "fixture %s: no router", fx->name);
  if (!strcmp(router, "softmax_topk")) d->router = MOERT_ROUTER_SOFTMAX_TOPK;
  else if (!strcmp(router, "sigmoid_group_topk")) d->router = MOERT_ROUTER_SIGMOID_GROUP_TOPK;
  else ck_abort_msg("fixture %s: unknown router %s", fx->name, router);
  d->renormalize = (uint32_t)mt_fixture_get_long(fx, "renormalize", 1);
  d->n_group = (uint32_t)mt_fixture_get_long(fx, "n_group", 0);
  d->topk_group = (uint32_t)mt_fixture_get_long(fx, "topk_group", 0);
  d->routed_scaling_factor = (float)mt_fixture_get_double(fx, "routed_scaling_factor", 1.0);
  c->T = (uint32_t)mt_fixture_get_long(fx, "tokens", 0);
  const uint32_t E = d->num_experts, k = d->top_k, H = d->hidden, I = d->intermediate;
  ck_assert_msg(E && k && H && I && c->T, "fixture %s: incomplete config", fx->name);
  c->x = need(fx, "x", "bf16");
  c->logits = need(fx, "router_logits", "f32");
  c->gate_up = need(fx, "gate_up_proj", "bf16");
  c->down = need(fx, "down_proj", "bf16");
  c->ids = need(fx, "topk_ids", "i32");
  c->w = need(fx, "topk_weights", "f32");
  c->y = need(fx, "y", "f32");
  ck_assert(c->x->nbytes == (uint64_t)c->T * H * 2);
  ck_assert(c->logits->nbytes == (uint64_t)c->T * E * 4);
  ck_assert(c->gate_up->nbytes == (uint64_t)E * 2 * I * H * 2);
  ck_assert(c->down->nbytes == (uint64_t)E * H * I * 2);
  ck_assert(c->ids->nbytes == (uint64_t)c->T * k * 4);
  ck_assert(c->y->nbytes == (uint64_t)c->T * H * 4);
  if (d->shared_intermediate) {
    c->sg = need(fx, "shared_gate_proj", "bf16");
    c->su = need(fx, "shared_up_proj", "bf16");
    c->sd = need(fx, "shared_down_proj", "bf16");
    ck_assert(c->sg->nbytes == (uint64_t)d->shared_intermediate * H * 2);
    if (d->shared_gate == MOERT_SHARED_GATE_SIGMOID) {
      c->sgate = need(fx, "shared_expert_gate", "bf16");
      ck_assert(c->sgate->nbytes == (uint64_t)H * 2);
    }
  }
  if (d->router == MOERT_ROUTER_SIGMOID_GROUP_TOPK) {
    c->bias = need(fx, "e_score_correction_bias", "f32");
    ck_assert(c->bias->nbytes == (uint64_t)E * 4);
  }
}

static void route(fxcase *c, moert_scratch *s) {
  moert_route_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.num_tokens = c->T;
  a.logits_dtype = MOERT_DTYPE_F32;
  a.memory = MOERT_MEMORY_HOST;
  a.logits = c->logits->data;
  a.correction_bias = c->bias ? (const float *)c->bias->data : NULL;
  MT_OK(moert_route(s, &a, NULL));
}

/* Routing: same sets, same weights. */
START_TEST(fixture_routing) {
  fxcase c;
  load_case(&c, _i, MOERT_DTYPE_F32);
  const uint32_t k = c.d.top_k, E = c.d.num_experts;
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, &c.d, c.T, &s));
  route(&c, s);
  moert_routing_view v;
  memset(&v, 0, sizeof v);
  v.struct_size = sizeof v;
  MT_OK(moert_scratch_routing(s, &v));
  ck_assert_uint_eq(v.num_tokens, c.T);
  const int32_t *hf_ids = c.ids->data;
  const float *hf_w = c.w->data;
  for (uint32_t t = 0; t < c.T; t++)
    for (uint32_t j = 0; j < k; j++) {
      int32_t want = hf_ids[t * k + j];
      ck_assert_msg(want >= 0 && (uint32_t)want < E, "%s: fixture id %d", c.fx.name, want);
      uint32_t i = 0;
      while (i < k && v.expert_ids[t * k + i] != want) i++;
      ck_assert_msg(i < k, "%s: token %u: transformers chose expert %d (weight %.7g), moert "
                    "did not (moert: %d %d %d %d ...)", c.fx.name, t, want,
                    (double)hf_w[t * k + j], v.expert_ids[t * k], v.expert_ids[t * k + 1 % k],
                    v.expert_ids[t * k + 2 % k], v.expert_ids[t * k + 3 % k]);
      double got = v.expert_weights[t * k + i], ref = hf_w[t * k + j];
      ck_assert_msg(fabs(got - ref) <= 2e-6 * (1.0 + fabs(ref)),
                    "%s: token %u expert %d: weight %.9g, transformers %.9g", c.fx.name, t, want,
                    got, ref);
    }
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
  mt_fixture_free(&c.fx);
}
END_TEST

/* Forward: loop index = case * 2 + (0: f32 activations, 1: bf16 activations). */
START_TEST(fixture_forward) {
  const int bf16_act = _i % 2;
  const moert_dtype act = bf16_act ? MOERT_DTYPE_BF16 : MOERT_DTYPE_F32;
  fxcase c;
  load_case(&c, _i / 2, act);
  const uint32_t T = c.T, H = c.d.hidden, I = c.d.intermediate, E = c.d.num_experts;
  moert_runtime *rt = mt_cpu_runtime(2);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, &c.d, T, &s));
  /* x: the bf16 values as they are, or widened to f32 */
  void *x;
  if (bf16_act) {
    x = mt_alloc((size_t)T * H * 2);
    memcpy(x, c.x->data, (size_t)T * H * 2);
  } else {
    x = mt_alloc((size_t)T * H * 4);
    for (size_t i = 0; i < (size_t)T * H; i++)
      ((float *)x)[i] = mt_bf16_to_f32(((const uint16_t *)c.x->data)[i]);
  }
  moert_experts_desc w;
  memset(&w, 0, sizeof w);
  w.struct_size = sizeof w;
  w.layout = MOERT_LAYOUT_STACKED_GATE_UP;
  w.memory = MOERT_MEMORY_HOST;
  w.gate_up = c.gate_up->data;
  w.down = c.down->data;
  if (c.sg) {
    w.shared_gate = c.sg->data;
    w.shared_up = c.su->data;
    w.shared_down = c.sd->data;
    w.shared_expert_gate = c.sgate ? c.sgate->data : NULL;
  }
  moert_experts *ex = NULL;
  MT_OK(moert_experts_create(rt, &c.d, &w, &ex));
  const size_t aes = mt_dtype_size(act), ybytes = (size_t)T * H * aes;
  void *y = mt_alloc(ybytes), *y2 = mt_alloc(ybytes);
  mt_poison(y, act, (size_t)T * H);
  mt_poison(y2, act, (size_t)T * H);
  moert_route_args ra;
  memset(&ra, 0, sizeof ra);
  ra.struct_size = sizeof ra;
  ra.num_tokens = T;
  ra.logits_dtype = MOERT_DTYPE_F32;
  ra.memory = MOERT_MEMORY_HOST;
  ra.logits = c.logits->data;
  ra.correction_bias = c.bias ? (const float *)c.bias->data : NULL;
  moert_forward_args fa;
  memset(&fa, 0, sizeof fa);
  fa.struct_size = sizeof fa;
  fa.experts = ex;
  fa.memory = MOERT_MEMORY_HOST;
  fa.x = x;
  fa.y = y;
  MT_OK(moert_moe(s, &ra, &fa, NULL));

  double *ref = mt_alloc(sizeof(double) * T * H);
  for (size_t i = 0; i < (size_t)T * H; i++) ref[i] = ((const float *)c.y->data)[i];
  double l2 = bf16_act ? 1e-2 : 1e-5, rel = bf16_act ? 1.0 / 256 : 1e-5, rms = bf16_act ? 4e-3 : 1e-4;
  mt_cmp cmp;
  mt_compare(y, act, H, ref, T, H, rel, rms, &cmp);
  const char *name = c.fx.name, *an = mt_dtype_name(act);
  ck_assert_msg(cmp.nonfinite == 0, "%s (%s act): %zu elements of y not finite, first at %zu",
                name, an, cmp.nonfinite, cmp.first_nonfinite);
  ck_assert_msg(cmp.rel_l2 < l2, "%s (%s act): rel L2 error %.3g >= %.3g vs transformers (worst "
                "token %zu col %zu: %.9g vs %.9g)", name, an, cmp.rel_l2, l2, cmp.worst / H,
                cmp.worst % H, cmp.worst_got, cmp.worst_ref);
  ck_assert_msg(cmp.max_err <= 1.0, "%s (%s act): token %zu col %zu: %.9g vs transformers %.9g, "
                "%.3g times the bound; rel L2 %.3g", name, an, cmp.worst / H, cmp.worst % H,
                cmp.worst_got, cmp.worst_ref, cmp.max_err, cmp.rel_l2);
  fprintf(stderr, "%s, %s activations: rel L2 %.3g vs transformers\n", name, an, cmp.rel_l2);

  /* PER_EXPERT pointers into the same gate_up/down give the same bits */
  const void **gp = calloc(E, sizeof *gp), **up = calloc(E, sizeof *up), **dp = calloc(E, sizeof *dp);
  for (uint32_t e = 0; e < E; e++) {
    gp[e] = (const char *)c.gate_up->data + (size_t)e * 2 * I * H * 2;
    up[e] = (const char *)gp[e] + (size_t)I * H * 2;
    dp[e] = (const char *)c.down->data + (size_t)e * H * I * 2;
  }
  w.layout = MOERT_LAYOUT_PER_EXPERT;
  w.gate_up = NULL;
  w.down = NULL;
  w.gate_ptrs = (const void *const *)gp;
  w.up_ptrs = (const void *const *)up;
  w.down_ptrs = (const void *const *)dp;
  moert_experts *ex2 = NULL;
  MT_OK(moert_experts_create(rt, &c.d, &w, &ex2));
  free(gp); /* the arrays are copied by moert_experts_create */
  free(up);
  free(dp);
  fa.experts = ex2;
  fa.y = y2;
  MT_OK(moert_forward(s, &fa, NULL));
  ck_assert_msg(memcmp(y, y2, ybytes) == 0, "%s (%s act): PER_EXPERT differs from "
                "STACKED_GATE_UP", name, an);

  moert_experts_destroy(ex2);
  moert_experts_destroy(ex);
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
  mt_free(ref);
  mt_free(x);
  mt_free(y);
  mt_free(y2);
  mt_fixture_free(&c.fx);
}
END_TEST

/* The fixtures are all there (a clone that lost them fails here, not silently). */
START_TEST(fixtures_present) {
  ck_assert_msg(g_ncases >= 4, "%d fixture cases in %s, expected 4", g_ncases, mt_fixture_dir());
  const char *want[4] = {"deepseek_v3", "mixtral", "qwen2_moe", "qwen3_moe"};
  for (int i = 0; i < 4; i++) {
    int found = 0;
    for (int j = 0; j < g_ncases; j++) found |= !strncmp(g_cases[j], want[i], strlen(want[i]));
    ck_assert_msg(found, "no %s fixture in %s", want[i], mt_fixture_dir());
  }
}
END_TEST

int main(void) {
  g_ncases = mt_fixture_list(g_cases, 16);
  Suite *su = suite_create("fixtures");
  TCase *tc = tcase_create("fixtures");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, fixtures_present);
  tcase_add_loop_test(tc, fixture_routing, 0, g_ncases);
  tcase_add_loop_test(tc, fixture_forward, 0, 2 * g_ncases);
  suite_add_tcase(su, tc);
  return mt_run_suite(su);
}
