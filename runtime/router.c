/* router.c — the host router: router logits -> top-k expert ids and weights per token.
 *
 * Every arithmetic step here is mirrored, bit for bit, by the device router in
 * ptx/route.cu: exponentials and sigmoids come from ptx/moert_math.h, sums run in the
 * fixed orders documented below, and this file is compiled with -ffp-contract=off.
 *
 * Selection keeps the k best (value, index) pairs sorted by value descending, ties by
 * index ascending, so the lower expert index always wins a tie.  Scanning experts in
 * increasing index order and inserting only on strictly-greater values gives exactly that.
 */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "../ptx/moert_math.h"

/* Insert (v, e) into the descending list vals/idx of length n (< cap or replacing the
 * last).  Equal values keep their earlier (lower-index) position. */
static inline void topk_insert(float *vals, int32_t *idx, uint32_t n, uint32_t cap, float v,
                               int32_t e) {
  uint32_t pos = n < cap ? n : cap - 1;
  while (pos > 0 && v > vals[pos - 1]) {
    if (pos < cap) {
      vals[pos] = vals[pos - 1];
      idx[pos] = idx[pos - 1];
    }
    pos--;
  }
  vals[pos] = v;
  idx[pos] = e;
}

/* Top-k of row[0..E-1] (values already f32).  Returns the index of a NaN, or -1. */
static int32_t topk_row(const float *row, uint32_t E, uint32_t k, float *vals, int32_t *idx) {
  uint32_t n = 0;
  for (uint32_t e = 0; e < E; e++) {
    float v = row[e];
    if (v != v) return (int32_t)e;
    if (n < k) {
      topk_insert(vals, idx, n, k, v, (int32_t)e);
      n++;
    } else if (v > vals[k - 1]) {
      topk_insert(vals, idx, n, k, v, (int32_t)e);
    }
  }
  return -1;
}

/* The sum of v[0..n-1] in the order a 32-lane warp reduces it: lane l adds v[l], v[l+32],
 * ... in turn, then a butterfly (xor 16, 8, 4, 2, 1).  The device router sums this way. */
static float warp_order_sum(const float *v, uint32_t n) {
  float lane[32];
  for (uint32_t l = 0; l < 32; l++) {
    float s = 0.0f;
    for (uint32_t i = l; i < n; i += 32) s = MOERT_FADD(s, v[i]);
    lane[l] = s;
  }
  for (uint32_t o = 16; o > 0; o >>= 1) {
    float next[32];
    for (uint32_t l = 0; l < 32; l++) next[l] = MOERT_FADD(lane[l], lane[l ^ o]);
    memcpy(lane, next, sizeof lane);
  }
  return lane[0];
}

static void load_row(const void *logits, moert_dtype dtype, uint64_t stride, uint32_t t,
                     uint32_t E, float *dst) {
  size_t es = moert_dtype_size(dtype);
  const unsigned char *row = (const unsigned char *)logits + (size_t)t * stride * es;
  moert_to_f32(row, dtype, dst, E);
}

/* Softmax router.  Renormalised: softmax over the k chosen logits (equal to the full
 * softmax renormalised).  Otherwise: the full-softmax probabilities of the chosen. */
static void softmax_weights(const moert_router_cfg *cfg, const float *row, const float *vals,
                            float *w, float *tmp) {
  const uint32_t k = cfg->top_k, E = cfg->num_experts;
  const float m = vals[0];
  const float pinf = moert_bits_to_float(0x7f800000u);
  if (m == pinf) { /* the +inf logits share all the weight */
    const float *src = cfg->renormalize ? vals : row;
    uint32_t n = cfg->renormalize ? k : E, count = 0;
    for (uint32_t i = 0; i < n; i++) count += src[i] == pinf;
    for (uint32_t j = 0; j < k; j++) w[j] = vals[j] == pinf ? MOERT_FDIV(1.0f, (float)count) : 0.0f;
  } else if (m == -pinf) { /* every logit is -inf: the limit of equal logits, uniform */
    float u = MOERT_FDIV(1.0f, (float)(cfg->renormalize ? k : E));
    for (uint32_t j = 0; j < k; j++) w[j] = u;
  } else {
    float sum;
    if (cfg->renormalize) {
      sum = 0.0f;
      for (uint32_t j = 0; j < k; j++) {
        w[j] = moert_expf(MOERT_FADD(vals[j], -m));
        sum = MOERT_FADD(sum, w[j]);
      }
    } else {
      for (uint32_t e = 0; e < E; e++) tmp[e] = moert_expf(MOERT_FADD(row[e], -m));
      sum = warp_order_sum(tmp, E);
      for (uint32_t j = 0; j < k; j++) w[j] = moert_expf(MOERT_FADD(vals[j], -m));
    }
    for (uint32_t j = 0; j < k; j++) w[j] = MOERT_FDIV(w[j], sum);
  }
  if (cfg->scale != 1.0f)
    for (uint32_t j = 0; j < k; j++) w[j] = MOERT_FMUL(w[j], cfg->scale);
}

/* Sigmoid router with selection bias and group-limited selection (DeepSeek-V3). */
static void sigmoid_group_select(const moert_router_cfg *cfg, const float *row,
                                 const float *bias, float *score, float *choice, float *vals,
                                 int32_t *idx, float *w) {
  const uint32_t E = cfg->num_experts, k = cfg->top_k;
  const float ninf = moert_bits_to_float(0xff800000u);
  for (uint32_t e = 0; e < E; e++) {
    score[e] = moert_sigmoidf(row[e]);
    choice[e] = bias ? MOERT_FADD(score[e], bias[e]) : score[e];
  }
  uint32_t groups = cfg->n_group > 1 ? cfg->n_group : 1;
  if (groups > 1) {
    const uint32_t gs = E / groups;
    float gscore[MOERT_MAX_EXPERTS], gv[MOERT_MAX_EXPERTS];
    int32_t gi[MOERT_MAX_EXPERTS];
    for (uint32_t g = 0; g < groups; g++) {
      float two[2];
      int32_t ti[2];
      uint32_t take = gs < 2 ? gs : 2;
      (void)topk_row(choice + g * gs, gs, take, two, ti);
      gscore[g] = take == 2 ? MOERT_FADD(two[0], two[1]) : two[0];
    }
    (void)topk_row(gscore, groups, cfg->topk_group, gv, gi);
    bool keep[MOERT_MAX_EXPERTS] = {false};
    for (uint32_t j = 0; j < cfg->topk_group; j++) keep[gi[j]] = true;
    for (uint32_t e = 0; e < E; e++)
      if (!keep[e / gs]) choice[e] = ninf;
  }
  (void)topk_row(choice, E, k, vals, idx);
  float sum = 0.0f;
  for (uint32_t j = 0; j < k; j++) {
    w[j] = score[idx[j]];
    sum = MOERT_FADD(sum, w[j]);
  }
  if (cfg->renormalize) {
    float denom = MOERT_FADD(sum, 1e-20f);
    for (uint32_t j = 0; j < k; j++) w[j] = MOERT_FDIV(w[j], denom);
  }
  if (cfg->scale != 1.0f)
    for (uint32_t j = 0; j < k; j++) w[j] = MOERT_FMUL(w[j], cfg->scale);
}

moert_status moert_route_host(const moert_router_cfg *cfg, const void *logits, moert_dtype dtype,
                              uint64_t row_stride, uint32_t num_tokens, const float *bias,
                              int32_t *ids, float *weights) {
  const uint32_t E = cfg->num_experts, k = cfg->top_k;
  float row[MOERT_MAX_EXPERTS], tmp[MOERT_MAX_EXPERTS], tmp2[MOERT_MAX_EXPERTS];
  float vals[MOERT_MAX_EXPERTS];
  for (uint32_t t = 0; t < num_tokens; t++) {
    const float *r;
    if (dtype == MOERT_DTYPE_F32) {
      r = (const float *)logits + (size_t)t * row_stride;
    } else {
      load_row(logits, dtype, row_stride, t, E, row);
      r = row;
    }
    int32_t *id = ids + (size_t)t * k;
    float *w = weights + (size_t)t * k;
    if (cfg->kind == MOERT_ROUTER_SOFTMAX_TOPK) {
      int32_t bad = topk_row(r, E, k, vals, id);
      if (bad >= 0)
        return moert_fail(MOERT_ERR_NAN_LOGIT, "moert_route: logit of token %u, expert %d is NaN",
                          t, bad);
      softmax_weights(cfg, r, vals, w, tmp);
    } else {
      for (uint32_t e = 0; e < E; e++)
        if (r[e] != r[e])
          return moert_fail(MOERT_ERR_NAN_LOGIT,
                            "moert_route: logit of token %u, expert %u is NaN", t, e);
      sigmoid_group_select(cfg, r, bias, tmp, tmp2, vals, id, w);
    }
  }
  return MOERT_OK;
}
