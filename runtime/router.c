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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MOERT_ROUTER_AVX2 1
#include <immintrin.h>
/* compact_lanes[m]: the lanes set in the 8-bit mask m, in increasing order, then zeros */
static const uint8_t compact_lanes[256][8] = {
    {0,0,0,0,0,0,0,0}, {0,0,0,0,0,0,0,0}, {1,0,0,0,0,0,0,0}, {0,1,0,0,0,0,0,0}, {2,0,0,0,0,0,0,0}, {0,2,0,0,0,0,0,0}, {1,2,0,0,0,0,0,0}, {0,1,2,0,0,0,0,0},
    {3,0,0,0,0,0,0,0}, {0,3,0,0,0,0,0,0}, {1,3,0,0,0,0,0,0}, {0,1,3,0,0,0,0,0}, {2,3,0,0,0,0,0,0}, {0,2,3,0,0,0,0,0}, {1,2,3,0,0,0,0,0}, {0,1,2,3,0,0,0,0},
    {4,0,0,0,0,0,0,0}, {0,4,0,0,0,0,0,0}, {1,4,0,0,0,0,0,0}, {0,1,4,0,0,0,0,0}, {2,4,0,0,0,0,0,0}, {0,2,4,0,0,0,0,0}, {1,2,4,0,0,0,0,0}, {0,1,2,4,0,0,0,0},
    {3,4,0,0,0,0,0,0}, {0,3,4,0,0,0,0,0}, {1,3,4,0,0,0,0,0}, {0,1,3,4,0,0,0,0}, {2,3,4,0,0,0,0,0}, {0,2,3,4,0,0,0,0}, {1,2,3,4,0,0,0,0}, {0,1,2,3,4,0,0,0},
    {5,0,0,0,0,0,0,0}, {0,5,0,0,0,0,0,0}, {1,5,0,0,0,0,0,0}, {0,1,5,0,0,0,0,0}, {2,5,0,0,0,0,0,0}, {0,2,5,0,0,0,0,0}, {1,2,5,0,0,0,0,0}, {0,1,2,5,0,0,0,0},
    {3,5,0,0,0,0,0,0}, {0,3,5,0,0,0,0,0}, {1,3,5,0,0,0,0,0}, {0,1,3,5,0,0,0,0}, {2,3,5,0,0,0,0,0}, {0,2,3,5,0,0,0,0}, {1,2,3,5,0,0,0,0}, {0,1,2,3,5,0,0,0},
    {4,5,0,0,0,0,0,0}, {0,4,5,0,0,0,0,0}, {1,4,5,0,0,0,0,0}, {0,1,4,5,0,0,0,0}, {2,4,5,0,0,0,0,0}, {0,2,4,5,0,0,0,0}, {1,2,4,5,0,0,0,0}, {0,1,2,4,5,0,0,0},
    {3,4,5,0,0,0,0,0}, {0,3,4,5,0,0,0,0}, {1,3,4,5,0,0,0,0}, {0,1,3,4,5,0,0,0}, {2,3,4,5,0,0,0,0}, {0,2,3,4,5,0,0,0}, {1,2,3,4,5,0,0,0}, {0,1,2,3,4,5,0,0},
    {6,0,0,0,0,0,0,0}, {0,6,0,0,0,0,0,0}, {1,6,0,0,0,0,0,0}, {0,1,6,0,0,0,0,0}, {2,6,0,0,0,0,0,0}, {0,2,6,0,0,0,0,0}, {1,2,6,0,0,0,0,0}, {0,1,2,6,0,0,0,0},
    {3,6,0,0,0,0,0,0}, {0,3,6,0,0,0,0,0}, {1,3,6,0,0,0,0,0}, {0,1,3,6,0,0,0,0}, {2,3,6,0,0,0,0,0}, {0,2,3,6,0,0,0,0}, {1,2,3,6,0,0,0,0}, {0,1,2,3,6,0,0,0},
    {4,6,0,0,0,0,0,0}, {0,4,6,0,0,0,0,0}, {1,4,6,0,0,0,0,0}, {0,1,4,6,0,0,0,0}, {2,4,6,0,0,0,0,0}, {0,2,4,6,0,0,0,0}, {1,2,4,6,0,0,0,0}, {0,1,2,4,6,0,0,0},
    {3,4,6,0,0,0,0,0}, {0,3,4,6,0,0,0,0}, {1,3,4,6,0,0,0,0}, {0,1,3,4,6,0,0,0}, {2,3,4,6,0,0,0,0}, {0,2,3,4,6,0,0,0}, {1,2,3,4,6,0,0,0}, {0,1,2,3,4,6,0,0},
    {5,6,0,0,0,0,0,0}, {0,5,6,0,0,0,0,0}, {1,5,6,0,0,0,0,0}, {0,1,5,6,0,0,0,0}, {2,5,6,0,0,0,0,0}, {0,2,5,6,0,0,0,0}, {1,2,5,6,0,0,0,0}, {0,1,2,5,6,0,0,0},
    {3,5,6,0,0,0,0,0}, {0,3,5,6,0,0,0,0}, {1,3,5,6,0,0,0,0}, {0,1,3,5,6,0,0,0}, {2,3,5,6,0,0,0,0}, {0,2,3,5,6,0,0,0}, {1,2,3,5,6,0,0,0}, {0,1,2,3,5,6,0,0},
    {4,5,6,0,0,0,0,0}, {0,4,5,6,0,0,0,0}, {1,4,5,6,0,0,0,0}, {0,1,4,5,6,0,0,0}, {2,4,5,6,0,0,0,0}, {0,2,4,5,6,0,0,0}, {1,2,4,5,6,0,0,0}, {0,1,2,4,5,6,0,0},
    {3,4,5,6,0,0,0,0}, {0,3,4,5,6,0,0,0}, {1,3,4,5,6,0,0,0}, {0,1,3,4,5,6,0,0}, {2,3,4,5,6,0,0,0}, {0,2,3,4,5,6,0,0}, {1,2,3,4,5,6,0,0}, {0,1,2,3,4,5,6,0},
    {7,0,0,0,0,0,0,0}, {0,7,0,0,0,0,0,0}, {1,7,0,0,0,0,0,0}, {0,1,7,0,0,0,0,0}, {2,7,0,0,0,0,0,0}, {0,2,7,0,0,0,0,0}, {1,2,7,0,0,0,0,0}, {0,1,2,7,0,0,0,0},
    {3,7,0,0,0,0,0,0}, {0,3,7,0,0,0,0,0}, {1,3,7,0,0,0,0,0}, {0,1,3,7,0,0,0,0}, {2,3,7,0,0,0,0,0}, {0,2,3,7,0,0,0,0}, {1,2,3,7,0,0,0,0}, {0,1,2,3,7,0,0,0},
    {4,7,0,0,0,0,0,0}, {0,4,7,0,0,0,0,0}, {1,4,7,0,0,0,0,0}, {0,1,4,7,0,0,0,0}, {2,4,7,0,0,0,0,0}, {0,2,4,7,0,0,0,0}, {1,2,4,7,0,0,0,0}, {0,1,2,4,7,0,0,0},
    {3,4,7,0,0,0,0,0}, {0,3,4,7,0,0,0,0}, {1,3,4,7,0,0,0,0}, {0,1,3,4,7,0,0,0}, {2,3,4,7,0,0,0,0}, {0,2,3,4,7,0,0,0}, {1,2,3,4,7,0,0,0}, {0,1,2,3,4,7,0,0},
    {5,7,0,0,0,0,0,0}, {0,5,7,0,0,0,0,0}, {1,5,7,0,0,0,0,0}, {0,1,5,7,0,0,0,0}, {2,5,7,0,0,0,0,0}, {0,2,5,7,0,0,0,0}, {1,2,5,7,0,0,0,0}, {0,1,2,5,7,0,0,0},
    {3,5,7,0,0,0,0,0}, {0,3,5,7,0,0,0,0}, {1,3,5,7,0,0,0,0}, {0,1,3,5,7,0,0,0}, {2,3,5,7,0,0,0,0}, {0,2,3,5,7,0,0,0}, {1,2,3,5,7,0,0,0}, {0,1,2,3,5,7,0,0},
    {4,5,7,0,0,0,0,0}, {0,4,5,7,0,0,0,0}, {1,4,5,7,0,0,0,0}, {0,1,4,5,7,0,0,0}, {2,4,5,7,0,0,0,0}, {0,2,4,5,7,0,0,0}, {1,2,4,5,7,0,0,0}, {0,1,2,4,5,7,0,0},
    {3,4,5,7,0,0,0,0}, {0,3,4,5,7,0,0,0}, {1,3,4,5,7,0,0,0}, {0,1,3,4,5,7,0,0}, {2,3,4,5,7,0,0,0}, {0,2,3,4,5,7,0,0}, {1,2,3,4,5,7,0,0}, {0,1,2,3,4,5,7,0},
    {6,7,0,0,0,0,0,0}, {0,6,7,0,0,0,0,0}, {1,6,7,0,0,0,0,0}, {0,1,6,7,0,0,0,0}, {2,6,7,0,0,0,0,0}, {0,2,6,7,0,0,0,0}, {1,2,6,7,0,0,0,0}, {0,1,2,6,7,0,0,0},
    {3,6,7,0,0,0,0,0}, {0,3,6,7,0,0,0,0}, {1,3,6,7,0,0,0,0}, {0,1,3,6,7,0,0,0}, {2,3,6,7,0,0,0,0}, {0,2,3,6,7,0,0,0}, {1,2,3,6,7,0,0,0}, {0,1,2,3,6,7,0,0},
    {4,6,7,0,0,0,0,0}, {0,4,6,7,0,0,0,0}, {1,4,6,7,0,0,0,0}, {0,1,4,6,7,0,0,0}, {2,4,6,7,0,0,0,0}, {0,2,4,6,7,0,0,0}, {1,2,4,6,7,0,0,0}, {0,1,2,4,6,7,0,0},
    {3,4,6,7,0,0,0,0}, {0,3,4,6,7,0,0,0}, {1,3,4,6,7,0,0,0}, {0,1,3,4,6,7,0,0}, {2,3,4,6,7,0,0,0}, {0,2,3,4,6,7,0,0}, {1,2,3,4,6,7,0,0}, {0,1,2,3,4,6,7,0},
    {5,6,7,0,0,0,0,0}, {0,5,6,7,0,0,0,0}, {1,5,6,7,0,0,0,0}, {0,1,5,6,7,0,0,0}, {2,5,6,7,0,0,0,0}, {0,2,5,6,7,0,0,0}, {1,2,5,6,7,0,0,0}, {0,1,2,5,6,7,0,0},
    {3,5,6,7,0,0,0,0}, {0,3,5,6,7,0,0,0}, {1,3,5,6,7,0,0,0}, {0,1,3,5,6,7,0,0}, {2,3,5,6,7,0,0,0}, {0,2,3,5,6,7,0,0}, {1,2,3,5,6,7,0,0}, {0,1,2,3,5,6,7,0},
    {4,5,6,7,0,0,0,0}, {0,4,5,6,7,0,0,0}, {1,4,5,6,7,0,0,0}, {0,1,4,5,6,7,0,0}, {2,4,5,6,7,0,0,0}, {0,2,4,5,6,7,0,0}, {1,2,4,5,6,7,0,0}, {0,1,2,4,5,6,7,0},
    {3,4,5,6,7,0,0,0}, {0,3,4,5,6,7,0,0}, {1,3,4,5,6,7,0,0}, {0,1,3,4,5,6,7,0}, {2,3,4,5,6,7,0,0}, {0,2,3,4,5,6,7,0}, {1,2,3,4,5,6,7,0}, {0,1,2,3,4,5,6,7},
};

/* exp of 8 lanes: the operations of expf4 (and so of moert_expf) lane by lane. */
__attribute__((target("avx2"))) static inline __m256 expf8(__m256 x) {
  const __m256 magic = _mm256_set1_ps(MOERT_EXP_MAGIC);
  __m256 n = _mm256_add_ps(
      _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(MOERT_EXP_LOG2E)), magic),
      _mm256_set1_ps(-MOERT_EXP_MAGIC));
  __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(MOERT_EXP_LN2_HI)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(MOERT_EXP_LN2_LO)));
  __m256 p = _mm256_set1_ps(MOERT_EXP_C7);
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(MOERT_EXP_C6));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(MOERT_EXP_C5));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(MOERT_EXP_C4));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(MOERT_EXP_C3));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(MOERT_EXP_C2));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvttps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  p = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23)));
  p = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23)));
  const __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(MOERT_EXP_HI), _CMP_GT_OQ);
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(MOERT_EXP_LO), _CMP_LT_OQ);
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  p = _mm256_andnot_ps(_mm256_or_ps(big, tiny), p);
  p = _mm256_or_ps(p, _mm256_and_ps(big, _mm256_set1_ps(__builtin_inff())));
  return _mm256_or_ps(_mm256_andnot_ps(nan, p), _mm256_and_ps(nan, x));
}

/* One compare-exchange stage of a sorting network on the 8 lanes of V against the
 * permutation P of them: the lanes set in `hi` keep the larger value. */
#define CX8(V, P, hi)                                                                          \
  do {                                                                                         \
    const __m256 p_ = (P);                                                                     \
    (V) = _mm256_blend_ps(_mm256_min_ps((V), p_), _mm256_max_ps((V), p_), (hi));              \
  } while (0)
/* Bitonic sort of 8 lanes, descending (lane 0 largest) or ascending: stages (block 2,
 * distance 1), (4, 2), (4, 1), (8, 4), (8, 2), (8, 1); below the last block size the blocks
 * alternate direction, so the lanes that keep the larger value are 0,3,4,7 / 0,1,6,7 /
 * 0,2,5,7, then 0-3 / 0,1,4,5 / 0,2,4,6 (descending; the complements ascending). */
#define SORT8(V, desc)                                                                         \
  do {                                                                                         \
    CX8(V, _mm256_permute_ps(V, 0xB1), (desc) ? 0x99 : 0x66);                                  \
    CX8(V, _mm256_permute_ps(V, 0x4E), (desc) ? 0xC3 : 0x3C);                                  \
    CX8(V, _mm256_permute_ps(V, 0xB1), (desc) ? 0xA5 : 0x5A);                                  \
    CX8(V, _mm256_permute2f128_ps(V, V, 1), (desc) ? 0x0F : 0xF0);                             \
    CX8(V, _mm256_permute_ps(V, 0x4E), (desc) ? 0x33 : 0xCC);                                  \
    CX8(V, _mm256_permute_ps(V, 0xB1), (desc) ? 0x55 : 0xAA);                                  \
  } while (0)

/* The largest of the 8 lanes of v, in every lane. */
__attribute__((target("avx2"))) static inline __m256 hmax8(__m256 v) {
  v = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 1));
  v = _mm256_max_ps(v, _mm256_shuffle_ps(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm256_max_ps(v, _mm256_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* The candidates of a row's top k, k <= 8, for rows of whole 8-float vectors (E >= 16).
 * No branch depends on the data in the common case, so fresh logits cost what repeated
 * ones do:
 *  1. the 2 largest values of each of 8 cells (lane l holds experts l, l+8, ...): 16
 *     tracked elements;
 *  2. theta = the k-th largest of the 16: the two cells' lists sorted (one descending, one
 *     ascending), their lane-wise maximum is the top 8 as a bitonic sequence, sorted, lane
 *     k-1.  At least k elements are >= theta, so every element of the top k is; on random
 *     logits about 8.7 elements are;
 *  3. those candidates, compacted in index order (a permutation per 8-lane mask) into
 *     cv (values, -inf past the last) and ci (experts);
 *  4. each candidate's rank = the number of candidates strictly greater (r0: candidates
 *     0-7, r1: 8-15; m0/m1 mark the real ones).  When no two candidates are equal the ranks
 *     are distinct (their sum tells) and ranks 0..k-1 are the answer.
 * Returns false for ties, a NaN or more than 16 candidates: the general path decides.
 * *lane_max: the 8 cells' maxima (the row's maximum is theirs). */
__attribute__((target("avx2,popcnt"), always_inline)) static inline bool
topk_candidates_avx2(const float *row, uint32_t E, uint32_t k, float *cv, int32_t *ci,
                     __m256i *r0, __m256i *r1, __m256i *m0, __m256i *m1, __m256 *lane_max) {
  const uint32_t nv = E / 8;
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  __m256 A = ninf, B = ninf;
  for (uint32_t v = 0; v < nv; v++) {
    const __m256 x = _mm256_loadu_ps(row + 8 * v);
    B = _mm256_max_ps(B, _mm256_min_ps(A, x));
    A = _mm256_max_ps(A, x);
  }
  *lane_max = A;
  __m256 a = A, b = B;
  SORT8(a, 1);
  SORT8(b, 0);
  __m256 top = _mm256_max_ps(a, b); /* the 8 largest of the 16, bitonic */
  CX8(top, _mm256_permute2f128_ps(top, top, 1), 0x0F);
  CX8(top, _mm256_permute_ps(top, 0x4E), 0x33);
  CX8(top, _mm256_permute_ps(top, 0xB1), 0x55);
  const __m256 th = _mm256_permutevar8x32_ps(top, _mm256_set1_epi32((int)k - 1));
  /* candidates: not less than theta (so a NaN is one, and a NaN theta takes all) */
  uint32_t C = 0;
  for (uint32_t v = 0; v < nv; v++) {
    const __m256 x = _mm256_loadu_ps(row + 8 * v);
    const int m = _mm256_movemask_ps(_mm256_cmp_ps(x, th, _CMP_NLT_UQ));
    const __m256i p = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)compact_lanes[m]));
    _mm256_storeu_ps(cv + C, _mm256_permutevar8x32_ps(x, p));
    _mm256_storeu_si256((__m256i *)(ci + C), _mm256_add_epi32(p, _mm256_set1_epi32((int)(8 * v))));
    C += (uint32_t)__builtin_popcount((unsigned)m);
  }
  if (C > 16) return false;
  _mm256_storeu_ps(cv + C, ninf);
  _mm256_storeu_ps(cv + C + 8, ninf);
  const __m256 V0 = _mm256_load_ps(cv), V1 = _mm256_load_ps(cv + 8);
  if (_mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(V0, V0, _CMP_UNORD_Q),
                                      _mm256_cmp_ps(V1, V1, _CMP_UNORD_Q))))
    return false;
  __m256i q0 = _mm256_setzero_si256(), q1 = q0;
  for (int i = 0; i < 16; i++) {
    const __m256 t = _mm256_broadcast_ss(cv + i);
    q0 = _mm256_sub_epi32(q0, _mm256_castps_si256(_mm256_cmp_ps(t, V0, _CMP_GT_OQ)));
    q1 = _mm256_sub_epi32(q1, _mm256_castps_si256(_mm256_cmp_ps(t, V1, _CMP_GT_OQ)));
  }
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i cC = _mm256_set1_epi32((int)C);
  *m0 = _mm256_cmpgt_epi32(cC, iota);
  *m1 = _mm256_cmpgt_epi32(cC, _mm256_add_epi32(iota, _mm256_set1_epi32(8)));
  *r0 = q0;
  *r1 = q1;
  const __m256i s8 = _mm256_add_epi32(_mm256_and_si256(q0, *m0), _mm256_and_si256(q1, *m1));
  __m128i sm = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
  sm = _mm_add_epi32(sm, _mm_shuffle_epi32(sm, _MM_SHUFFLE(1, 0, 3, 2)));
  sm = _mm_add_epi32(sm, _mm_shuffle_epi32(sm, _MM_SHUFFLE(2, 3, 0, 1)));
  return (uint32_t)_mm_cvtsi128_si32(sm) == C * (C - 1) / 2; /* else a tie */
}
#undef SORT8
#undef CX8

/* Top-k for k <= 8 with AVX2 (topk_candidates_avx2), for rows of whole 8-float vectors; the
 * same result as topk_row, which it calls when the candidates cannot decide. */
__attribute__((target("avx2,popcnt"))) static int32_t topk_row_avx2(const float *row, uint32_t E,
                                                                    uint32_t k, float *vals,
                                                                    int32_t *idx) {
  float cv[MOERT_MAX_EXPERTS + 16] __attribute__((aligned(32)));
  int32_t ci[MOERT_MAX_EXPERTS + 16] __attribute__((aligned(32)));
  __m256i r0, r1, m0, m1;
  __m256 amax;
  if (!topk_candidates_avx2(row, E, k, cv, ci, &r0, &r1, &m0, &m1, &amax))
    return topk_row(row, E, k, vals, idx); /* it also reports the first NaN */
  /* rank -> slot; ranks >= k and the padding go to the spare slot k */
  const __m256i kk = _mm256_set1_epi32((int)k);
  int32_t rk[16] __attribute__((aligned(32)));
  _mm256_store_si256((__m256i *)rk, _mm256_blendv_epi8(kk, _mm256_min_epi32(r0, kk), m0));
  _mm256_store_si256((__m256i *)(rk + 8), _mm256_blendv_epi8(kk, _mm256_min_epi32(r1, kk), m1));
  float ov[MOERT_MAX_TOP_K + 1];
  int32_t oi[MOERT_MAX_TOP_K + 1];
  for (int j = 0; j < 16; j++) {
    ov[rk[j]] = cv[j];
    oi[rk[j]] = ci[j];
  }
  memcpy(vals, ov, k * sizeof *vals);
  memcpy(idx, oi, k * sizeof *idx);
  return -1;
}

/* The whole softmax router for one row, renormalised, k <= 8, E a multiple of 8 (16..512),
 * f32 (E = 8, as Mixtral, has its own function below: this one is slower there than even
 * the general path, 2.4 against 1.9 us for 32 rows): the ids and weights
 * softmax_weights(topk_row(...)) gives, bit for bit, in one pass with no data-dependent
 * branch in the common case.  The candidates and their ranks as topk_row_avx2's; then
 * their exponentials (8 lanes at a time) and, for j < k, the candidate of rank j, summed in
 * rank order, and the divisions.  Returns false when it cannot decide (more than 16
 * candidates, a tie among them, a NaN, an infinite maximum): the caller then takes the
 * general path, which also reports a NaN. */
__attribute__((target("avx2,popcnt"))) static bool route_row_softmax_avx2(const float *row,
                                                                         uint32_t E, uint32_t k,
                                                                         float scale, int32_t *id,
                                                                         float *w) {
  float cv[MOERT_MAX_EXPERTS + 16] __attribute__((aligned(32)));
  int32_t ci[MOERT_MAX_EXPERTS + 16] __attribute__((aligned(32)));
  __m256i r0, r1, m0, m1;
  __m256 amax;
  if (!topk_candidates_avx2(row, E, k, cv, ci, &r0, &r1, &m0, &m1, &amax)) return false;
  const float rmax = _mm256_cvtss_f32(hmax8(amax));
  if (!(rmax > -__builtin_inff() && rmax < __builtin_inff())) return false;
  const __m256 V0 = _mm256_load_ps(cv), V1 = _mm256_load_ps(cv + 8);
  /* the weights: exp(v - max) as expf4 computes it (x + (-m) is x - m exactly) */
  const __m256 negm = _mm256_set1_ps(-rmax);
  float ex[16] __attribute__((aligned(32)));
  _mm256_store_ps(ex, expf8(_mm256_add_ps(V0, negm)));
  _mm256_store_ps(ex + 8, expf8(_mm256_add_ps(V1, negm)));
  float eo[MOERT_MAX_TOP_K];
  float sum = 0.0f;
  __m256i J = _mm256_setzero_si256();
  for (uint32_t j = 0; j < k; j++) { /* the candidate of rank j (ranks are distinct) */
    const __m256 e0 = _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpeq_epi32(r0, J), m0));
    const __m256 e1 = _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpeq_epi32(r1, J), m1));
    const unsigned pos = (unsigned)__builtin_ctz((unsigned)_mm256_movemask_ps(e0) |
                                                 ((unsigned)_mm256_movemask_ps(e1) << 8));
    id[j] = ci[pos];
    eo[j] = ex[pos];
    sum = MOERT_FADD(sum, eo[j]);
    J = _mm256_sub_epi32(J, _mm256_set1_epi32(-1));
  }
  for (uint32_t j = 0; j < k; j++) w[j] = MOERT_FDIV(eo[j], sum);
  if (scale != 1.0f)
    for (uint32_t j = 0; j < k; j++) w[j] = MOERT_FMUL(w[j], scale);
  return true;
}

/* The renormalised softmax router for a row of exactly 8 experts (Mixtral), k <= 8: each
 * expert's rank is the number of experts with a larger logit plus the equal ones of lower
 * index (so ties go to the lower index, exactly), the exponentials are taken in one vector,
 * and the k winners are read in rank order.  The same ids and weight bits as the general
 * path.  Returns false for a NaN or an infinite maximum (the general path handles them). */
__attribute__((target("avx2,popcnt"))) static bool route_row8_softmax_avx2(const float *row,
                                                                          uint32_t k, float scale,
                                                                          int32_t *id, float *w) {
  const __m256 x = _mm256_loadu_ps(row);
  if (_mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q))) return false;
  const float rmax = _mm256_cvtss_f32(hmax8(x));
  if (!(rmax > -__builtin_inff() && rmax < __builtin_inff())) return false;
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i rank = _mm256_setzero_si256();
  for (int j = 0; j < 8; j++) { /* expert j beats lane i if x_j > x_i, or equal and j < i */
    const __m256 xj = _mm256_permutevar8x32_ps(x, _mm256_set1_epi32(j));
    const __m256 gt = _mm256_cmp_ps(xj, x, _CMP_GT_OQ);
    const __m256 eq = _mm256_cmp_ps(xj, x, _CMP_EQ_OQ);
    const __m256 lower = _mm256_castsi256_ps(_mm256_cmpgt_epi32(iota, _mm256_set1_epi32(j)));
    rank = _mm256_sub_epi32(rank, _mm256_castps_si256(_mm256_or_ps(gt, _mm256_and_ps(eq, lower))));
  }
  float ex[8] __attribute__((aligned(32)));
  _mm256_store_ps(ex, expf8(_mm256_add_ps(x, _mm256_set1_ps(-rmax))));
  float eo[8];
  float sum = 0.0f;
  for (uint32_t j = 0; j < k; j++) {
    const unsigned pos = (unsigned)__builtin_ctz((unsigned)_mm256_movemask_ps(
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(rank, _mm256_set1_epi32((int)j)))));
    id[j] = (int32_t)pos;
    eo[j] = ex[pos];
    sum = MOERT_FADD(sum, eo[j]);
  }
  for (uint32_t j = 0; j < k; j++) w[j] = MOERT_FDIV(eo[j], sum);
  if (scale != 1.0f)
    for (uint32_t j = 0; j < k; j++) w[j] = MOERT_FMUL(w[j], scale);
  return true;
}

/* score[e] = sigmoid(row[e]) as sigmoid_array computes it (1 / (1 + exp(-x)), the same
 * operations lane by lane), choice[e] = score[e] + bias[e] (or score[e]); E % 8 == 0. */
__attribute__((target("avx2"))) static void sigmoid_choice_avx2(const float *row,
                                                               const float *bias, float *score,
                                                               float *choice, uint32_t E) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  for (uint32_t i = 0; i < E; i += 8) {
    const __m256 x = _mm256_loadu_ps(row + i);
    const __m256 sc = _mm256_div_ps(one, _mm256_add_ps(one, expf8(_mm256_xor_ps(x, sign))));
    _mm256_storeu_ps(score + i, sc);
    _mm256_storeu_ps(choice + i, bias ? _mm256_add_ps(sc, _mm256_loadu_ps(bias + i)) : sc);
  }
}

/* gscore[g] = the sum of the two largest of choice[g gs .. g gs + gs - 1] (the larger
 * first, as topk_best(.., 2) gives them; a value twice counts twice); gs % 8 == 0. */
__attribute__((target("avx2,popcnt"))) static void group_top2_avx2(const float *choice,
                                                                  uint32_t groups, uint32_t gs,
                                                                  float *gscore) {
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  for (uint32_t g = 0; g < groups; g++) {
    const float *c = choice + (size_t)g * gs;
    __m256 A = ninf, B = ninf;
    for (uint32_t v = 0; v < gs; v += 8) {
      const __m256 x = _mm256_loadu_ps(c + v);
      B = _mm256_max_ps(B, _mm256_min_ps(A, x));
      A = _mm256_max_ps(A, x);
    }
    const __m256 m = hmax8(A);
    const __m256 at_max = _mm256_cmp_ps(A, m, _CMP_EQ_OQ);
    /* the second largest: the max again if two lanes hold it, else the larger of the other
     * lanes' maxima and every lane's second (a lane's second is at most its max) */
    const __m256 r = hmax8(_mm256_max_ps(B, _mm256_blendv_ps(A, ninf, at_max)));
    const float top = _mm256_cvtss_f32(m);
    const float second = __builtin_popcount((unsigned)_mm256_movemask_ps(at_max)) > 1
                             ? top : _mm256_cvtss_f32(r);
    gscore[g] = MOERT_FADD(top, second);
  }
}

/* warp_order_sum(exp(row[i] - m)) for E % 32 == 0: the 32 lanes as 4 vectors, each lane's
 * sum in index order, then the butterfly.  IEEE addition is commutative, so after the
 * xor-16 step lanes l and l ^ 16 hold the same value: the butterfly is 16 + 8 + 4 + 2 + 1
 * additions in the same pairs, and lane 0 is warp_order_sum's result bit for bit. */
__attribute__((target("avx2"))) static float exp_warp_sum_avx2(const float *row, float m,
                                                              uint32_t E) {
  const __m256 negm = _mm256_set1_ps(-m);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (uint32_t i = 0; i < E; i += 32) {
    a0 = _mm256_add_ps(a0, expf8(_mm256_add_ps(_mm256_loadu_ps(row + i), negm)));
    a1 = _mm256_add_ps(a1, expf8(_mm256_add_ps(_mm256_loadu_ps(row + i + 8), negm)));
    a2 = _mm256_add_ps(a2, expf8(_mm256_add_ps(_mm256_loadu_ps(row + i + 16), negm)));
    a3 = _mm256_add_ps(a3, expf8(_mm256_add_ps(_mm256_loadu_ps(row + i + 24), negm)));
  }
  __m256 x = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3)); /* xor 16, xor 8 */
  x = _mm256_add_ps(x, _mm256_permute2f128_ps(x, x, 1));                 /* xor 4 */
  x = _mm256_add_ps(x, _mm256_shuffle_ps(x, x, _MM_SHUFFLE(1, 0, 3, 2))); /* xor 2 */
  x = _mm256_add_ps(x, _mm256_shuffle_ps(x, x, _MM_SHUFFLE(2, 3, 0, 1))); /* xor 1 */
  return _mm256_cvtss_f32(x);
}

/* ---- AVX-512 (AVX-512 F, VL, BW, DQ): the renormalised softmax row on packed keys ------
 *
 * Each logit becomes one int32 key that orders as the (value, lower index first) pair
 * does, up to the low b bits of the value (b = the bits of an expert index):
 *   ordered = the value's bits as a signed integer, negatives as minus their magnitude
 *             (so -0 = +0 and the integer order is the float order),
 *   key     = (ordered with its low b bits cleared) | (2^b - 1 - expert).
 * Keys are distinct, so no step below needs an index beside the value, and the order of
 * keys is the router's order except among "near ties" (equal keys but for the index
 * bits), which are checked against the true values at the end.  Logits that came from
 * bf16 have no low bits to lose, so their near ties are exact ties, decided right.
 *  1. K_v = the keys of 16 experts (v = 0 .. E/16 - 1), M = their lane-wise maximum:
 *     16 keys of distinct experts;
 *  2. th = the 8th largest of M (bitonic: each 8-lane half sorted, one descending and one
 *     ascending; their lane-wise maximum is the top 8, whose minimum is th).  At least 8
 *     >= k experts have keys >= th, so the top k all have value bits >= th's;
 *  3. candidates: keys whose value bits are at least th's (about 10 on random logits; more
 *     than 16 goes to the AVX2 row), compressed into one vector, padded with INT_MIN;
 *  4. their top 8 sorted (bitonic), so lanes 0..k-1 are the top k in order;
 *  5. near ties must be exact ties inside the top 8 (checked on the logits) and none may
 *     cross to the other candidates, else the AVX2 row decides;
 *  6. exp(v - max) of the k (expf16 for two rows, expf8 for one), summed in rank order,
 *     divided (the same operations, and so bits, as softmax_weights). */
#define MOERT_AVX512_TARGET "avx2,popcnt,avx512f,avx512vl,avx512bw,avx512dq"

/* A compare-exchange stage on 16 int32 lanes against their permutation P: the lanes in
 * `hi` keep the larger key. */
#define CX16(V, P, hi)                                                                         \
  do {                                                                                         \
    const __m512i p_ = (P);                                                                    \
    (V) = _mm512_mask_max_epi32(_mm512_min_epi32((V), p_), (__mmask16)(hi), (V), p_);          \
  } while (0)
#define CX8I(V, P, hi)                                                                         \
  do {                                                                                         \
    const __m256i p_ = (P);                                                                    \
    (V) = _mm256_mask_max_epi32(_mm256_min_epi32((V), p_), (__mmask8)(hi), (V), p_);           \
  } while (0)
#define SWAP1(V) _mm512_shuffle_epi32((V), (_MM_PERM_ENUM)0xB1)
#define SWAP2(V) _mm512_shuffle_epi32((V), (_MM_PERM_ENUM)0x4E)
#define SWAP4(V) _mm512_shuffle_i64x2((V), (V), 0xB1)
#define SWAP8(V) _mm512_shuffle_i64x2((V), (V), 0x4E)
/* Lanes 0-7 sorted descending, lanes 8-15 ascending (SORT8's networks, side by side). */
#define SORT8X2(V)                                                                             \
  do {                                                                                         \
    CX16(V, SWAP1(V), 0x6699);                                                                 \
    CX16(V, SWAP2(V), 0x3CC3);                                                                 \
    CX16(V, SWAP1(V), 0x5AA5);                                                                 \
    CX16(V, SWAP4(V), 0xF00F);                                                                 \
    CX16(V, SWAP2(V), 0xCC33);                                                                 \
    CX16(V, SWAP1(V), 0xAA55);                                                                 \
  } while (0)

/* 0, 1, ..., MOERT_MAX_EXPERTS - 1 */
static const int32_t expert_iota[MOERT_MAX_EXPERTS] __attribute__((aligned(64))) = {
#define I16(b) b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10, b + 11, \
               b + 12, b + 13, b + 14, b + 15
#define I128(b) I16(b), I16(b + 16), I16(b + 32), I16(b + 48), I16(b + 64), I16(b + 80), \
                I16(b + 96), I16(b + 112)
    I128(0), I128(128), I128(256), I128(384)
#undef I128
#undef I16
};

/* Step 1 for one row: its keys into key[0..E-1] and their lane-wise maximum into M.
 * False for a NaN. */
__attribute__((target(MOERT_AVX512_TARGET), always_inline)) static inline bool
keys_avx512(const float *row, const uint32_t nv, const uint32_t b, int32_t *key, int32_t *max) {
  const __m512i low = _mm512_set1_epi32((int)((1u << b) - 1));
  const __m512i mag = _mm512_set1_epi32(0x7FFFFFFF);
  __m512i M0 = _mm512_set1_epi32(INT32_MIN), M1 = M0;
  __mmask16 ord = 0xFFFF;
#pragma GCC unroll 8
  for (uint32_t v = 0; v < nv; v++) {
    const __m512i x = _mm512_loadu_si512((const void *)(row + 16 * v));
    ord = _mm512_mask_cmp_ps_mask(ord, _mm512_castsi512_ps(x), _mm512_castsi512_ps(x),
                                  _CMP_ORD_Q);
    const __m512i s = _mm512_srai_epi32(x, 31);
    /* (x & mag) ^ s - s: the magnitude, negated for a negative value */
    const __m512i o = _mm512_sub_epi32(_mm512_ternarylogic_epi32(x, mag, s, 0x6A), s);
    /* (o & ~low) | (low & ~expert), and low & ~expert = 2^b - 1 - expert */
    const __m512i K = _mm512_ternarylogic_epi32(
        o, low, _mm512_load_si512((const void *)(expert_iota + 16 * v)), 0x74);
    _mm512_store_si512((void *)(key + 16 * v), K);
    if (v & 1) M1 = _mm512_max_epi32(M1, K);
    else M0 = _mm512_max_epi32(M0, K);
  }
  _mm512_store_si512((void *)max, _mm512_max_epi32(M0, M1));
  return ord == 0xFFFF;
}

/* Steps 2-3 for one row: the candidates' keys into slot[0..15] (padded with INT32_MIN).
 * False when there are more than 16.  The stores reach slot[31]: the caller's next rows,
 * written after this one (route_rows_softmax_avx512_n). */
__attribute__((target(MOERT_AVX512_TARGET), always_inline)) static inline bool
candidates_avx512(const int32_t *key, const int32_t *max, const uint32_t nv, const uint32_t b,
                  int32_t *slot) {
  const __m512i low = _mm512_set1_epi32((int)((1u << b) - 1));
  __m512i M = _mm512_load_si512((const void *)max);
  SORT8X2(M);
  M = _mm512_max_epi32(M, SWAP8(M)); /* the top 8 of the 16, in both halves */
  M = _mm512_min_epi32(M, SWAP4(M));
  M = _mm512_min_epi32(M, SWAP2(M));
  M = _mm512_min_epi32(M, SWAP1(M)); /* th in every lane */
  const __m512i th = _mm512_andnot_si512(low, M);
  uint32_t C = 0;
#pragma GCC unroll 8
  for (uint32_t v = 0; v < nv; v++) {
    const __m512i K = _mm512_load_si512((const void *)(key + 16 * v));
    const __mmask16 m = _mm512_cmpge_epi32_mask(K, th);
    _mm512_storeu_si512((void *)(slot + (C < 16 ? C : 16)), _mm512_maskz_compress_epi32(m, K));
    C += (uint32_t)__builtin_popcount((unsigned)m);
  }
  if (C > 16) return false;
  _mm512_storeu_si512((void *)(slot + C), _mm512_set1_epi32(INT32_MIN));
  return true;
}

/* Steps 4-5 for one row: the ids of its top k into id (k <= 8) and their logits into v.
 * False (and nothing written) when a near tie is not an exact tie, or the maximum is
 * infinite. */
__attribute__((target(MOERT_AVX512_TARGET), always_inline)) static inline bool
select_avx512(const float *row, const int32_t *slot, const uint32_t b, uint32_t k, int32_t *id,
              float *v) {
  const __m512i low = _mm512_set1_epi32((int)((1u << b) - 1));
  __m512i S = _mm512_load_si512((const void *)slot);
  SORT8X2(S);
  /* the top 8 (a bitonic sequence, sorted below) and the other 8 */
  const __m512i U = _mm512_min_epi32(S, SWAP8(S));
  __m256i T = _mm512_castsi512_si256(_mm512_max_epi32(S, SWAP8(S)));
  CX8I(T, _mm256_shuffle_i32x4(T, T, 1), 0x0F);
  CX8I(T, _mm256_shuffle_epi32(T, 0x4E), 0x33);
  CX8I(T, _mm256_shuffle_epi32(T, 0xB1), 0x55);
  const __m256i low8 = _mm512_castsi512_si256(low);
  const __m256i id8 = _mm256_sub_epi32(low8, _mm256_and_si256(T, low8));
  /* near ties (the same value bits): in the top 8 they must be exact ties, and none may
   * cross to the other 8 (the padding has no near tie) */
  const __m256i hv = _mm256_andnot_si256(low8, T);
  if (_mm512_cmpeq_epi32_mask(_mm512_andnot_si512(low, U),
                              _mm512_castsi256_si512(_mm256_permutevar8x32_epi32(hv, _mm256_set1_epi32(7)))) & 0xFF)
    return false;
  __mmask8 near = _mm256_cmpeq_epi32_mask(hv, _mm256_alignr_epi32(hv, hv, 1)) & 0x7F;
  if (near) {
    int32_t iv[8] __attribute__((aligned(32)));
    _mm256_store_si256((__m256i *)iv, id8);
    do {
      const unsigned i = (unsigned)__builtin_ctz(near);
      if (row[iv[i]] != row[iv[i + 1]]) return false;
      near &= (__mmask8)(near - 1);
    } while (near);
  }
  const __mmask8 km = (__mmask8)((1u << k) - 1u);
  const __m256 v8 = _mm256_mmask_i32gather_ps(_mm256_setzero_ps(), km, id8, row, 4);
  const float rmax = _mm256_cvtss_f32(v8);
  if (!(rmax > -__builtin_inff() && rmax < __builtin_inff())) return false;
  _mm256_mask_storeu_epi32(id, km, id8);
  _mm256_store_ps(v, v8);
  return true;
}

/* exp of 16 lanes: expf8's operations (and so expf4's) lane by lane, with mask registers
 * for the special cases (two expf8 calls instead cost 80 ns of the 1.9 us at T=32). */
__attribute__((target(MOERT_AVX512_TARGET))) static inline __m512 expf16(__m512 x) {
  const __m512 magic = _mm512_set1_ps(MOERT_EXP_MAGIC);
  __m512 n = _mm512_add_ps(
      _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(MOERT_EXP_LOG2E)), magic),
      _mm512_set1_ps(-MOERT_EXP_MAGIC));
  __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(MOERT_EXP_LN2_HI)));
  r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(MOERT_EXP_LN2_LO)));
  __m512 p = _mm512_set1_ps(MOERT_EXP_C7);
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(MOERT_EXP_C6));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(MOERT_EXP_C5));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(MOERT_EXP_C4));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(MOERT_EXP_C3));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(MOERT_EXP_C2));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
  const __m512i ni = _mm512_cvttps_epi32(n);
  const __m512i n1 = _mm512_srai_epi32(ni, 1), n2 = _mm512_sub_epi32(ni, n1);
  const __m512i bias = _mm512_set1_epi32(127);
  p = _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23)));
  p = _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23)));
  const __mmask16 big = _mm512_cmp_ps_mask(x, _mm512_set1_ps(MOERT_EXP_HI), _CMP_GT_OQ);
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(MOERT_EXP_LO), _CMP_LT_OQ);
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  p = _mm512_maskz_mov_ps((__mmask16)~(big | tiny), p);
  p = _mm512_mask_mov_ps(p, big, _mm512_set1_ps(__builtin_inff()));
  return _mm512_mask_mov_ps(p, nan, x);
}

/* Step 6 for two rows: the weights from their k logits v[0..7] and v[8..15] (v[0] and v[8]
 * the largest), into w0 and w1. */
__attribute__((target(MOERT_AVX512_TARGET), always_inline)) static inline void
weights2_avx512(const float *v, uint32_t k, float scale, float *w0, float *w1) {
  const __m512 x = _mm512_loadu_ps(v);
  const __m512 m = _mm512_permutexvar_ps(
      _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8, 8, 8, 8), x);
  float ex[16] __attribute__((aligned(64)));
  _mm512_store_ps(ex, expf16(_mm512_sub_ps(x, m)));
  float s0 = 0.0f, s1 = 0.0f;
  for (uint32_t j = 0; j < k; j++) {
    s0 = MOERT_FADD(s0, ex[j]);
    s1 = MOERT_FADD(s1, ex[8 + j]);
  }
  const __m512 sum = _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1);
  __m512 wv = _mm512_div_ps(_mm512_load_ps(ex), sum);
  if (scale != 1.0f) wv = _mm512_mul_ps(wv, _mm512_set1_ps(scale));
  const __mmask8 km = (__mmask8)((1u << k) - 1u);
  _mm256_mask_storeu_ps(w0, km, _mm512_castps512_ps256(wv));
  _mm256_mask_storeu_ps(w1, km, _mm512_extractf32x8_ps(wv, 1));
}

/* Step 6 for one row: the weights from the k logits v (v[0] the largest). */
__attribute__((target(MOERT_AVX512_TARGET), always_inline)) static inline void
weights_avx512(const float *v, uint32_t k, float scale, float *w) {
  const __m256 v8 = _mm256_load_ps(v);
  float ex[8] __attribute__((aligned(32)));
  _mm256_store_ps(ex, expf8(_mm256_sub_ps(v8, _mm256_set1_ps(v[0]))));
  float sum = 0.0f;
  for (uint32_t j = 0; j < k; j++) sum = MOERT_FADD(sum, ex[j]);
  __m256 wv = _mm256_div_ps(_mm256_load_ps(ex), _mm256_set1_ps(sum));
  if (scale != 1.0f) wv = _mm256_mul_ps(wv, _mm256_set1_ps(scale));
  _mm256_mask_storeu_ps(w, (__mmask8)((1u << k) - 1u), wv);
}

/* Rows t = 0..n-1 (n <= 32) at rows + t * stride: each step over all the rows before the
 * next, so the rows' long dependency chains overlap.  Returns the rows it left (bit t):
 * the caller routes them with the AVX2 row router or the general path. */
__attribute__((target(MOERT_AVX512_TARGET), always_inline)) static inline uint32_t
route_rows_softmax_avx512_n(const float *rows, uint64_t stride, uint32_t n, const uint32_t nv,
                            const uint32_t b, uint32_t k, float scale, int32_t *ids, float *w) {
  /* Row t's candidates in slot[t][0..15]: its stores past 16 spill into the next two rows,
   * which are written after it (so 64 bytes a row, not 128: the whole working set of a
   * call stays in L1, whatever the stack's alignment). */
  int32_t slot[34][16] __attribute__((aligned(64)));
  int32_t key[4 * MOERT_MAX_EXPERTS] __attribute__((aligned(64))); /* 4 rows of 16 * nv */
  int32_t max[4][16] __attribute__((aligned(64)));
  float top[32][8] __attribute__((aligned(32)));
  uint32_t ok = 0;
  for (uint32_t t0 = 0; t0 < n; t0 += 4) { /* 4 rows' keys at a time (8 KB for E = 512) */
    const uint32_t m = n - t0 < 4 ? n - t0 : 4;
    for (uint32_t i = 0; i < m; i++)
      ok |= (uint32_t)keys_avx512(rows + (t0 + i) * stride, nv, b, key + i * 16 * nv, max[i])
            << (t0 + i);
    for (uint32_t i = 0; i < m; i++)
      ok &= ~((uint32_t)!candidates_avx512(key + i * 16 * nv, max[i], nv, b, slot[t0 + i])
              << (t0 + i));
  }
  for (uint32_t t = 0; t < n; t++)
    if (ok >> t & 1)
      ok &= ~((uint32_t)!select_avx512(rows + t * stride, slot[t], b, k, ids + t * k, top[t]) << t);
  for (uint32_t t = 0; t < n; t++)
    if ((ok >> t & 3) == 3 && t + 1 < n) { /* two rows in one vector */
      weights2_avx512(top[t], k, scale, w + t * k, w + (t + 1) * k);
      t++;
    } else if (ok >> t & 1) {
      weights_avx512(top[t], k, scale, w + t * k);
    }
  return ~ok & (n == 32 ? ~0u : (1u << n) - 1u);
}
#undef CX16
#undef CX8I
#undef SWAP1
#undef SWAP2
#undef SWAP4
#undef SWAP8
#undef SORT8X2

/* The renormalised softmax router above for up to 32 f32 rows, E a multiple of 16
 * (16..512), k <= 8: constant shapes for the common expert counts, so the loops over the
 * 16-expert vectors unroll. */
__attribute__((target(MOERT_AVX512_TARGET))) static uint32_t
route_rows_softmax_avx512(const float *rows, uint64_t stride, uint32_t n, uint32_t E, uint32_t k,
                          float scale, int32_t *ids, float *w) {
  switch (E) {
  case 64: return route_rows_softmax_avx512_n(rows, stride, n, 4, 6, k, scale, ids, w);
  case 128: return route_rows_softmax_avx512_n(rows, stride, n, 8, 7, k, scale, ids, w);
  case 256: return route_rows_softmax_avx512_n(rows, stride, n, 16, 8, k, scale, ids, w);
  default: {
    uint32_t b = 0;
    while ((1u << b) < E) b++;
    return route_rows_softmax_avx512_n(rows, stride, n, E / 16, b, k, scale, ids, w);
  }
  }
}

#endif

/* The fastest top-k this CPU runs; all give the same result. */
static int32_t topk_best(const float *row, uint32_t E, uint32_t k, float *vals, int32_t *idx) {
#ifdef MOERT_ROUTER_AVX2
  if (k <= 8 && E % 8 == 0 && E >= 16 && moert_cpu_isa() >= 1)
    return topk_row_avx2(row, E, k, vals, idx);
#endif
  return topk_row(row, E, k, vals, idx);
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

/* out[i] = moert_expf(in[i] + add) for i < n (in/out padded to a multiple of 4).  The SSE2
 * version performs the same IEEE operations as moert_expf lane by lane (no FMA), so the
 * bits are the same; the scale by 2^n is split in two exact steps, which rounds once
 * like the scalar code does. */
#if defined(__SSE2__)
static inline __m128 expf4(__m128 x) {
  const __m128 magic = _mm_set1_ps(MOERT_EXP_MAGIC);
  __m128 n = _mm_add_ps(_mm_add_ps(_mm_mul_ps(x, _mm_set1_ps(MOERT_EXP_LOG2E)), magic),
                        _mm_set1_ps(-MOERT_EXP_MAGIC));
  __m128 r = _mm_sub_ps(x, _mm_mul_ps(n, _mm_set1_ps(MOERT_EXP_LN2_HI)));
  r = _mm_sub_ps(r, _mm_mul_ps(n, _mm_set1_ps(MOERT_EXP_LN2_LO)));
  __m128 p = _mm_set1_ps(MOERT_EXP_C7);
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(MOERT_EXP_C6));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(MOERT_EXP_C5));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(MOERT_EXP_C4));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(MOERT_EXP_C3));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(MOERT_EXP_C2));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f));
  /* n is in [-150, 128] wherever the result is used: 2^n = 2^(n>>1) * 2^(n - (n>>1)) */
  __m128i ni = _mm_cvttps_epi32(n);
  __m128i n1 = _mm_srai_epi32(ni, 1), n2 = _mm_sub_epi32(ni, n1);
  const __m128i bias = _mm_set1_epi32(127);
  p = _mm_mul_ps(p, _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(n1, bias), 23)));
  p = _mm_mul_ps(p, _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(n2, bias), 23)));
  const __m128 big = _mm_cmpgt_ps(x, _mm_set1_ps(MOERT_EXP_HI));
  const __m128 tiny = _mm_cmplt_ps(x, _mm_set1_ps(MOERT_EXP_LO));
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
#ifdef MOERT_ROUTER_AVX2
      if (E % 32 == 0 && moert_cpu_isa() >= 1) {
        sum = exp_warp_sum_avx2(row, m, E);
      } else
#endif
      {
        exp_shift(row, -m, tmp, (E + 3) & ~3u);
        sum = warp_order_sum(tmp, E);
      }
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
  uint32_t groups = cfg->n_group > 1 ? cfg->n_group : 1;
#ifdef MOERT_ROUTER_AVX2
  const bool avx2 = E % 8 == 0 && moert_cpu_isa() >= 1;
  if (avx2)
    sigmoid_choice_avx2(row, bias, score, choice, E);
  else
#endif
  {
    sigmoid_array(row, score, (E + 3) & ~3u);
    for (uint32_t e = 0; e < E; e++) choice[e] = bias ? MOERT_FADD(score[e], bias[e]) : score[e];
  }
  if (groups > 1) {
    const uint32_t gs = E / groups;
    float gscore[MOERT_MAX_EXPERTS], gv[MOERT_MAX_EXPERTS];
    int32_t gi[MOERT_MAX_EXPERTS];
#ifdef MOERT_ROUTER_AVX2
    if (avx2 && gs % 8 == 0)
      group_top2_avx2(choice, groups, gs, gscore);
    else
#endif
      for (uint32_t g = 0; g < groups; g++) {
        float two[2];
        int32_t ti[2];
        uint32_t take = gs < 2 ? gs : 2;
        (void)topk_best(choice + g * gs, gs, take, two, ti);
        gscore[g] = take == 2 ? MOERT_FADD(two[0], two[1]) : two[0];
      }
    (void)topk_best(gscore, groups, cfg->topk_group, gv, gi);
    bool keep[MOERT_MAX_EXPERTS];
    for (uint32_t g = 0; g < groups; g++) keep[g] = false;
    for (uint32_t j = 0; j < cfg->topk_group; j++) keep[gi[j]] = true;
    for (uint32_t g = 0; g < groups; g++) /* whole groups: no division per expert */
      if (!keep[g])
        for (uint32_t e = g * gs; e < (g + 1) * gs; e++) choice[e] = ninf;
  }
  (void)topk_best(choice, E, k, vals, idx);
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

/* Whether row[0..E-1] holds a NaN (no early exit: one pass, vectorised). */
static bool has_nan(const float *row, uint32_t E) {
  uint32_t any = 0;
  for (uint32_t e = 0; e < E; e++) any |= row[e] != row[e];
  return any != 0;
}

/* One row of the route (the general loop body): 0, or the status of a NaN logit. */
static moert_status route_one(const moert_router_cfg *cfg, const float *r, const float *bias,
                              uint32_t t, bool fused, int32_t *id, float *w, float *vals,
                              float *tmp, float *tmp2) {
  const uint32_t E = cfg->num_experts, k = cfg->top_k;
  if (cfg->kind == MOERT_ROUTER_SOFTMAX_TOPK) {
#ifdef MOERT_ROUTER_AVX2
    if (fused && (E == 8 ? route_row8_softmax_avx2(r, k, cfg->scale, id, w)
                         : route_row_softmax_avx2(r, E, k, cfg->scale, id, w)))
      return MOERT_OK;
#else
    (void)fused;
#endif
    int32_t bad = topk_best(r, E, k, vals, id);
    if (bad >= 0)
      return moert_fail(MOERT_ERR_NAN_LOGIT, "moert_route: logit of token %u, expert %d is NaN",
                        t, bad);
    softmax_weights(cfg, r, vals, w, tmp);
  } else {
    if (has_nan(r, E))
      for (uint32_t e = 0; e < E; e++)
        if (r[e] != r[e])
          return moert_fail(MOERT_ERR_NAN_LOGIT,
                            "moert_route: logit of token %u, expert %u is NaN", t, e);
    sigmoid_group_select(cfg, r, bias, tmp, tmp2, vals, id, w);
  }
  return MOERT_OK;
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
  const bool direct = dtype == MOERT_DTYPE_F32 && E % 4 == 0; /* rows read in place */
  bool fused = false, wide = false;
#ifdef MOERT_ROUTER_AVX2
  /* the fused row routers: renormalised softmax, k <= 8, rows of whole 8-float vectors
   * (AVX2), or, 32 rows at a time, of whole 16-float vectors (AVX-512; it hands the rare
   * row it cannot decide to the AVX2 one) */
  const int isa = moert_cpu_isa();
  fused = cfg->kind == MOERT_ROUTER_SOFTMAX_TOPK && cfg->renormalize && k <= 8 && E % 8 == 0 &&
          isa >= 1;
  wide = fused && isa >= 2 && E % 16 == 0;
#endif
  for (uint32_t t0 = 0; t0 < num_tokens; t0 += 32) {
    const uint32_t n = num_tokens - t0 < 32 ? num_tokens - t0 : 32;
    uint32_t left = n == 32 ? ~0u : (1u << n) - 1u; /* the rows of this chunk still to do */
#ifdef MOERT_ROUTER_AVX2
    if (wide && direct)
      left = route_rows_softmax_avx512((const float *)logits + (size_t)t0 * row_stride,
                                       row_stride, n, E, k, cfg->scale, ids + (size_t)t0 * k,
                                       weights + (size_t)t0 * k);
#endif
    for (; left; left &= left - 1) {
      const uint32_t t = t0 + (uint32_t)__builtin_ctz(left);
      const float *r;
      if (direct) {
        r = (const float *)logits + (size_t)t * row_stride;
      } else {
        load_row(logits, dtype, row_stride, t, E, row);
        r = row;
      }
      int32_t *id = ids + (size_t)t * k;
      float *w = weights + (size_t)t * k;
#ifdef MOERT_ROUTER_AVX2
      if (wide && !direct && !route_rows_softmax_avx512(r, 0, 1, E, k, cfg->scale, id, w))
        continue;
#endif
      moert_status st = route_one(cfg, r, bias, t, fused, id, w, vals, tmp, tmp2);
      if (st) return st;
    }
  }
  return MOERT_OK;
}
