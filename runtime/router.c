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
  uint32_t pos = n < cap ? n : cap - 1; /* when full, the last entry falls off */
  while (pos > 0 && v > vals[pos - 1]) {
    vals[pos] = vals[pos - 1];
    idx[pos] = idx[pos - 1];
    pos--;
  }
  vals[pos] = v;
  idx[pos] = e;
}

/* Top-k of row[0..E-1] by plain scan (values already f32).  Returns the index of a NaN,
 * or -1. */
static int32_t topk_row_scan(const float *row, uint32_t E, uint32_t k, float *vals,
                             int32_t *idx) {
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

#if defined(__SSE2__)
#include <emmintrin.h>
/* The smallest, over the 4 lanes, of each lane's d-th largest value (see topk_row). */
static inline __attribute__((always_inline)) __m128 cell_threshold(const float *row, uint32_t nv,
                                                                   const uint32_t d) {
  __m128 m[4];
  for (uint32_t j = 0; j < d; j++) m[j] = _mm_set1_ps(-__builtin_inff());
  for (uint32_t v = 0; v < nv; v++) {
    __m128 x = _mm_loadu_ps(row + 4 * v);
    for (uint32_t j = 0; j < d; j++) {
      __m128 hi = _mm_max_ps(m[j], x);
      x = _mm_min_ps(m[j], x);
      m[j] = hi;
    }
  }
  __m128 lo = m[d - 1];
  lo = _mm_min_ps(lo, _mm_shuffle_ps(lo, lo, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm_min_ps(lo, _mm_shuffle_ps(lo, lo, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* The same result with SSE2.  Each of the 4 lanes of the row's 4-wide vectors is a cell;
 * keeping the d = ceil(k/4) largest values of every cell (a min/max network) gives 4d >= k
 * distinct elements, so the smallest of the cells' d-th values is a threshold no larger
 * than the k-th largest value.  Only elements at or above it (about 1.7k on random logits,
 * instead of E) go through the insertion, in index order, so ties still go to the lower
 * index. */
static int32_t topk_row(const float *row, uint32_t E, uint32_t k, float *vals, int32_t *idx) {
  const uint32_t nv = E / 4, d = (k + 3) / 4;
  if (nv < d || nv < 2) return topk_row_scan(row, E, k, vals, idx);
  /* A NaN may make the threshold wrong, but "not less than" is true for a NaN, so every
   * NaN becomes a candidate and is reported below. */
  __m128 lo;
  switch (d) { /* a constant depth, so the network stays in registers */
  case 1: lo = cell_threshold(row, nv, 1); break;
  case 2: lo = cell_threshold(row, nv, 2); break;
  case 3: lo = cell_threshold(row, nv, 3); break;
  default: lo = cell_threshold(row, nv, 4); break;
  }
  /* the candidates as a bit set (up to 512 bits), then visited in index order */
  uint64_t bits[MOERT_MAX_EXPERTS / 64];
  bits[(E - 1) / 64] = 0; /* the tail's word, when no vector reaches it */
  for (uint32_t w = 0; w < (nv + 15) / 16; w++) {
    uint64_t word = 0;
    const uint32_t v1 = 16 * w + 16 < nv ? 16 * w + 16 : nv;
    for (uint32_t v = 16 * w; v < v1; v++)
      word |= (uint64_t)_mm_movemask_ps(_mm_cmpnlt_ps(_mm_loadu_ps(row + 4 * v), lo))
              << (4 * (v - 16 * w));
    bits[w] = word;
  }
  for (uint32_t e = 4 * nv; e < E; e++) bits[e >> 6] |= 1ull << (e & 63);
  uint32_t n = 0;
  for (uint32_t w = 0; w < (E + 63) / 64; w++) {
    uint64_t set = bits[w];
    while (set) {
      const uint32_t e = 64 * w + (uint32_t)__builtin_ctzll(set);
      set &= set - 1;
      const float x = row[e];
      if (x != x) return (int32_t)e; /* the first NaN: candidates come in index order */
      if (n < k) {
        topk_insert(vals, idx, n, k, x, (int32_t)e);
        n++;
      } else if (x > vals[k - 1]) {
        topk_insert(vals, idx, n, k, x, (int32_t)e);
      }
    }
  }
  return -1;
}
#else
#define topk_row topk_row_scan
#endif

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

/* out[i] = moert_expf(in[i] + add) for i < n (in/out padded to a multiple of 4).  The SSE2
 * version performs the same IEEE operations as moert_expf lane by lane (no FMA), so the
 * bits are the same; the scale by 2^n is split in two exact steps, which rounds once
 * like the scalar code does. */
#if defined(__SSE2__)
static inline __m128 expf4(__m128 x) {
  const __m128 magic = _mm_set1_ps(12582912.0f);
  __m128 n = _mm_add_ps(_mm_add_ps(_mm_mul_ps(x, _mm_set1_ps(1.44269502162933349609375f)), magic),
                        _mm_set1_ps(-12582912.0f));
  __m128 r = _mm_sub_ps(x, _mm_mul_ps(n, _mm_set1_ps(0.693145751953125f)));
  r = _mm_sub_ps(r, _mm_mul_ps(n, _mm_set1_ps(1.428606765330187045e-06f)));
  __m128 p = _mm_set1_ps(1.98412698412698413e-4f);
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.38888888888888889e-3f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(8.33333333333333333e-3f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(4.16666666666666667e-2f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.66666666666666667e-1f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(0.5f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f));
  /* n is in [-150, 128] wherever the result is used: 2^n = 2^(n>>1) * 2^(n - (n>>1)) */
  __m128i ni = _mm_cvttps_epi32(n);
  __m128i n1 = _mm_srai_epi32(ni, 1), n2 = _mm_sub_epi32(ni, n1);
  const __m128i bias = _mm_set1_epi32(127);
  p = _mm_mul_ps(p, _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(n1, bias), 23)));
  p = _mm_mul_ps(p, _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(n2, bias), 23)));
  const __m128 big = _mm_cmpgt_ps(x, _mm_set1_ps(88.72283935546875f));
  const __m128 tiny = _mm_cmplt_ps(x, _mm_set1_ps(-103.97208404541015625f));
  const __m128 nan = _mm_cmpunord_ps(x, x);
  p = _mm_andnot_ps(_mm_or_ps(big, tiny), p);
  p = _mm_or_ps(p, _mm_and_ps(big, _mm_set1_ps(__builtin_inff())));
  return _mm_or_ps(_mm_andnot_ps(nan, p), _mm_and_ps(nan, x));
}
static void exp_shift(const float *in, float add, float *out, uint32_t n) {
  const __m128 a = _mm_set1_ps(add);
  for (uint32_t i = 0; i < n; i += 4) _mm_storeu_ps(out + i, expf4(_mm_add_ps(_mm_loadu_ps(in + i), a)));
}
/* out[i] = in[i] / d for i < n; in has room for whole vectors, out is written exactly */
static void div_array(const float *in, float d, float *out, uint32_t n) {
  const __m128 dv = _mm_set1_ps(d);
  uint32_t i = 0;
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(out + i, _mm_div_ps(_mm_loadu_ps(in + i), dv));
  for (; i < n; i++) out[i] = MOERT_FDIV(in[i], d);
}
static void sigmoid_array(const float *in, float *out, uint32_t n) {
  const __m128 one = _mm_set1_ps(1.0f), sign = _mm_set1_ps(-0.0f);
  for (uint32_t i = 0; i < n; i += 4)
    _mm_storeu_ps(out + i, _mm_div_ps(one, _mm_add_ps(one, expf4(_mm_xor_ps(_mm_loadu_ps(in + i), sign)))));
}
#else
static void div_array(const float *in, float d, float *out, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) out[i] = MOERT_FDIV(in[i], d);
}
static void exp_shift(const float *in, float add, float *out, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) out[i] = moert_expf(MOERT_FADD(in[i], add));
}
static void sigmoid_array(const float *in, float *out, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) out[i] = moert_sigmoidf(in[i]);
}
#endif

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
    /* vals has room past k (its capacity is E rounded up), so whole vectors are safe */
    float ex[MOERT_MAX_TOP_K];
    float sum = 0.0f;
    exp_shift(vals, -m, ex, (k + 3) & ~3u);
    if (cfg->renormalize) {
      for (uint32_t j = 0; j < k; j++) sum = MOERT_FADD(sum, ex[j]);
    } else {
      exp_shift(row, -m, tmp, (E + 3) & ~3u);
      sum = warp_order_sum(tmp, E);
    }
    div_array(ex, sum, w, k);
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
  sigmoid_array(row, score, (E + 3) & ~3u);
  for (uint32_t e = 0; e < E; e++) choice[e] = bias ? MOERT_FADD(score[e], bias[e]) : score[e];
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
  /* rows are read in whole vectors of 4: a row of E % 4 != 0 is copied and zero-padded */
  float row[MOERT_MAX_EXPERTS], tmp[MOERT_MAX_EXPERTS], tmp2[MOERT_MAX_EXPERTS];
  float vals[MOERT_MAX_EXPERTS];
  for (uint32_t j = k; j < ((k + 3) & ~3u); j++) vals[j] = 0.0f; /* the vector exp's padding */
  for (uint32_t e = E; e < ((E + 3) & ~3u); e++) row[e] = 0.0f;
  for (uint32_t t = 0; t < num_tokens; t++) {
    const float *r;
    if (dtype == MOERT_DTYPE_F32 && E % 4 == 0) {
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
