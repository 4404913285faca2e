/* mt_ref.c — float64 references: the router (both kinds) and the SwiGLU MoE forward.
 *
 * Router semantics (abi/moert.h, DESIGN.md, transformers' modeling code):
 *  SOFTMAX_TOPK: the k largest logits (ties: lower index first).  Renormalised, the weights
 *    are a softmax over the k chosen logits (= full softmax divided by the chosen sum);
 *    otherwise the full-softmax probabilities.  Limits: if any logit is +inf, the +inf
 *    logits share the weight equally (among the chosen when renormalised, among all E
 *    otherwise) and the rest get 0; a row of -inf is uniform: 1/k renormalised, 1/E not.
 *  SIGMOID_GROUP_TOPK: score = sigmoid(logit); choice = score + bias.  With n_group > 1 the
 *    experts are split into n_group consecutive groups, a group scores the sum of its two
 *    best choices (its best, for groups of one), the topk_group best groups are kept and the
 *    experts of the others cannot be chosen.  The k best choices are picked; the weights are
 *    the plain scores, divided by (their sum + 1e-20) when renormalised.
 *  Both: weights times the routed scaling factor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moert_test.h"

void mt_router_from_desc(mt_router *r, const moert_layer_desc *d) {
  r->E = d->num_experts;
  r->k = d->top_k;
  r->kind = d->router;
  r->renormalize = d->renormalize != 0;
  r->n_group = d->n_group;
  r->topk_group = d->topk_group;
  r->scale = d->routed_scaling_factor == 0.0f ? 1.0 : (double)d->routed_scaling_factor;
}

static double gap(double a, double b) { return a == b ? 0.0 : a - b; }

/* Picks the best n of the candidates (sel, ok) in order: value desc, index asc. */
static uint32_t pick(const double *sel, const unsigned char *ok, uint32_t E, uint32_t n,
                     int32_t *out) {
  unsigned char taken[512];
  memset(taken, 0, sizeof taken);
  uint32_t got = 0;
  for (; got < n; got++) {
    int32_t best = -1;
    for (uint32_t e = 0; e < E; e++) {
      if ((ok && !ok[e]) || taken[e]) continue;
      if (best < 0 || sel[e] > sel[best]) best = (int32_t)e;
    }
    if (best < 0) break;
    taken[best] = 1;
    out[got] = best;
  }
  return got;
}

/* The distance from b to the nearest value (among ok) that is not equal to b: a float32
 * implementation may merge such a value into a tie with b (then the lower index wins) or
 * split a tie, where it is closer than float32 rounding. */
static double nearest_distinct(const double *v, const unsigned char *ok, uint32_t n, double b) {
  double m = INFINITY;
  for (uint32_t i = 0; i < n; i++) {
    if ((ok && !ok[i]) || v[i] == b) continue;
    double d = fabs(v[i] - b);
    if (d < m) m = d;
  }
  return m;
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

void mt_ref_weights_for_ids(const mt_router *r, const double *x, const int32_t *ids, double *w) {
  const uint32_t E = r->E, k = r->k;
  if (r->kind == MOERT_ROUTER_SOFTMAX_TOPK) {
    double m = -INFINITY;
    for (uint32_t e = 0; e < E; e++)
      if (x[e] > m) m = x[e];
    if (m == INFINITY) {
      uint32_t n = 0;
      if (r->renormalize) {
        for (uint32_t j = 0; j < k; j++) n += x[ids[j]] == INFINITY;
      } else {
        for (uint32_t e = 0; e < E; e++) n += x[e] == INFINITY;
      }
      for (uint32_t j = 0; j < k; j++) w[j] = x[ids[j]] == INFINITY ? 1.0 / n : 0.0;
    } else if (m == -INFINITY) {
      for (uint32_t j = 0; j < k; j++) w[j] = 1.0 / (r->renormalize ? k : E);
    } else {
      double denom = 0.0;
      if (r->renormalize) {
        for (uint32_t j = 0; j < k; j++) denom += exp(x[ids[j]] - m);
      } else {
        for (uint32_t e = 0; e < E; e++) denom += exp(x[e] - m);
      }
      for (uint32_t j = 0; j < k; j++) w[j] = exp(x[ids[j]] - m) / denom;
    }
  } else {
    double sum = 0.0;
    for (uint32_t j = 0; j < k; j++) {
      w[j] = sigmoid(x[ids[j]]);
      sum += w[j];
    }
    if (r->renormalize)
      for (uint32_t j = 0; j < k; j++) w[j] /= sum + 1e-20;
  }
  for (uint32_t j = 0; j < k; j++) w[j] *= r->scale;
}

void mt_ref_route_row(const mt_router *r, const double *x, const double *bias,
                      mt_route_row *o) {
  const uint32_t E = r->E, k = r->k;
  double sel[512];
  unsigned char ok[512];
  o->nan_expert = -1;
  for (uint32_t e = 0; e < E; e++)
    if (isnan(x[e])) {
      o->nan_expert = (int32_t)e;
      return;
    }
  o->set_margin = INFINITY;
  o->order_margin = INFINITY;
  for (uint32_t e = 0; e < E; e++) {
    ok[e] = 1;
    if (r->kind == MOERT_ROUTER_SOFTMAX_TOPK)
      sel[e] = x[e];
    else
      sel[e] = sigmoid(x[e]) + (bias ? bias[e] : 0.0);
  }
  if (r->kind == MOERT_ROUTER_SIGMOID_GROUP_TOPK && r->n_group > 1) {
    const uint32_t G = r->n_group, gs = E / G;
    double gscore[512];
    for (uint32_t g = 0; g < G; g++) {
      int32_t two[2];
      uint32_t n = pick(sel + g * gs, NULL, gs, gs < 2 ? gs : 2, two);
      gscore[g] = n == 2 ? sel[g * gs + two[0]] + sel[g * gs + two[1]] : sel[g * gs + two[0]];
    }
    int32_t order[512];
    uint32_t n = pick(gscore, NULL, G, G, order);
    (void)n;
    if (r->topk_group < G) {
      double m = nearest_distinct(gscore, NULL, G, gscore[order[r->topk_group - 1]]);
      if (m < o->set_margin) o->set_margin = m;
    }
    for (uint32_t j = r->topk_group; j < G; j++)
      for (uint32_t e = 0; e < gs; e++) ok[order[j] * gs + e] = 0;
  }
  int32_t chosen[513] = {0};
  uint32_t n = pick(sel, ok, E, k + 1 <= E ? k + 1 : k, chosen);
  for (uint32_t j = 0; j < k; j++) {
    o->ids[j] = chosen[j];
    o->choice[j] = sel[chosen[j]];
    if (j + 1 < k) {
      double m = gap(sel[chosen[j]], sel[chosen[j + 1]]);
      if (m > 0 && m < o->order_margin) o->order_margin = m;
    }
  }
  if (n > k) {
    double m = nearest_distinct(sel, ok, E, sel[chosen[k - 1]]);
    if (m < o->set_margin) o->set_margin = m;
  }
  mt_ref_weights_for_ids(r, x, o->ids, o->w);
}

/* ---- forward ---- */

static double dot(const double *a, const double *b, uint32_t n) {
  double s = 0.0;
  for (uint32_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* rows: the tokens (indices into x) this expert runs on, with their combine weights.
 * Adds w * down(silu(gate x) * up x) to y for each. */
static void ref_expert(const void *wg, const void *wu, const void *wd, moert_dtype dt,
                       uint32_t H, uint32_t I, const double *x, const uint32_t *tok,
                       const double *wt, uint32_t n, double *y, double *hbuf, double *row) {
  const size_t es = mt_dtype_size(dt);
  for (uint32_t i = 0; i < I; i++) {
    mt_decode((const char *)wg + (size_t)i * H * es, dt, H, row);
    for (uint32_t r = 0; r < n; r++) hbuf[(size_t)r * I + i] = dot(row, x + (size_t)tok[r] * H, H);
  }
  for (uint32_t r = 0; r < n; r++)
    for (uint32_t i = 0; i < I; i++) {
      double g = hbuf[(size_t)r * I + i];
      hbuf[(size_t)r * I + i] = g / (1.0 + exp(-g));
    }
  for (uint32_t i = 0; i < I; i++) {
    mt_decode((const char *)wu + (size_t)i * H * es, dt, H, row);
    for (uint32_t r = 0; r < n; r++) hbuf[(size_t)r * I + i] *= dot(row, x + (size_t)tok[r] * H, H);
  }
  for (uint32_t h = 0; h < H; h++) {
    mt_decode((const char *)wd + (size_t)h * I * es, dt, I, row);
    for (uint32_t r = 0; r < n; r++)
      y[(size_t)tok[r] * H + h] += wt[r] * dot(row, hbuf + (size_t)r * I, I);
  }
}

void mt_ref_forward(const mt_ref_layer *L, uint32_t T, const double *x, const int32_t *ids,
                    const double *w, double *y) {
  const uint32_t H = L->H, k = L->k;
  memset(y, 0, sizeof(double) * (size_t)T * H);
  if (T == 0) return;
  uint32_t maxI = L->I > L->Is ? L->I : L->Is;
  uint32_t *tok = malloc(sizeof(uint32_t) * ((size_t)T * k + T));
  double *wt = malloc(sizeof(double) * ((size_t)T * k + T));
  double *hbuf = malloc(sizeof(double) * (size_t)(T * k > T ? T * k : T) * maxI);
  double *row = malloc(sizeof(double) * (H > maxI ? H : maxI));
  if (!tok || !wt || !hbuf || !row) abort();
  for (uint32_t e = 0; e < L->E; e++) {
    uint32_t n = 0;
    for (uint32_t t = 0; t < T; t++)
      for (uint32_t j = 0; j < k; j++)
        if (ids[(size_t)t * k + j] == (int32_t)e) {
          tok[n] = t;
          wt[n] = w[(size_t)t * k + j];
          n++;
        }
    if (n) ref_expert(L->gate[e], L->up[e], L->down[e], L->wdtype, H, L->I, x, tok, wt, n, y,
                      hbuf, row);
  }
  if (L->Is > 0) {
    for (uint32_t t = 0; t < T; t++) {
      tok[t] = t;
      wt[t] = 1.0;
      if (L->shared_gate == MOERT_SHARED_GATE_SIGMOID) {
        mt_decode(L->sgate_w, L->wdtype, H, row);
        wt[t] = 1.0 / (1.0 + exp(-dot(row, x + (size_t)t * H, H)));
      }
    }
    ref_expert(L->sgate, L->sup, L->sdown, L->wdtype, H, L->Is, x, tok, wt, T, y, hbuf, row);
  }
  free(tok);
  free(wt);
  free(hbuf);
  free(row);
}

/* ---- compare ---- */

void mt_compare(const void *got, moert_dtype dtype, uint64_t stride, const double *ref,
                uint32_t T, uint32_t H, double rel_tol, double rms_tol, mt_cmp *o) {
  double num = 0.0, den = 0.0;
  memset(o, 0, sizeof *o);
  o->first_nonfinite = (size_t)-1;
  if (stride == 0) stride = H;
  for (uint32_t t = 0; t < T; t++) {
    double rms = 0.0;
    for (uint32_t h = 0; h < H; h++) rms += ref[(size_t)t * H + h] * ref[(size_t)t * H + h];
    rms = sqrt(rms / H);
    for (uint32_t h = 0; h < H; h++) {
      double g = mt_load(got, dtype, (size_t)t * stride + h), r = ref[(size_t)t * H + h];
      size_t flat = (size_t)t * H + h;
      if (!isfinite(g)) {
        if (o->nonfinite++ == 0) o->first_nonfinite = flat;
        if (o->max_err < INFINITY) {
          o->max_err = INFINITY;
          o->worst = flat;
          o->worst_got = g;
          o->worst_ref = r;
        }
        continue;
      }
      double d = g - r;
      num += d * d;
      den += r * r;
      double tol = rel_tol * fabs(r) + rms_tol * rms;
      double ratio = tol > 0 ? fabs(d) / tol : (d == 0 ? 0 : INFINITY);
      if (ratio > o->max_err) {
        o->max_err = ratio;
        o->worst = flat;
        o->worst_got = g;
        o->worst_ref = r;
      }
    }
  }
  o->rel_l2 = o->nonfinite ? INFINITY : (den > 0 ? sqrt(num / den) : sqrt(num));
}
