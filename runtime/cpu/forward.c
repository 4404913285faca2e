/* forward.c — the CPU backend's expert forward: the reference every other backend is
 * tested against, and the embedded default where there is no GPU.
 *
 * The plan sorts the T*k (token, slot) rows by expert.  Rows are processed in chunks of at
 * most P consecutive sorted rows (bounded memory for any T); a chunk is a list of segments,
 * one per expert it touches, and runs in three passes over the thread pool:
 *   A  h[row, i]     = silu(x[tok] . gate_e[i]) * (x[tok] . up_e[i])   items: (segment, 16 i)
 *   B  ypair[row, n] = h[row] . down_e[n]                              items: (segment, 64 n)
 *   C  yacc[tok]    += w[row] * ypair[row]    rows in sorted order      items: 256 columns
 * Each weight row is converted to float32 once and dotted with all of the segment's rows,
 * so the weights are streamed once per chunk.  The shared expert is one more segment over
 * all tokens.  Every output element is computed by one item in a fixed order, so the
 * result is the same bits for any number of threads.  Accumulation is float32.
 * With AVX2 + FMA (dots_fma) the dot products run in register blocks of up to 4 rows x 4
 * weight rows; without, in dot_f32.  The two give different bits (an FMA rounds once), each
 * the same for any number of threads and any blocking. */
#include <math.h>
#include <string.h>

#include "../internal.h"

enum { ROWS_A = 16, ROWS_B = 64, COLS_C = 256, TOKENS_PREP = 8 };

typedef struct cpu_seg {
  const void *wg, *wu, *wd; /* [inter, H], [inter, H], [H, inter] */
  uint32_t inter;
  uint32_t row0;            /* first row in the chunk's h / ypair */
  uint32_t nrows;
  const int32_t *tokens;    /* token of each row */
  const float *weights;     /* combine weight of each row */
} cpu_seg;

typedef struct cpu_fwd {
  moert_scratch *s;
  const moert_forward_args *args;
  const moert_experts *ex;
  uint32_t H, T, nsegs;
  uint32_t hstride; /* row length of h: max(I, Is) */
  uint32_t wstride; /* floats per weight-row buffer: max(H, I, Is) */
  size_t wes, aes; /* weight / activation element sizes */
  cpu_seg *segs;
  uint32_t *prefix;
  bool fma;             /* the AVX2 + FMA kernels (same bits for any thread count) */
  const float **xrows;  /* [workers][xrows_cap] the rows a worker dots with */
  float *dots;          /* [workers][4][xrows_cap] their results */
  uint32_t xrows_cap;
} cpu_fwd;

/* a . b in float32 with a fixed summation order (16 partial sums), so results do not
 * depend on the thread that computes them. */
#if defined(__SSE2__)
#include <emmintrin.h>
static inline float dot_f32(const float *restrict a, const float *restrict b, uint32_t n) {
  __m128 s0 = _mm_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  uint32_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm_add_ps(s0, _mm_mul_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)));
    s1 = _mm_add_ps(s1, _mm_mul_ps(_mm_loadu_ps(a + i + 4), _mm_loadu_ps(b + i + 4)));
    s2 = _mm_add_ps(s2, _mm_mul_ps(_mm_loadu_ps(a + i + 8), _mm_loadu_ps(b + i + 8)));
    s3 = _mm_add_ps(s3, _mm_mul_ps(_mm_loadu_ps(a + i + 12), _mm_loadu_ps(b + i + 12)));
  }
  __m128 s = _mm_add_ps(_mm_add_ps(s0, s1), _mm_add_ps(s2, s3));
  s = _mm_add_ps(s, _mm_shuffle_ps(s, s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_ps(s, _mm_shuffle_ps(s, s, _MM_SHUFFLE(2, 3, 0, 1)));
  float tail = 0.0f;
  for (; i < n; i++) tail += a[i] * b[i];
  return _mm_cvtss_f32(s) + tail;
}
#else
static inline float dot_f32(const float *restrict a, const float *restrict b, uint32_t n) {
  float acc[16] = {0};
  uint32_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (uint32_t j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
  float tail = 0.0f;
  for (; i < n; i++) tail += a[i] * b[i];
  for (uint32_t w = 8; w > 0; w >>= 1)
    for (uint32_t j = 0; j < w; j++) acc[j] += acc[j + w];
  return acc[0] + tail;
}
#endif

/* With AVX2 and FMA: dot products of one or two weight rows with 4 token rows at a time
 * (each weight vector loaded once for the 4 tokens, 8 independent accumulators).  Every
 * dot product has the same arithmetic whatever block it falls in (one 8-lane FMA
 * accumulator over the row in order, the lanes summed (0+4, 1+5, ...), then the tail), so
 * a token's result does not depend on its neighbours or on the number of threads. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MOERT_CPU_FMA 1
#include <immintrin.h>
__attribute__((target("avx2,fma"))) static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
/* the part of a . b past the last whole vector of 8 */
__attribute__((target("avx2,fma"))) static inline float dot_tail(const float *a, const float *b,
                                                                uint32_t c, uint32_t n) {
  float t = 0.0f;
  for (; c < n; c++) t = __builtin_fmaf(a[c], b[c], t);
  return t;
}
/* out[m][r] = x_r . w[m] for the rows x_r = xs[r], r < nrows, and the nw (1, 2 or 4) weight
 * rows w[m]: blocks of TB rows x WB weight rows, one accumulator each (TB * WB <= 8). */
#define DOT_BLOCK(TB, WB)                                                                      \
  __attribute__((target("avx2,fma"))) static inline void dot_block_##TB##x##WB(               \
      const float *const *xs, const float *const *w, uint32_t nv, uint32_t n, float **out,     \
      uint32_t r) {                                                                            \
    __m256 acc[TB][WB];                                                                        \
    for (int t = 0; t < TB; t++)                                                               \
      for (int m = 0; m < WB; m++) acc[t][m] = _mm256_setzero_ps();                            \
    for (uint32_t c = 0; c < nv; c += 8) {                                                     \
      __m256 wv[WB];                                                                           \
      for (int m = 0; m < WB; m++) wv[m] = _mm256_loadu_ps(w[m] + c);                          \
      for (int t = 0; t < TB; t++) {                                                           \
        const __m256 x = _mm256_loadu_ps(xs[r + t] + c);                                       \
        for (int m = 0; m < WB; m++) acc[t][m] = _mm256_fmadd_ps(x, wv[m], acc[t][m]);         \
      }                                                                                        \
    }                                                                                          \
    for (int t = 0; t < TB; t++)                                                               \
      for (int m = 0; m < WB; m++)                                                             \
        out[m][r + t] = hsum8(acc[t][m]) + dot_tail(xs[r + t], w[m], nv, n);                   \
  }
DOT_BLOCK(4, 1)
DOT_BLOCK(4, 2)
DOT_BLOCK(2, 4)
DOT_BLOCK(1, 1)
DOT_BLOCK(1, 2)
DOT_BLOCK(1, 4)
#undef DOT_BLOCK
__attribute__((target("avx2,fma"))) static void dots_fma(const float *const *xs, uint32_t nrows,
                                                        const float *const *w, uint32_t nw,
                                                        uint32_t n, float **out) {
  const uint32_t nv = n & ~7u;
  uint32_t r = 0;
  if (nw == 4) {
    /* 4 tokens at a time as two halves of 2 weight rows each, then pairs, then one */
    for (; r + 4 <= nrows; r += 4) {
      dot_block_4x2(xs, w, nv, n, out, r);
      dot_block_4x2(xs, w + 2, nv, n, out + 2, r);
    }
    for (; r + 2 <= nrows; r += 2) dot_block_2x4(xs, w, nv, n, out, r);
    for (; r < nrows; r++) dot_block_1x4(xs, w, nv, n, out, r);
  } else if (nw == 2) {
    for (; r + 4 <= nrows; r += 4) dot_block_4x2(xs, w, nv, n, out, r);
    for (; r < nrows; r++) dot_block_1x2(xs, w, nv, n, out, r);
  } else {
    for (; r + 4 <= nrows; r += 4) dot_block_4x1(xs, w, nv, n, out, r);
    for (; r < nrows; r++) dot_block_1x1(xs, w, nv, n, out, r);
  }
}
#endif

static inline float silu(float g) { return g / (1.0f + expf(-g)); }

/* Which segment an item belongs to: prefix[s] <= item < prefix[s+1]. */
static uint32_t seg_of(const cpu_fwd *f, uint32_t item) {
  uint32_t lo = 0, hi = f->nsegs;
  while (hi - lo > 1) {
    uint32_t mid = (lo + hi) / 2;
    if (f->prefix[mid] <= item) lo = mid; else hi = mid;
  }
  return lo;
}

static void set_prefix(cpu_fwd *f, uint32_t rows_per_item, bool over_inter) {
  uint32_t acc = 0;
  for (uint32_t s = 0; s < f->nsegs; s++) {
    f->prefix[s] = acc;
    uint32_t n = over_inter ? f->segs[s].inter : f->H;
    acc += (n + rows_per_item - 1) / rows_per_item;
  }
  f->prefix[f->nsegs] = acc;
}

/* Pass 0: x -> float32, zero the accumulator, the shared expert's gate. */
static void pass_prep(void *ctx, uint32_t item, uint32_t worker) {
  cpu_fwd *f = ctx;
  moert_cpu_buffers *b = &f->s->cpu;
  const moert_layer_desc *d = &f->s->desc;
  (void)worker;
  uint32_t t0 = item * TOKENS_PREP, t1 = t0 + TOKENS_PREP < f->T ? t0 + TOKENS_PREP : f->T;
  uint64_t xs = f->args->x_row_stride ? f->args->x_row_stride : f->H;
  for (uint32_t t = t0; t < t1; t++) {
    float *xf = b->xf + (size_t)t * f->H;
    moert_to_f32((const unsigned char *)f->args->x + (size_t)t * xs * f->aes, d->act_dtype, xf,
                 f->H);
    memset(b->yacc + (size_t)t * f->H, 0, (size_t)f->H * sizeof(float));
    float scale = 1.0f;
    if (d->shared_intermediate && d->shared_gate == MOERT_SHARED_GATE_SIGMOID) {
      float acc = 0.0f;
      for (uint32_t i = 0; i < f->H; i++)
        acc += xf[i] * moert_load_f32(f->ex->shared_expert_gate, d->weight_dtype, i);
      scale = 1.0f / (1.0f + expf(-acc));
    }
    b->shared_scale[t] = scale;
  }
}

static void pass_gate_up(void *ctx, uint32_t item, uint32_t worker) {
  cpu_fwd *f = ctx;
  moert_cpu_buffers *b = &f->s->cpu;
  const uint32_t s = seg_of(f, item), H = f->H;
  const cpu_seg *g = &f->segs[s];
  const uint32_t i0 = (item - f->prefix[s]) * ROWS_A;
  const uint32_t i1 = i0 + ROWS_A < g->inter ? i0 + ROWS_A : g->inter;
  float *wg = b->wbuf + (size_t)worker * 4 * f->wstride;
  float *wu = wg + f->wstride;
  const moert_dtype wdt = f->s->desc.weight_dtype;
#ifdef MOERT_CPU_FMA
  if (f->fma) { /* gate and up of two rows i, i + 1 at a time */
    const float **xs = f->xrows + (size_t)worker * f->xrows_cap;
    float *dv = f->dots + (size_t)worker * 4 * f->xrows_cap;
    float *wg1 = wu + f->wstride, *wu1 = wg1 + f->wstride;
    for (uint32_t r = 0; r < g->nrows; r++) xs[r] = b->xf + (size_t)g->tokens[r] * H;
    for (uint32_t i = i0; i < i1; i += 2) {
      const bool two = i + 1 < i1;
      const float *w[4] = {wg, wu, wg1, wu1};
      float *out[4] = {dv, dv + f->xrows_cap, dv + 2 * f->xrows_cap, dv + 3 * f->xrows_cap};
      for (uint32_t m = 0; m < (two ? 4u : 2u); m++)
        moert_to_f32((const unsigned char *)(m % 2 ? g->wu : g->wg) + (size_t)(i + m / 2) * H * f->wes,
                     wdt, (float *)w[m], H);
      dots_fma(xs, g->nrows, w, two ? 4 : 2, H, out);
      for (uint32_t q = 0; q < (two ? 2u : 1u); q++)
        for (uint32_t r = 0; r < g->nrows; r++)
          b->h[(size_t)(g->row0 + r) * f->hstride + i + q] =
              silu(out[2 * q][r]) * out[2 * q + 1][r];
    }
    return;
  }
#endif
  for (uint32_t i = i0; i < i1; i++) {
    moert_to_f32((const unsigned char *)g->wg + (size_t)i * H * f->wes, wdt, wg, H);
    moert_to_f32((const unsigned char *)g->wu + (size_t)i * H * f->wes, wdt, wu, H);
    for (uint32_t r = 0; r < g->nrows; r++) {
      const float *x = b->xf + (size_t)g->tokens[r] * H;
      float gv = dot_f32(x, wg, H), uv = dot_f32(x, wu, H);
      b->h[(size_t)(g->row0 + r) * f->hstride + i] = silu(gv) * uv;
    }
  }
}

static void pass_down(void *ctx, uint32_t item, uint32_t worker) {
  cpu_fwd *f = ctx;
  moert_cpu_buffers *b = &f->s->cpu;
  const uint32_t s = seg_of(f, item), H = f->H;
  const cpu_seg *g = &f->segs[s];
  const uint32_t n0 = (item - f->prefix[s]) * ROWS_B, n1 = n0 + ROWS_B < H ? n0 + ROWS_B : H;
  float *wd = b->wbuf + (size_t)worker * 4 * f->wstride;
#ifdef MOERT_CPU_FMA
  if (f->fma) { /* four weight rows at a time */
    const float **hs = f->xrows + (size_t)worker * f->xrows_cap;
    float *dv = f->dots + (size_t)worker * 4 * f->xrows_cap;
    for (uint32_t r = 0; r < g->nrows; r++) hs[r] = b->h + (size_t)(g->row0 + r) * f->hstride;
    for (uint32_t n = n0; n < n1; n += 4) {
      const uint32_t nw = n1 - n >= 4 ? 4 : n1 - n >= 2 ? 2 : 1;
      const float *w[4];
      float *out[4];
      for (uint32_t m = 0; m < nw; m++) {
        w[m] = wd + (size_t)m * f->wstride;
        out[m] = dv + (size_t)m * f->xrows_cap;
        moert_to_f32((const unsigned char *)g->wd + (size_t)(n + m) * g->inter * f->wes,
                     f->s->desc.weight_dtype, (float *)w[m], g->inter);
      }
      dots_fma(hs, g->nrows, w, nw, g->inter, out);
      for (uint32_t r = 0; r < g->nrows; r++)
        for (uint32_t m = 0; m < nw; m++)
          b->ypair[(size_t)(g->row0 + r) * H + n + m] = out[m][r];
      if (nw < 4 && n + nw < n1) n -= 4 - nw; /* 3 left: 2, then 1 */
    }
    return;
  }
#endif
  for (uint32_t n = n0; n < n1; n++) {
    moert_to_f32((const unsigned char *)g->wd + (size_t)n * g->inter * f->wes,
                 f->s->desc.weight_dtype, wd, g->inter);
    for (uint32_t r = 0; r < g->nrows; r++)
      b->ypair[(size_t)(g->row0 + r) * H + n] =
          dot_f32(b->h + (size_t)(g->row0 + r) * f->hstride, wd, g->inter);
  }
}

static void pass_combine(void *ctx, uint32_t item, uint32_t worker) {
  cpu_fwd *f = ctx;
  moert_cpu_buffers *b = &f->s->cpu;
  (void)worker;
  const uint32_t H = f->H, c0 = item * COLS_C, c1 = c0 + COLS_C < H ? c0 + COLS_C : H;
  for (uint32_t s = 0; s < f->nsegs; s++) {
    const cpu_seg *g = &f->segs[s];
    for (uint32_t r = 0; r < g->nrows; r++) {
      const float w = g->weights[r];
      float *y = b->yacc + (size_t)g->tokens[r] * H;
      const float *p = b->ypair + (size_t)(g->row0 + r) * H;
      for (uint32_t c = c0; c < c1; c++) y[c] += w * p[c];
    }
  }
}

/* Pass D: y = yacc or y + yacc, in the activation dtype. */
static void pass_store(void *ctx, uint32_t item, uint32_t worker) {
  cpu_fwd *f = ctx;
  moert_cpu_buffers *b = &f->s->cpu;
  const moert_dtype adt = f->s->desc.act_dtype;
  uint64_t ys = f->args->y_row_stride ? f->args->y_row_stride : f->H;
  float *tmp = b->wbuf + (size_t)worker * 4 * f->wstride;
  uint32_t t0 = item * TOKENS_PREP, t1 = t0 + TOKENS_PREP < f->T ? t0 + TOKENS_PREP : f->T;
  for (uint32_t t = t0; t < t1; t++) {
    unsigned char *y = (unsigned char *)f->args->y + (size_t)t * ys * f->aes;
    float *acc = b->yacc + (size_t)t * f->H;
    if (f->args->accumulate) {
      moert_to_f32(y, adt, tmp, f->H);
      for (uint32_t c = 0; c < f->H; c++) tmp[c] += acc[c];
      acc = tmp;
    }
    moert_from_f32(acc, adt, y, f->H);
  }
}

static void run_chunk(cpu_fwd *f) {
  moert_pool *pool = f->s->runtime->pool;
  set_prefix(f, ROWS_A, true);
  moert_pool_run(pool, pass_gate_up, f, f->prefix[f->nsegs]);
  set_prefix(f, ROWS_B, false);
  moert_pool_run(pool, pass_down, f, f->prefix[f->nsegs]);
  moert_pool_run(pool, pass_combine, f, (f->H + COLS_C - 1) / COLS_C);
}

moert_status moert_cpu_forward(moert_scratch *s, const moert_forward_args *args) {
  const moert_layer_desc *d = &s->desc;
  const moert_experts *ex = args->experts;
  moert_cpu_buffers *b = &s->cpu;
  cpu_fwd f = {0};
  f.s = s;
  f.args = args;
  f.ex = ex;
  f.H = d->hidden;
  f.T = s->num_tokens;
  f.hstride = d->intermediate > d->shared_intermediate ? d->intermediate : d->shared_intermediate;
  f.wstride = f.hstride > f.H ? f.hstride : f.H;
  f.wes = moert_dtype_size(d->weight_dtype);
  f.aes = moert_dtype_size(d->act_dtype);
  f.segs = b->segs;
  f.prefix = b->seg_items;
  f.xrows = b->xrows;
  f.dots = b->dots;
  f.xrows_cap = b->chunk_rows;
#ifdef MOERT_CPU_FMA
  f.fma = b->xrows && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  if (f.T == 0) return MOERT_OK;
  moert_pool *pool = s->runtime->pool;
  const uint32_t token_items = (f.T + TOKENS_PREP - 1) / TOKENS_PREP;
  moert_pool_run(pool, pass_prep, &f, token_items);

  const moert_plan *pl = &s->plan;
  const uint32_t rows = f.T * d->top_k, P = b->chunk_rows;
  for (uint32_t r = 0; r < rows; r++) b->row_weight[r] = s->weights[pl->sorted_pair[r]];
  /* routed experts: chunks of P sorted rows, one segment per expert touched */
  uint32_t e = 0;
  for (uint32_t c0 = 0; c0 < rows; c0 += P) {
    const uint32_t c1 = c0 + P < rows ? c0 + P : rows;
    f.nsegs = 0;
    while (e < d->num_experts && (uint32_t)pl->offsets[e] < c1) {
      uint32_t lo = (uint32_t)pl->offsets[e] > c0 ? (uint32_t)pl->offsets[e] : c0;
      uint32_t hi = (uint32_t)pl->offsets[e + 1] < c1 ? (uint32_t)pl->offsets[e + 1] : c1;
      if (hi > lo) {
        cpu_seg *g = &f.segs[f.nsegs++];
        g->wg = ex->gate[e];
        g->wu = ex->up[e];
        g->wd = ex->down[e];
        g->inter = d->intermediate;
        g->row0 = lo - c0;
        g->nrows = hi - lo;
        g->tokens = pl->packed_token + lo;
        g->weights = b->row_weight + lo;
      }
      if ((uint32_t)pl->offsets[e + 1] > c1) break; /* the expert goes on in the next chunk */
      e++;
    }
    run_chunk(&f);
  }
  /* the shared expert: every token, weight = its gate (or 1) */
  if (d->shared_intermediate) {
    for (uint32_t c0 = 0; c0 < f.T; c0 += P) {
      cpu_seg *g = &f.segs[0];
      f.nsegs = 1;
      g->wg = ex->shared_gate;
      g->wu = ex->shared_up;
      g->wd = ex->shared_down;
      g->inter = d->shared_intermediate;
      g->row0 = 0;
      g->nrows = c0 + P < f.T ? P : f.T - c0;
      g->tokens = b->identity + c0;
      g->weights = b->shared_scale + c0;
      run_chunk(&f);
    }
  }
  moert_pool_run(pool, pass_store, &f, token_items);
  return MOERT_OK;
}

void moert_cpu_scratch_carve(moert_scratch *s, moert_arena *a, uint32_t workers) {
  const moert_layer_desc *d = &s->desc;
  moert_cpu_buffers *b = &s->cpu;
  const uint32_t T = s->max_tokens ? s->max_tokens : 1, H = d->hidden;
  const uint32_t hs = d->intermediate > d->shared_intermediate ? d->intermediate
                                                               : d->shared_intermediate;
  const uint32_t ws = hs > H ? hs : H;
  uint64_t rows = (uint64_t)T * d->top_k;
  b->chunk_rows = (uint32_t)(rows < 2048 ? rows : 2048);
  b->workers = workers;
  b->xf = moert_arena_take(a, (size_t)T * H * sizeof(float));
  b->yacc = moert_arena_take(a, (size_t)T * H * sizeof(float));
  b->h = moert_arena_take(a, (size_t)b->chunk_rows * hs * sizeof(float));
  b->ypair = moert_arena_take(a, (size_t)b->chunk_rows * H * sizeof(float));
  b->shared_scale = moert_arena_take(a, (size_t)T * sizeof(float));
  b->row_weight = moert_arena_take(a, (size_t)rows * sizeof(float));
  b->identity = moert_arena_take(a, (size_t)T * sizeof(int32_t));
  b->wbuf = moert_arena_take(a, (size_t)workers * 4 * ws * sizeof(float));
  b->segs = moert_arena_take(a, (size_t)(d->num_experts + 1) * sizeof(cpu_seg));
  b->xrows = moert_arena_take(a, (size_t)workers * b->chunk_rows * sizeof(float *));
  b->dots = moert_arena_take(a, (size_t)workers * 4 * b->chunk_rows * sizeof(float));
  b->seg_items = moert_arena_take(a, (size_t)(d->num_experts + 2) * sizeof(uint32_t));
  if (b->identity)
    for (uint32_t t = 0; t < T; t++) b->identity[t] = (int32_t)t;
}
