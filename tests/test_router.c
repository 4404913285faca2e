/* test_router.c — moert_route on the CPU backend against the float64 reference router
 * (tests/support/mt_ref.c), for every router kind and logits dtype, plus the edges: ties,
 * NaN, +-Inf, T = 0, T = max_tokens, E = 512, k = 16, k > E, and moert_set_routing.
 *
 * How results are compared:
 *  - softmax routers choose on the logits themselves, which the reference sees exactly
 *    (f32/bf16/f16 are exact in double): the ids must match the reference exactly, in
 *    order, ties to the lower index included.
 *  - the sigmoid router chooses on sigmoid(logit) + bias, which float32 rounds; where the
 *    reference's decision gap is under SIG_EPS (a near tie that float32 rounding may break
 *    either way, or merge values into a tie the lower index then wins) only the weights
 *    for the ids the library chose are checked.  Exact ties with no near value around them
 *    are still decided by the lower index and must match.
 *  - weights: |got - ref| <= W_REL * |ref| + 1e-12.  The float32 softmax rounds the
 *    logit difference (|l - max| < 20 here: up to 1e-6 relative after exp), the exp itself
 *    (~1 ulp), the sum (<= 21 roundings in warp order for E = 512) and the division:
 *    a few 1e-6 at worst; a wrong formula is off by far more.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moert_test.h"
#include "../ptx/moert_math.h" /* the float32 operations the routers use, for the bit check */

#define W_REL 8e-6

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
#define SIG_EPS 1e-6

static moert_layer_desc mkdesc(uint32_t E, uint32_t k, moert_router_kind kind, uint32_t renorm,
                               uint32_t n_group, uint32_t topk_group, float scale) {
  moert_layer_desc d;
  MT_OK(moert_layer_desc_init(&d));
  d.num_experts = E;
  d.top_k = k;
  d.hidden = 16;
  d.intermediate = 16;
  d.act_dtype = MOERT_DTYPE_F32;
  d.weight_dtype = MOERT_DTYPE_F32;
  d.router = kind;
  d.renormalize = renorm;
  d.n_group = n_group;
  d.topk_group = topk_group;
  d.routed_scaling_factor = scale;
  return d;
}

static const moert_dtype DTYPES[3] = {MOERT_DTYPE_F32, MOERT_DTYPE_BF16, MOERT_DTYPE_F16};

/* A logits buffer [T, stride] in dtype; the padding columns are NaN poison, so a router
 * that reads past E fails with MOERT_ERR_NAN_LOGIT. */
typedef struct logits_buf {
  moert_dtype dtype;
  uint32_t T, E;
  uint64_t stride;
  void *data;
  double *vals; /* [T, E] the values as stored */
} logits_buf;

static void lb_init(logits_buf *b, moert_dtype dt, uint32_t T, uint32_t E, uint64_t stride) {
  b->dtype = dt;
  b->T = T;
  b->E = E;
  b->stride = stride;
  size_t n = (size_t)T * stride + 1;
  b->data = mt_alloc(n * mt_dtype_size(dt));
  mt_poison(b->data, dt, n);
  b->vals = mt_alloc(sizeof(double) * ((size_t)T * E + 1));
}
static void lb_set(logits_buf *b, uint32_t t, uint32_t e, double v) {
  b->vals[(size_t)t * b->E + e] = mt_store(b->data, b->dtype, (size_t)t * b->stride + e, v);
}
static void lb_free(logits_buf *b) {
  mt_free(b->data);
  mt_free(b->vals);
}

static moert_route_args route_args(const logits_buf *b, uint32_t T, const float *bias) {
  moert_route_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.num_tokens = T;
  a.logits_dtype = b->dtype;
  a.memory = MOERT_MEMORY_HOST;
  a.logits = b->data;
  /* a packed row may be given as 0 or as E: both, alternately */
  a.logits_row_stride = (b->stride == b->E && T % 2 == 0) ? 0 : b->stride;
  a.correction_bias = bias;
  a.mode = MOERT_ROUTING_AUTO;
  return a;
}

static void get_view(moert_scratch *s, moert_routing_view *v) {
  memset(v, 0, sizeof *v);
  v->struct_size = sizeof *v;
  MT_OK(moert_scratch_routing(s, v));
}

/* Compares the scratch's routing with the reference for every token; returns the number of
 * tokens whose sigmoid decision was too close to call. */
static uint32_t check_routing(moert_scratch *s, const moert_layer_desc *d, const logits_buf *b,
                              const float *bias, const char *what) {
  mt_router r;
  mt_router_from_desc(&r, d);
  const uint32_t k = d->top_k, E = d->num_experts, T = b->T;
  double dbias[512];
  for (uint32_t e = 0; e < E; e++) dbias[e] = bias ? bias[e] : 0.0;
  moert_routing_view v;
  get_view(s, &v);
  ck_assert_msg(v.num_tokens == T && v.top_k == k, "%s: view has T %u k %u, want T %u k %u",
                what, v.num_tokens, v.top_k, T, k);
  if (T > 0) ck_assert_ptr_nonnull(v.expert_ids);
  if (T > 0) ck_assert_ptr_nonnull(v.expert_weights);
  uint32_t ambiguous = 0;
  for (uint32_t t = 0; t < T; t++) {
    const double *x = b->vals + (size_t)t * E;
    mt_route_row ref;
    mt_ref_route_row(&r, x, bias ? dbias : NULL, &ref);
    ck_assert_int_eq(ref.nan_expert, -1);
    const int32_t *ids = v.expert_ids + (size_t)t * k;
    const float *w = v.expert_weights + (size_t)t * k;
    /* valid, distinct ids in every case */
    for (uint32_t j = 0; j < k; j++) {
      ck_assert_msg(ids[j] >= 0 && (uint32_t)ids[j] < E, "%s: token %u slot %u id %d not in 0..%u",
                    what, t, j, ids[j], E - 1);
      for (uint32_t i = 0; i < j; i++)
        ck_assert_msg(ids[i] != ids[j], "%s: token %u has expert %d twice (slots %u, %u)", what,
                      t, ids[j], i, j);
    }
    const int exact = r.kind == MOERT_ROUTER_SOFTMAX_TOPK;
    const int set_sure = exact || ref.set_margin > SIG_EPS;
    const int order_sure = set_sure && (exact || ref.order_margin > SIG_EPS);
    double wref[16];
    if (order_sure) {
      for (uint32_t j = 0; j < k; j++)
        ck_assert_msg(ids[j] == ref.ids[j],
                      "%s: token %u slot %u: expert %d, reference %d (choice %.9g; logit %.9g vs "
                      "%.9g)", what, t, j, ids[j], ref.ids[j], ref.choice[j], x[ref.ids[j]],
                      x[ids[j]]);
      memcpy(wref, ref.w, sizeof wref);
    } else if (set_sure) {
      for (uint32_t j = 0; j < k; j++) {
        int found = 0;
        for (uint32_t i = 0; i < k; i++) found |= ids[i] == ref.ids[j];
        ck_assert_msg(found, "%s: token %u: reference expert %d (choice %.9g) not chosen", what,
                      t, ref.ids[j], ref.choice[j]);
      }
      mt_ref_weights_for_ids(&r, x, ids, wref);
    } else {
      ambiguous++;
      mt_ref_weights_for_ids(&r, x, ids, wref);
    }
    for (uint32_t j = 0; j < k; j++) {
      double tol = W_REL * fabs(wref[j]) + 1e-12;
      ck_assert_msg(fabs((double)w[j] - wref[j]) <= tol,
                    "%s: token %u slot %u (expert %d): weight %.9g, reference %.9g (diff %.3g > "
                    "%.3g)", what, t, j, ids[j], (double)w[j], wref[j],
                    fabs((double)w[j] - wref[j]), tol);
    }
  }
  return ambiguous;
}

/* Random logits N(0, sigma^2) for T tokens of a fresh scratch; route; compare. */
static void random_case(mt_rng *rng, const moert_layer_desc *d, moert_dtype dt, uint32_t T,
                        uint32_t max_tokens, uint32_t pad, double sigma, int with_bias,
                        const char *what) {
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, d, max_tokens, &s));
  logits_buf b;
  lb_init(&b, dt, T, d->num_experts, d->num_experts + pad);
  for (uint32_t t = 0; t < T; t++)
    for (uint32_t e = 0; e < d->num_experts; e++) lb_set(&b, t, e, sigma * mt_normal(rng));
  float bias[512];
  for (uint32_t e = 0; e < d->num_experts; e++) bias[e] = (float)mt_uniform(rng, -0.2, 0.2);
  moert_route_args a = route_args(&b, T, with_bias ? bias : NULL);
  MT_OK(moert_route(s, &a, NULL));
  char msg[160];
  snprintf(msg, sizeof msg, "%s (%s logits, E %u, k %u, T %u, stride %llu)", what,
           mt_dtype_name(dt), d->num_experts, d->top_k, T, (unsigned long long)b.stride);
  uint32_t amb = check_routing(s, d, &b, with_bias ? bias : NULL, msg);
  ck_assert_msg(amb <= T / 8 + 1, "%s: %u of %u tokens too close to call", msg, amb, T);
  lb_free(&b);
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
}

/* ---- every selection path of the host router (AVX-512 packed keys and AVX2 rows for k <= 8
 * and E a multiple of 16 or 8, SSE2 otherwise, a general path for ties, NaN and many
 * candidates) on logits that steer it each way: continuous, a few levels (ties
 * everywhere), many levels (some ties), -inf sprinkled, rows with one huge value, near ties
 * 1 ulp apart, bf16-like values, signed zeros and denormals, a near tie across the top k's
 * boundary.  Loop index = distribution.
 * CTest runs it again with MOERT_CPU_ISA=avx2 and =generic. ---- */
/* The renormalised softmax router's weights, bit for bit: for every row the library's
 * weights must be exactly what ptx/moert_math.h's float32 operations give in the documented
 * order (exp(l_j - max) for the chosen j in rank order, summed from slot 0 up, each divided
 * by the sum, then times the scale), the order the device router follows too.  On x86-64
 * with AVX2 this is the fused row router; a wrong lane, summation order or rounding step
 * changes bits.  Ids against the float64 reference (continuous random logits: no ties). */
START_TEST(softmax_renorm_bits) {
  static const uint32_t Es[] = {8, 16, 24, 32, 48, 64, 128, 256, 384, 512};
  MT_RNG(rng);
  for (size_t ei = 0; ei < sizeof Es / sizeof *Es; ei++)
    for (uint32_t k = 1; k <= 9; k++) {
      const uint32_t E = Es[ei], T = 97;
      if (k > E) continue;
      const float scale = (k % 3 == 0) ? 2.5f : 1.0f;
      moert_layer_desc d = mkdesc(E, k, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, scale);
      moert_runtime *rt = mt_cpu_runtime(1);
      moert_scratch *s = NULL;
      MT_OK(moert_scratch_create(rt, &d, T, &s));
      logits_buf b;
      lb_init(&b, MOERT_DTYPE_F32, T, E, E);
      const double spread = _i == 0 ? 2.0 : 12.0; /* _i 1: weights down to exp(-40) */
      for (uint32_t t = 0; t < T; t++)
        for (uint32_t e = 0; e < E; e++) lb_set(&b, t, e, spread * mt_normal(&rng));
      moert_route_args a = route_args(&b, T, NULL);
      MT_OK(moert_route(s, &a, NULL));
      char msg[160];
      snprintf(msg, sizeof msg, "renormalised softmax bits, E %u, k %u, spread %g", E, k, spread);
      check_routing(s, &d, &b, NULL, msg);
      moert_routing_view v;
      get_view(s, &v);
      for (uint32_t t = 0; t < T; t++) {
        const int32_t *ids = v.expert_ids + (size_t)t * k;
        const double *x = b.vals + (size_t)t * E;
        const float m = (float)x[ids[0]];
        float ex[16], sum = 0.0f;
        for (uint32_t j = 0; j < k; j++) {
          ex[j] = moert_expf(MOERT_FADD((float)x[ids[j]], -m));
          sum = MOERT_FADD(sum, ex[j]);
        }
        for (uint32_t j = 0; j < k; j++) {
          float want = MOERT_FDIV(ex[j], sum);
          if (scale != 1.0f) want = MOERT_FMUL(want, scale);
          const float got = v.expert_weights[(size_t)t * k + j];
          ck_assert_msg(memcmp(&got, &want, sizeof got) == 0,
                        "%s: token %u slot %u: weight %.9g (bits %08x), want %.9g (bits %08x)",
                        msg, t, j, (double)got, f32_bits(got), (double)want,
                        f32_bits(want));
        }
      }
      lb_free(&b);
      moert_scratch_destroy(s);
      moert_runtime_destroy(rt);
    }
}
END_TEST

START_TEST(selection_paths) {
  static const uint32_t Es[] = {8, 16, 24, 40, 64, 128, 256, 512};
  static const uint32_t ks[] = {1, 2, 3, 5, 8, 9, 16};
  MT_RNG(rng);
  for (size_t ei = 0; ei < sizeof Es / sizeof *Es; ei++)
    for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
      const uint32_t E = Es[ei], k = ks[ki], T = 150;
      if (k > E) continue;
      moert_layer_desc d = mkdesc(E, k, MOERT_ROUTER_SOFTMAX_TOPK, ki % 2, 0, 0, 1.0f);
      moert_runtime *rt = mt_cpu_runtime(1);
      moert_scratch *s = NULL;
      MT_OK(moert_scratch_create(rt, &d, T, &s));
      logits_buf b;
      lb_init(&b, MOERT_DTYPE_F32, T, E, E);
      const uint32_t span = E >= 8 ? E / 8 : 1; /* distribution 8: winners span apart */
      for (uint32_t t = 0; t < T; t++)
        for (uint32_t e = 0; e < E; e++) {
          double v = 2.0 * mt_normal(&rng);
          switch (_i) {
          case 1: v = floor(mt_uniform(&rng, 0, 4)); break;            /* 4 levels */
          case 2: v = floor(mt_uniform(&rng, 0, E / 2.0)) / 8; break;  /* E/2 levels */
          case 3: if (mt_uniform(&rng, 0, 1) < 0.3) v = -INFINITY; break;
          case 4: if (e == (t * 7) % E) v = 1e30; break;
          case 5: /* near ties: 40 values 1 ulp apart (the AVX-512 keys drop low bits) */
            v = 1.0 + ldexp(floor(mt_uniform(&rng, 0, 40)), -23);
            break;
          case 6: { /* bf16-like logits: only 8 significant bits, so exact ties are common */
            float f = (float)v;
            uint32_t bits;
            memcpy(&bits, &f, sizeof bits);
            bits &= 0xFFFF0000u;
            memcpy(&f, &bits, sizeof f);
            v = f;
            break;
          }
          case 7: /* signed zeros (equal: the lower index first) and denormals */
            v = mt_uniform(&rng, 0, 1) < 0.5 ? -0.0 : 0.0;
            if (mt_uniform(&rng, 0, 1) < 0.2) v = ldexp(mt_uniform(&rng, -8, 8), -140);
            break;
          case 8: /* k-1 clear winners, then two logits 1 ulp apart, the larger at the
                     higher index: a near tie across the boundary of the top k */
            v = -5.0 + 0.1 * mt_normal(&rng);
            if (e % span == t % 3 && e / span + 1 < k) v = 10.0 + e; /* k-1 winners */
            if (e == E - 1 - t % 5) v = 1.0 + 0x1p-23;
            if (e == (t * 3) % (E - 5)) v = 1.0;
            break;
          default: break;
          }
          lb_set(&b, t, e, v);
        }
      moert_route_args a = route_args(&b, T, NULL);
      MT_OK(moert_route(s, &a, NULL));
      char msg[160];
      snprintf(msg, sizeof msg, "selection paths, distribution %d, E %u, k %u", _i, E, k);
      check_routing(s, &d, &b, NULL, msg);
      lb_free(&b);
      moert_scratch_destroy(s);
      moert_runtime_destroy(rt);
    }
}
END_TEST

/* ---- random logits, every kind, every dtype (loop index = dtype) ---- */

START_TEST(softmax_renorm_random) {
  MT_RNG(rng);
  moert_layer_desc d = mkdesc(128, 8, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  random_case(&rng, &d, DTYPES[_i], 97, 128, 13, 2.0, 0, "softmax renorm (Qwen3)");
  d = mkdesc(8, 2, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  random_case(&rng, &d, DTYPES[_i], 64, 64, 3, 2.0, 0, "softmax renorm (Mixtral)");
  d = mkdesc(60, 5, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.5f);
  random_case(&rng, &d, DTYPES[_i], 33, 40, 1, 3.0, 0, "softmax renorm, scale 1.5");
  d = mkdesc(16, 1, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  random_case(&rng, &d, DTYPES[_i], 20, 20, 0, 2.0, 0, "softmax renorm, k 1");
}
END_TEST

START_TEST(softmax_norenorm_random) {
  MT_RNG(rng);
  moert_layer_desc d = mkdesc(64, 8, MOERT_ROUTER_SOFTMAX_TOPK, 0, 0, 0, 1.0f);
  random_case(&rng, &d, DTYPES[_i], 77, 80, 7, 2.0, 0, "softmax no renorm (Qwen2)");
  d = mkdesc(37, 4, MOERT_ROUTER_SOFTMAX_TOPK, 0, 0, 0, 0.0f /* = 1 */);
  random_case(&rng, &d, DTYPES[_i], 50, 50, 2, 2.0, 0, "softmax no renorm, E 37, scale 0");
  d = mkdesc(96, 6, MOERT_ROUTER_SOFTMAX_TOPK, 0, 0, 0, 2.0f);
  random_case(&rng, &d, DTYPES[_i], 30, 31, 33, 2.5, 0, "softmax no renorm, scale 2");
}
END_TEST

START_TEST(sigmoid_group_random) {
  MT_RNG(rng);
  moert_layer_desc d = mkdesc(256, 8, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 8, 4, 2.5f);
  random_case(&rng, &d, DTYPES[_i], 64, 64, 5, 2.0, 1, "sigmoid, 8 groups top 4, scale 2.5 (DeepSeek-V3)");
  d = mkdesc(32, 4, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 4, 2, 2.5f);
  random_case(&rng, &d, DTYPES[_i], 50, 60, 3, 2.0, 1, "sigmoid, 4 groups top 2");
  d = mkdesc(64, 6, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 1, 1, 1.0f);
  random_case(&rng, &d, DTYPES[_i], 40, 40, 0, 2.0, 1, "sigmoid, no groups, bias");
  d = mkdesc(48, 4, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 0, 0, 0, 1.0f);
  random_case(&rng, &d, DTYPES[_i], 40, 40, 9, 2.0, 0, "sigmoid, no groups, no bias, no renorm");
  d = mkdesc(24, 3, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 24, 3, 1.0f);
  random_case(&rng, &d, DTYPES[_i], 40, 40, 2, 2.0, 1, "sigmoid, groups of one");
  d = mkdesc(64, 8, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 0, 8, 3, 2.5f);
  random_case(&rng, &d, DTYPES[_i], 40, 40, 2, 2.0, 1, "sigmoid, groups, no renorm, scale");
}
END_TEST

/* E = 512, k = 16: the limits. */
START_TEST(largest_shapes) {
  MT_RNG(rng);
  moert_layer_desc d = mkdesc(512, 16, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  random_case(&rng, &d, DTYPES[_i], 40, 40, 17, 2.0, 0, "E 512 k 16 softmax renorm");
  d = mkdesc(512, 16, MOERT_ROUTER_SOFTMAX_TOPK, 0, 0, 0, 1.0f);
  random_case(&rng, &d, DTYPES[_i], 40, 40, 1, 2.0, 0, "E 512 k 16 softmax no renorm");
  d = mkdesc(512, 16, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 8, 4, 2.5f);
  random_case(&rng, &d, DTYPES[_i], 40, 40, 3, 2.0, 1, "E 512 k 16 sigmoid groups");
  d = mkdesc(16, 16, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  random_case(&rng, &d, DTYPES[_i], 10, 10, 0, 2.0, 0, "k = E = 16");
}
END_TEST

/* T = max_tokens works, T = max_tokens + 1 does not. */
START_TEST(max_tokens) {
  MT_RNG(rng);
  moert_layer_desc d = mkdesc(64, 4, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  random_case(&rng, &d, MOERT_DTYPE_F32, 300, 300, 2, 2.0, 0, "T = max_tokens");

  moert_runtime *rt = mt_cpu_runtime(1);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, &d, 300, &s));
  logits_buf b;
  lb_init(&b, MOERT_DTYPE_F32, 301, 64, 64);
  for (uint32_t t = 0; t < 301; t++)
    for (uint32_t e = 0; e < 64; e++) lb_set(&b, t, e, mt_normal(&rng));
  moert_route_args a = route_args(&b, 301, NULL);
  MT_ASSERT_STATUS(moert_route(s, &a, NULL), MOERT_ERR_TOO_MANY_TOKENS);
  ck_assert_msg(strlen(moert_last_error()) > 0, "no message for T > max_tokens");
  lb_free(&b);
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
}
END_TEST

/* T = 0: success, an empty view, an empty plan. */
START_TEST(zero_tokens) {
  MT_RNG(rng);
  (void)rng;
  moert_layer_desc d = mkdesc(32, 4, (moert_router_kind)(1 + _i), 1, _i ? 4 : 0, _i ? 2 : 0, 1.0f);
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, &d, 8, &s));
  moert_route_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.num_tokens = 0;
  a.logits_dtype = MOERT_DTYPE_F32;
  a.memory = MOERT_MEMORY_HOST;
  a.logits = NULL; /* no rows to read */
  MT_OK(moert_route(s, &a, NULL));
  moert_routing_view v;
  get_view(s, &v);
  ck_assert_uint_eq(v.num_tokens, 0);
  ck_assert_uint_eq(v.top_k, 4);
  moert_plan_view p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  MT_OK(moert_scratch_plan(s, &p));
  ck_assert_uint_eq(p.num_tokens, 0);
  for (uint32_t e = 0; e <= 32; e++) ck_assert_int_eq(p.offsets[e], 0);
  ck_assert_uint_eq(p.num_blocks, 0);
  /* a non-NULL logits pointer with T = 0 is fine too */
  float one[32] = {0};
  a.logits = one;
  MT_OK(moert_route(s, &a, NULL));
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
}
END_TEST

/* ---- ties: the lower expert index wins ---- */

static void tie_case(moert_layer_desc *d, moert_dtype dt, uint32_t T, const double *rows,
                     const char *what) {
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, d, T, &s));
  logits_buf b;
  lb_init(&b, dt, T, d->num_experts, d->num_experts + 3);
  for (uint32_t t = 0; t < T; t++)
    for (uint32_t e = 0; e < d->num_experts; e++)
      lb_set(&b, t, e, rows[(size_t)t * d->num_experts + e]);
  moert_route_args a = route_args(&b, T, NULL);
  MT_OK(moert_route(s, &a, NULL));
  char msg[160];
  snprintf(msg, sizeof msg, "%s (%s)", what, mt_dtype_name(dt));
  uint32_t amb = check_routing(s, d, &b, NULL, msg);
  ck_assert_uint_eq(amb, 0);
  lb_free(&b);
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
}

START_TEST(ties_all_equal) {
  MT_RNG(rng);
  const moert_dtype dt = DTYPES[_i];
  const uint32_t E = 64, k = 8, T = 4;
  double rows[4 * 64];
  for (uint32_t t = 0; t < T; t++) {
    double v = (t == 0) ? 0.0 : (double)(int)mt_below(&rng, 9) - 4.0;
    for (uint32_t e = 0; e < E; e++) rows[t * E + e] = v;
  }
  moert_layer_desc d = mkdesc(E, k, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  tie_case(&d, dt, T, rows, "all equal, softmax renorm");
  /* explicitly: ids 0..k-1, weights 1/k */
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_scratch *s = NULL;
  for (int kind = 0; kind < 3; kind++) {
    if (kind == 0) d = mkdesc(E, k, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
    if (kind == 1) d = mkdesc(E, k, MOERT_ROUTER_SOFTMAX_TOPK, 0, 0, 0, 1.0f);
    if (kind == 2) d = mkdesc(E, k, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 8, 3, 2.5f);
    MT_OK(moert_scratch_create(rt, &d, T, &s));
    logits_buf b;
    lb_init(&b, dt, T, E, E);
    for (uint32_t t = 0; t < T; t++)
      for (uint32_t e = 0; e < E; e++) lb_set(&b, t, e, rows[t * E + e]);
    moert_route_args a = route_args(&b, T, NULL);
    MT_OK(moert_route(s, &a, NULL));
    moert_routing_view v;
    get_view(s, &v);
    double want = kind == 0 ? 1.0 / k : kind == 1 ? 1.0 / E : 2.5 / k;
    for (uint32_t t = 0; t < T; t++)
      for (uint32_t j = 0; j < k; j++) {
        ck_assert_msg(v.expert_ids[t * k + j] == (int32_t)j,
                      "kind %d %s: all-equal row %u slot %u: expert %d, want %u", kind,
                      mt_dtype_name(dt), t, j, v.expert_ids[t * k + j], j);
        ck_assert_msg(fabs(v.expert_weights[t * k + j] - want) <= 1e-6 * want,
                      "kind %d %s: all-equal row %u slot %u: weight %.9g, want %.9g", kind,
                      mt_dtype_name(dt), t, j, (double)v.expert_weights[t * k + j], want);
      }
    lb_free(&b);
    moert_scratch_destroy(s);
    s = NULL;
  }
  moert_runtime_destroy(rt);
}
END_TEST

/* Rows drawn from a handful of values: ties everywhere, at the k boundary too. */
START_TEST(ties_duplicates) {
  MT_RNG(rng);
  const moert_dtype dt = DTYPES[_i];
  const uint32_t T = 64;
  static const double vals[6] = {-2.0, -1.0, 0.0, -0.0, 0.5, 1.25}; /* -0 ties with +0 */
  struct {
    uint32_t E, k;
    moert_router_kind kind;
    uint32_t renorm, ng, tg;
    float scale;
  } cfgs[] = {
      {32, 4, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f},
      {32, 7, MOERT_ROUTER_SOFTMAX_TOPK, 0, 0, 0, 1.0f},
      {64, 6, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 8, 3, 2.5f},
      {40, 5, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 0, 1, 1, 1.0f},
  };
  for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
    moert_layer_desc d = mkdesc(cfgs[c].E, cfgs[c].k, cfgs[c].kind, cfgs[c].renorm, cfgs[c].ng,
                                cfgs[c].tg, cfgs[c].scale);
    double *rows = mt_alloc(sizeof(double) * T * cfgs[c].E);
    for (uint32_t i = 0; i < T * cfgs[c].E; i++) rows[i] = vals[mt_below(&rng, 6)];
    /* a few rows with exactly k+1 copies of the maximum: the boundary is a tie */
    for (uint32_t t = 0; t < 8; t++) {
      for (uint32_t e = 0; e < cfgs[c].E; e++) rows[t * cfgs[c].E + e] = -1.0;
      for (uint32_t n = 0; n <= cfgs[c].k; n++) rows[t * cfgs[c].E + mt_below(&rng, cfgs[c].E)] = 2.0;
    }
    char what[64];
    snprintf(what, sizeof what, "duplicated values, config %zu", c);
    tie_case(&d, dt, T, rows, what);
    mt_free(rows);
  }
}
END_TEST

/* ---- NaN ---- */

/* Does msg contain the decimal number n as a whole number? */
static int mentions(const char *msg, unsigned n) {
  for (const char *p = msg; *p; p++) {
    if (*p >= '0' && *p <= '9' && (p == msg || p[-1] < '0' || p[-1] > '9')) {
      char *end;
      unsigned long v = strtoul(p, &end, 10);
      if (v == n) return 1;
      p = end - 1;
    }
  }
  return 0;
}

START_TEST(nan_logit) {
  MT_RNG(rng);
  const moert_dtype dt = DTYPES[_i % 3];
  const int sigmoid = _i >= 3;
  const uint32_t E = 64, k = 4, T = 50;
  moert_layer_desc d = sigmoid ? mkdesc(E, k, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 8, 2, 2.5f)
                               : mkdesc(E, k, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, &d, T, &s));
  /* NaN bit patterns: quiet, negative quiet, signalling */
  static const uint32_t f32nan[3] = {0x7fc00000u, 0xffc00001u, 0x7f800001u};
  static const uint16_t bf16nan[3] = {0x7fc0u, 0xffc1u, 0x7f81u};
  static const uint16_t f16nan[3] = {0x7e00u, 0xfe01u, 0x7c01u};
  for (int pat = 0; pat < 3; pat++) {
    logits_buf b;
    lb_init(&b, dt, T, E, E + 2);
    for (uint32_t t = 0; t < T; t++)
      for (uint32_t e = 0; e < E; e++) lb_set(&b, t, e, mt_normal(&rng));
    /* first route a clean batch so the scratch holds a routing */
    moert_route_args a = route_args(&b, T, NULL);
    MT_OK(moert_route(s, &a, NULL));
    uint32_t bad_t = 17 + mt_below(&rng, T - 17), bad_e = mt_below(&rng, E);
    if (bad_e == bad_t) bad_e = (bad_e + 1) % E;
    size_t at = (size_t)bad_t * b.stride + bad_e;
    if (dt == MOERT_DTYPE_F32) memcpy((char *)b.data + at * 4, &f32nan[pat], 4);
    else memcpy((char *)b.data + at * 2, dt == MOERT_DTYPE_BF16 ? &bf16nan[pat] : &f16nan[pat], 2);
    MT_ASSERT_STATUS(moert_route(s, &a, NULL), MOERT_ERR_NAN_LOGIT);
    const char *msg = moert_last_error();
    ck_assert_msg(mentions(msg, bad_t), "NaN at token %u expert %u (%s, pattern %d): message "
                  "\"%s\" does not name the token", bad_t, bad_e, mt_dtype_name(dt), pat, msg);
    /* the failed route leaves nothing to forward or read */
    moert_routing_view v;
    memset(&v, 0, sizeof v);
    v.struct_size = sizeof v;
    MT_ASSERT_STATUS(moert_scratch_routing(s, &v), MOERT_ERR_NOT_ROUTED);
    lb_free(&b);
  }
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
}
END_TEST

/* ---- infinities ---- */

START_TEST(infinities) {
  MT_RNG(rng);
  const moert_dtype dt = DTYPES[_i];
  const uint32_t E = 32, k = 4;
  enum { ROWS = 9 };
  for (int renorm = 0; renorm <= 1; renorm++) {
    moert_layer_desc d = mkdesc(E, k, MOERT_ROUTER_SOFTMAX_TOPK, (uint32_t)renorm, 0, 0, 1.0f);
    moert_runtime *rt = mt_cpu_runtime(1);
    moert_scratch *s = NULL;
    MT_OK(moert_scratch_create(rt, &d, ROWS, &s));
    logits_buf b;
    lb_init(&b, dt, ROWS, E, E + 1);
    for (uint32_t t = 0; t < ROWS; t++)
      for (uint32_t e = 0; e < E; e++) lb_set(&b, t, e, mt_normal(&rng));
    uint32_t p1 = 5 + mt_below(&rng, 20), p2 = p1 + 1 + mt_below(&rng, 6), p3 = mt_below(&rng, 5);
    lb_set(&b, 0, p1, INFINITY);                        /* one +inf: weight 1 on it */
    lb_set(&b, 1, p1, INFINITY);                        /* two +inf: share */
    lb_set(&b, 1, p2, INFINITY);
    for (uint32_t e = 0; e < E; e++) lb_set(&b, 2, e, -INFINITY); /* all -inf: uniform */
    for (uint32_t e = 0; e < E; e++)                    /* -inf except two: the two share it all */
      if (e != p1 && e != p2) lb_set(&b, 3, e, -INFINITY);
    lb_set(&b, 4, p2, -INFINITY);                       /* one -inf among finite ones */
    for (uint32_t e = 0; e < 6; e++) lb_set(&b, 5, 3 * e + 1, INFINITY); /* more +inf than k */
    lb_set(&b, 6, p1, INFINITY);                        /* +inf and -inf in one row */
    lb_set(&b, 6, p3, -INFINITY);
    for (uint32_t e = 0; e < E; e++) lb_set(&b, 7, e, -INFINITY); /* one finite among -inf */
    lb_set(&b, 7, p2, 3.0);
    lb_set(&b, 8, 0, INFINITY);                         /* +inf at expert 0 and E-1 */
    lb_set(&b, 8, E - 1, INFINITY);
    moert_route_args a = route_args(&b, ROWS, NULL);
    MT_OK(moert_route(s, &a, NULL));
    char what[64];
    snprintf(what, sizeof what, "infinities, renormalize %d, %s", renorm, mt_dtype_name(dt));
    check_routing(s, &d, &b, NULL, what);
    /* and spelled out */
    moert_routing_view v;
    get_view(s, &v);
    const int32_t *id = v.expert_ids;
    const float *w = v.expert_weights;
    ck_assert_msg(id[0] == (int32_t)p1 && w[0] == 1.0f && w[1] == 0.0f,
                  "%s: one +inf at %u: ids %d %d, weights %g %g", what, p1, id[0], id[1],
                  (double)w[0], (double)w[1]);
    ck_assert_msg(id[k] == (int32_t)p1 && id[k + 1] == (int32_t)p2 && w[k] == 0.5f &&
                      w[k + 1] == 0.5f && w[k + 2] == 0.0f,
                  "%s: two +inf at %u, %u: ids %d %d, weights %g %g %g", what, p1, p2, id[k],
                  id[k + 1], (double)w[k], (double)w[k + 1], (double)w[k + 2]);
    float uni = renorm ? 1.0f / k : 1.0f / E;
    for (uint32_t j = 0; j < k; j++)
      ck_assert_msg(id[2 * k + j] == (int32_t)j && fabsf(w[2 * k + j] - uni) <= 1e-7f,
                    "%s: all -inf row slot %u: expert %d weight %g, want expert %u weight %g",
                    what, j, id[2 * k + j], (double)w[2 * k + j], j, (double)uni);
    float six = renorm ? 1.0f / k : 1.0f / 6;
    for (uint32_t j = 0; j < k; j++)
      ck_assert_msg(id[5 * k + j] == (int32_t)(3 * j + 1) && fabsf(w[5 * k + j] - six) <= 1e-7f,
                    "%s: six +inf, slot %u: expert %d weight %g, want expert %u weight %g", what,
                    j, id[5 * k + j], (double)w[5 * k + j], 3 * j + 1, (double)six);
    ck_assert_msg(id[7 * k] == (int32_t)p2 && w[7 * k] == 1.0f,
                  "%s: one finite among -inf: expert %d weight %g", what, id[7 * k],
                  (double)w[7 * k]);
    lb_free(&b);
    moert_scratch_destroy(s);
    moert_runtime_destroy(rt);
  }
  /* sigmoid router: sigmoid(+inf) = 1, sigmoid(-inf) = 0 */
  moert_layer_desc d = mkdesc(E, k, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 4, 2, 2.5f);
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, &d, 4, &s));
  logits_buf b;
  lb_init(&b, dt, 4, E, E);
  for (uint32_t t = 0; t < 4; t++)
    for (uint32_t e = 0; e < E; e++) lb_set(&b, t, e, mt_normal(&rng));
  lb_set(&b, 0, 9, INFINITY);
  lb_set(&b, 1, 9, -INFINITY);
  for (uint32_t e = 0; e < E; e++) lb_set(&b, 2, e, (e % 3) ? -INFINITY : INFINITY);
  moert_route_args a = route_args(&b, 4, NULL);
  MT_OK(moert_route(s, &a, NULL));
  check_routing(s, &d, &b, NULL, "infinities, sigmoid router");
  lb_free(&b);
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
}
END_TEST

/* Extreme finite logits: the dtype's largest values (their differences overflow float32 to
 * -inf, so exp gives exactly 0), huge ties, subnormal logits that must still be ordered
 * (a flush-to-zero router would call them ties), tiny differences near 1. */
START_TEST(extreme_values) {
  MT_RNG(rng);
  const moert_dtype dt = DTYPES[_i];
  const double big = dt == MOERT_DTYPE_F32 ? 3.4028234663852886e38
                     : dt == MOERT_DTYPE_BF16 ? 3.3895313892515355e38 : 65504.0;
  const double tiny = dt == MOERT_DTYPE_F16 ? 5.960464477539063e-08 /* f16 subnormal step */
                                             : 1.401298464324817e-45; /* f32 subnormal step */
  const uint32_t E = 32, k = 4;
  enum { ROWS = 7 };
  for (int kind = 0; kind < 3; kind++) {
    moert_layer_desc d = kind == 2 ? mkdesc(E, k, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 4, 2, 2.5f)
                                   : mkdesc(E, k, MOERT_ROUTER_SOFTMAX_TOPK, (uint32_t)kind, 0, 0, 1.0f);
    moert_runtime *rt = mt_cpu_runtime(1);
    moert_scratch *s = NULL;
    MT_OK(moert_scratch_create(rt, &d, ROWS, &s));
    logits_buf b;
    lb_init(&b, dt, ROWS, E, E + 4);
    for (uint32_t e = 0; e < E; e++) {
      lb_set(&b, 0, e, (e % 5 == 3) ? -big : big);           /* the maximum, many times */
      lb_set(&b, 1, e, (e % 7 == 2) ? big / 2 : -big / 2);   /* k+ huge values, rest far below */
      lb_set(&b, 2, e, tiny * (double)mt_below(&rng, 64));   /* subnormal logits, ordered */
      lb_set(&b, 3, e, -tiny * (double)mt_below(&rng, 64));
      lb_set(&b, 4, e, (e & 1) ? big : -big);                /* +-max alternating */
      lb_set(&b, 5, e, 1.0 + (double)mt_below(&rng, 8) / 128.0); /* small steps near 1 */
      lb_set(&b, 6, e, mt_normal(&rng) * (dt == MOERT_DTYPE_F16 ? 1e3 : 1e30)); /* huge spread */
    }
    moert_route_args a = route_args(&b, ROWS, NULL);
    MT_OK(moert_route(s, &a, NULL));
    char what[96];
    snprintf(what, sizeof what, "extreme values, %s, %s",
             kind == 2 ? "sigmoid groups" : kind ? "softmax renorm" : "softmax no renorm",
             mt_dtype_name(dt));
    check_routing(s, &d, &b, NULL, what);
    lb_free(&b);
    moert_scratch_destroy(s);
    moert_runtime_destroy(rt);
  }
}
END_TEST

/* k > E is refused when the scratch is created. */
START_TEST(k_more_than_e) {
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_layer_desc d = mkdesc(8, 9, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  moert_scratch *s = (moert_scratch *)(uintptr_t)0x1234;
  moert_status st = moert_scratch_create(rt, &d, 4, &s);
  ck_assert_msg(st != MOERT_OK, "k 9 > E 8 accepted");
  MT_ASSERT_STATUS(st, MOERT_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_eq(s, (moert_scratch *)(uintptr_t)0x1234);
  ck_assert_msg(strlen(moert_last_error()) > 0, "no message");
  d = mkdesc(4, 5, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 0, 0, 1.0f);
  MT_ASSERT_STATUS(moert_scratch_create(rt, &d, 4, &s), MOERT_ERR_INVALID_ARGUMENT);
  moert_runtime_destroy(rt);
}
END_TEST

/* The routing view: struct contents and that it tracks the latest route. */
START_TEST(routing_view) {
  MT_RNG(rng);
  const uint32_t E = 16, k = 3;
  moert_layer_desc d = mkdesc(E, k, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, &d, 32, &s));
  moert_routing_view v;
  memset(&v, 0, sizeof v);
  v.struct_size = sizeof v;
  MT_ASSERT_STATUS(moert_scratch_routing(s, &v), MOERT_ERR_NOT_ROUTED);
  static const uint32_t Ts[3] = {32, 19, 6};
  for (int r = 0; r < 3; r++) {
    const uint32_t T = Ts[r];
    logits_buf b;
    lb_init(&b, MOERT_DTYPE_F32, T, E, E);
    for (uint32_t t = 0; t < T; t++)
      for (uint32_t e = 0; e < E; e++) lb_set(&b, t, e, 2.0 * mt_normal(&rng));
    moert_route_args a = route_args(&b, T, NULL);
    a.mode = r == 1 ? MOERT_ROUTING_HOST : MOERT_ROUTING_AUTO; /* HOST works on every backend */
    MT_OK(moert_route(s, &a, NULL));
    check_routing(s, &d, &b, NULL, "routing view");
    lb_free(&b);
  }
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
}
END_TEST

/* Caller-supplied routing. */
START_TEST(set_routing) {
  MT_RNG(rng);
  const uint32_t E = 40, k = 6, T = 25;
  moert_layer_desc d = mkdesc(E, k, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f);
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, &d, T, &s));
  int32_t ids[25 * 6], perm[40];
  float w[25 * 6];
  for (uint32_t t = 0; t < T; t++) {
    for (uint32_t e = 0; e < E; e++) perm[e] = (int32_t)e;
    mt_shuffle_i32(&rng, perm, E);
    for (uint32_t j = 0; j < k; j++) {
      ids[t * k + j] = perm[j];
      w[t * k + j] = (float)mt_uniform(&rng, -1.0, 2.0); /* any finite weights */
    }
  }
  MT_OK(moert_set_routing(s, T, ids, w, NULL));
  moert_routing_view v;
  get_view(s, &v);
  ck_assert_uint_eq(v.num_tokens, T);
  ck_assert_uint_eq(v.top_k, k);
  for (uint32_t i = 0; i < T * k; i++) {
    ck_assert_msg(v.expert_ids[i] == ids[i], "pair %u: id %d, set %d", i, v.expert_ids[i], ids[i]);
    ck_assert_msg(memcmp(&v.expert_weights[i], &w[i], 4) == 0, "pair %u: weight %g, set %g", i,
                  (double)v.expert_weights[i], (double)w[i]);
  }
  /* the caller's arrays are not touched */
  int32_t ids_copy[25 * 6];
  memcpy(ids_copy, ids, sizeof ids);
  /* out-of-range and duplicate ids */
  const int32_t bad_vals[4] = {-1, (int32_t)E, (int32_t)E + 100, INT32_MIN};
  for (int b = 0; b < 5; b++) {
    memcpy(ids, ids_copy, sizeof ids);
    uint32_t t = mt_below(&rng, T), j = 1 + mt_below(&rng, k - 1);
    if (b < 4) ids[t * k + j] = bad_vals[b];
    else ids[t * k + j] = ids[t * k + mt_below(&rng, j)];
    int32_t before[25 * 6];
    memcpy(before, ids, sizeof ids);
    MT_ASSERT_STATUS(moert_set_routing(s, T, ids, w, NULL), MOERT_ERR_EXPERT_ID);
    ck_assert_msg(strlen(moert_last_error()) > 0, "no message for a bad id");
    ck_assert_msg(memcmp(before, ids, sizeof ids) == 0, "set_routing wrote the caller's ids");
  }
  /* T = 0 and T > max_tokens */
  MT_OK(moert_set_routing(s, 0, NULL, NULL, NULL));
  get_view(s, &v);
  ck_assert_uint_eq(v.num_tokens, 0);
  memcpy(ids, ids_copy, sizeof ids);
  MT_ASSERT_STATUS(moert_set_routing(s, T + 1, ids, w, NULL), MOERT_ERR_TOO_MANY_TOKENS);
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
}
END_TEST

int main(void) {
  Suite *su = suite_create("router");
  TCase *tc = tcase_create("router");
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, selection_paths, 0, 9);
  tcase_add_loop_test(tc, softmax_renorm_bits, 0, 2);
  tcase_add_loop_test(tc, softmax_renorm_random, 0, 3);
  tcase_add_loop_test(tc, softmax_norenorm_random, 0, 3);
  tcase_add_loop_test(tc, sigmoid_group_random, 0, 3);
  tcase_add_loop_test(tc, largest_shapes, 0, 3);
  tcase_add_test(tc, max_tokens);
  tcase_add_loop_test(tc, zero_tokens, 0, 2);
  tcase_add_loop_test(tc, ties_all_equal, 0, 3);
  tcase_add_loop_test(tc, ties_duplicates, 0, 3);
  tcase_add_loop_test(tc, nan_logit, 0, 6);
  tcase_add_loop_test(tc, infinities, 0, 3);
  tcase_add_loop_test(tc, extreme_values, 0, 3);
  tcase_add_test(tc, k_more_than_e);
  tcase_add_test(tc, routing_view);
  tcase_add_test(tc, set_routing);
  suite_add_tcase(su, tc);
  return mt_run_suite(su);
}
