/* candidate fused router row: softmax renormalised, f32, E%8==0, 16<=E<=512, k<=8 */
#include <immintrin.h>
__attribute__((target("avx2"))) static inline __m256 xexpf8(__m256 x) {
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  __m256 n = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269502162933349609375f)), magic),
                           _mm256_set1_ps(-12582912.0f));
  __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693145751953125f)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(1.428606765330187045e-06f)));
  __m256 p = _mm256_set1_ps(1.98412698412698413e-4f);
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.38888888888888889e-3f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.33333333333333333e-3f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.16666666666666667e-2f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.66666666666666667e-1f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(0.5f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
  __m256i ni = _mm256_cvttps_epi32(n);
  __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  p = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23)));
  p = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23)));
  const __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ);
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-103.97208404541015625f), _CMP_LT_OQ);
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  p = _mm256_andnot_ps(_mm256_or_ps(big, tiny), p);
  p = _mm256_or_ps(p, _mm256_and_ps(big, _mm256_set1_ps(__builtin_inff())));
  return _mm256_or_ps(_mm256_andnot_ps(nan, p), _mm256_and_ps(nan, x));
}

/* returns 0 done, 1 = use the generic path for this row */
__attribute__((target("avx2,popcnt"))) INLINE static int fast_row(const float *row, uint32_t E, uint32_t k,
                                                          float scale, int32_t *id, float *w) {
  const uint32_t nv = E / 8;
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  __m256 A = ninf, B = ninf;
  for (uint32_t v = 0; v < nv; v++) {
    const __m256 x = _mm256_loadu_ps(row + 8 * v);
    B = _mm256_max_ps(B, _mm256_min_ps(A, x));
    A = _mm256_max_ps(A, x);
  }
#if STOP==1
  { float q[8]; _mm256_storeu_ps(q, _mm256_add_ps(A,B)); w[0]=q[0]; return 0; }
#endif
#if THR == 1
  __m256 th;
  {
#undef CXD
#define CXD(V, perm, dm) { __m256 P = perm; __m256 hi = _mm256_max_ps(V, P), lo = _mm256_min_ps(V, P); V = _mm256_blend_ps(lo, hi, dm); }
    __m256 a = A, b = B;
#undef SORT8
#define SORT8(V, D) \
    CXD(V, _mm256_permute_ps(V, 0xB1), D ? 0x99 : 0x66) \
    CXD(V, _mm256_permute_ps(V, 0x4E), D ? 0xC3 : 0x3C) \
    CXD(V, _mm256_permute_ps(V, 0xB1), D ? 0xA5 : 0x5A) \
    CXD(V, _mm256_permute2f128_ps(V, V, 1), D ? 0x0F : 0xF0) \
    CXD(V, _mm256_permute_ps(V, 0x4E), D ? 0x33 : 0xCC) \
    CXD(V, _mm256_permute_ps(V, 0xB1), D ? 0x55 : 0xAA)
    SORT8(a, 1) SORT8(b, 0)
    __m256 m = _mm256_max_ps(a, b);
    CXD(m, _mm256_permute2f128_ps(m, m, 1), 0x0F)
    CXD(m, _mm256_permute_ps(m, 0x4E), 0x33)
    CXD(m, _mm256_permute_ps(m, 0xB1), 0x55)
    th = _mm256_permutevar8x32_ps(m, _mm256_set1_epi32((int)k - 1));
  }
#else
  float tr[16] __attribute__((aligned(32)));
  _mm256_store_ps(tr, A);
  _mm256_store_ps(tr + 8, B);
  __m256i cA = _mm256_setzero_si256(), cB = cA;
  for (int i = 0; i < 16; i++) {
    const __m256 t = _mm256_broadcast_ss(tr + i);
    cA = _mm256_sub_epi32(cA, _mm256_castps_si256(_mm256_cmp_ps(t, A, _CMP_GE_OQ)));
    cB = _mm256_sub_epi32(cB, _mm256_castps_si256(_mm256_cmp_ps(t, B, _CMP_GE_OQ)));
  }
  const __m256i km1 = _mm256_set1_epi32((int)k - 1);
  __m256 th = _mm256_max_ps(
      _mm256_blendv_ps(ninf, A, _mm256_castsi256_ps(_mm256_cmpgt_epi32(cA, km1))),
      _mm256_blendv_ps(ninf, B, _mm256_castsi256_ps(_mm256_cmpgt_epi32(cB, km1))));
  th = _mm256_max_ps(th, _mm256_permute2f128_ps(th, th, 1));
  th = _mm256_max_ps(th, _mm256_shuffle_ps(th, th, _MM_SHUFFLE(1, 0, 3, 2)));
  th = _mm256_max_ps(th, _mm256_shuffle_ps(th, th, _MM_SHUFFLE(2, 3, 0, 1)));
#endif
#if STOP==2
  { float q[8]; _mm256_storeu_ps(q, th); w[0]=q[0]; return 0; }
#endif
  float cv[MOERT_MAX_EXPERTS + 16] __attribute__((aligned(32)));
  int32_t ci[MOERT_MAX_EXPERTS + 16] __attribute__((aligned(32)));
  uint32_t C = 0;
#if COMP == 0
  for (uint32_t v = 0; v < nv; v++) {
    const __m256 x = _mm256_loadu_ps(row + 8 * v);
    const int mm = _mm256_movemask_ps(_mm256_cmp_ps(x, th, _CMP_NLT_UQ));
    const __m256i p = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)compact_lanes[mm]));
    _mm256_storeu_ps(cv + C, _mm256_permutevar8x32_ps(x, p));
    _mm256_storeu_si256((__m256i *)(ci + C), _mm256_add_epi32(p, _mm256_set1_epi32((int)(8 * v))));
    C += (uint32_t)__builtin_popcount((unsigned)mm);
  }
#else
  /* bitmap of candidates, then scalar extraction */
  uint64_t bm[MOERT_MAX_EXPERTS / 64];
  for (uint32_t w = 0; w < nv / 8; w++) {
    uint64_t word = 0;
    for (uint32_t q = 0; q < 8; q++) {
      const __m256 x = _mm256_loadu_ps(row + 64 * w + 8 * q);
      word |= (uint64_t)(uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(x, th, _CMP_NLT_UQ)) << (8 * q);
    }
    bm[w] = word;
  }
  {
    const uint32_t nw = nv / 8;
    uint32_t tot = 0;
    for (uint32_t w = 0; w < nw; w++) tot += (uint32_t)__builtin_popcountll(bm[w]);
    if (tot > 16) return 1;
#if COMP == 1
    for (uint32_t w = 0; w < nw; w++) {
      uint64_t b = bm[w];
      while (b) {
        const uint32_t e = 64 * w + (uint32_t)__builtin_ctzll(b);
        b &= b - 1;
        cv[C] = row[e];
        ci[C] = (int32_t)e;
        C++;
      }
    }
#else
    /* E = 128 only: 16 fixed steps over two words */
    uint64_t b0 = bm[0], b1 = bm[1];
    static const float pad = -__builtin_inff();
    for (int j = 0; j < 16; j++) {
      const uint64_t use0 = b0 != 0;
      const uint64_t b = use0 ? b0 : b1;
      const uint32_t e = (use0 ? 0u : 64u) + (uint32_t)__builtin_ctzll(b | (1ull << 63));
      const float *src = (b0 | b1) ? row + e : &pad;
      cv[j] = *src;
      ci[j] = (int32_t)e;
      if (use0) b0 &= b0 - 1; else b1 &= b1 - 1;
    }
    C = tot;
#endif
  }
#endif
  if (C > 16) return 1;
#if STOP==3
  w[0]=cv[3]; id[0]=ci[C-1]; return 0;
#endif
  _mm256_storeu_ps(cv + C, ninf);
  _mm256_storeu_ps(cv + C + 8, ninf);
  const __m256 V0 = _mm256_load_ps(cv), V1 = _mm256_load_ps(cv + 8);
  __m256 mx = _mm256_max_ps(A, _mm256_permute2f128_ps(A, A, 1));
  mx = _mm256_max_ps(mx, _mm256_shuffle_ps(mx, mx, _MM_SHUFFLE(1, 0, 3, 2)));
  mx = _mm256_max_ps(mx, _mm256_shuffle_ps(mx, mx, _MM_SHUFFLE(2, 3, 0, 1)));
  const float m = _mm256_cvtss_f32(mx);
  if (!(m > -__builtin_inff() && m < __builtin_inff())) return 1;
  if (_mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(V0, V0, _CMP_UNORD_Q),
                                      _mm256_cmp_ps(V1, V1, _CMP_UNORD_Q))))
    return 1;
  __m256i r0 = _mm256_setzero_si256(), r1 = r0;
  for (int i = 0; i < 16; i++) {
    const __m256 t = _mm256_broadcast_ss(cv + i);
    r0 = _mm256_sub_epi32(r0, _mm256_castps_si256(_mm256_cmp_ps(t, V0, _CMP_GT_OQ)));
    r1 = _mm256_sub_epi32(r1, _mm256_castps_si256(_mm256_cmp_ps(t, V1, _CMP_GT_OQ)));
  }
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i cC = _mm256_set1_epi32((int)C), kk = _mm256_set1_epi32((int)k);
  const __m256i m0 = _mm256_cmpgt_epi32(cC, iota);
  const __m256i m1 = _mm256_cmpgt_epi32(cC, _mm256_add_epi32(iota, _mm256_set1_epi32(8)));
  const __m256i s8 = _mm256_add_epi32(_mm256_and_si256(r0, m0), _mm256_and_si256(r1, m1));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  if ((uint32_t)_mm_cvtsi128_si32(s) != C * (C - 1) / 2) return 1;
#if STOP==4
  { int q[8]; _mm256_storeu_si256((__m256i*)q, _mm256_add_epi32(r0,r1)); id[0]=q[0]; return 0; }
#endif
  const __m256 negm = _mm256_set1_ps(-m);
  float ex[16] __attribute__((aligned(32)));
  _mm256_store_ps(ex, xexpf8(_mm256_add_ps(V0, negm)));
  _mm256_store_ps(ex + 8, xexpf8(_mm256_add_ps(V1, negm)));
#if OUT == 1
  /* select by rank: the lane whose rank is j */
  float eb[8] __attribute__((aligned(32)));
  float sum = 0.0f;
  __m256i J = _mm256_setzero_si256();
  const __m256i one = _mm256_set1_epi32(1);
  for (uint32_t j = 0; j < k; j++) {
    const unsigned mj = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpeq_epi32(r0, J), m0))) |
                        ((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpeq_epi32(r1, J), m1))) << 8);
    const unsigned p = (unsigned)__builtin_ctz(mj);
    const float e = ex[p];
    id[j] = ci[p];
    sum = sum + e;
    eb[j] = e;
    J = _mm256_add_epi32(J, one);
  }
  for (uint32_t j = 0; j < k; j++) w[j] = scale != 1.0f ? (eb[j] / sum) * scale : eb[j] / sum;
#else
  int32_t rk[16] __attribute__((aligned(32)));
  _mm256_store_si256((__m256i *)rk, _mm256_blendv_epi8(kk, _mm256_min_epi32(r0, kk), m0));
  _mm256_store_si256((__m256i *)(rk + 8), _mm256_blendv_epi8(kk, _mm256_min_epi32(r1, kk), m1));
  float ow[16] __attribute__((aligned(32)));
  int32_t oi[16] __attribute__((aligned(32)));
  for (int j = 0; j < 16; j++) {
    ow[rk[j]] = ex[j];
    oi[rk[j]] = ci[j];
  }
  float sum = 0.0f;
  for (uint32_t j = 0; j < k; j++) sum = sum + ow[j];
  const __m256i km = _mm256_cmpgt_epi32(kk, iota);
  __m256 wv = _mm256_div_ps(_mm256_load_ps(ow), _mm256_set1_ps(sum));
  if (scale != 1.0f) wv = _mm256_mul_ps(wv, _mm256_set1_ps(scale));
  _mm256_maskstore_ps(w, km, wv);
  _mm256_maskstore_epi32(id, km, _mm256_load_si256((const __m256i *)oi));
#endif
  return 0;
}

static moert_status fast_route(const moert_router_cfg *cfg, const float *logits, uint32_t T, int32_t *ids, float *weights) {
  const uint32_t E = cfg->num_experts, k = cfg->top_k;
#if PAIR
  for (uint32_t t = 0; t + 1 < T; t += 2) {
    int a = fast_row(logits + (size_t)t * E, E, k, cfg->scale, ids + (size_t)t * k, weights + (size_t)t * k);
    int b = fast_row(logits + (size_t)(t + 1) * E, E, k, cfg->scale, ids + (size_t)(t + 1) * k, weights + (size_t)(t + 1) * k);
    if (a | b) { moert_status st = moert_route_host(cfg, logits + (size_t)t * E, MOERT_DTYPE_F32, E, 2, NULL, ids + (size_t)t * k, weights + (size_t)t * k); if (st) return st; }
  }
  if (T & 1) { uint32_t t = T - 1;
#else
  for (uint32_t t = 0; t < T; t++) {
#endif
    const float *r = logits + (size_t)t * E;
    if (fast_row(r, E, k, cfg->scale, ids + (size_t)t * k, weights + (size_t)t * k)) {
      moert_status st = moert_route_host(cfg, r, MOERT_DTYPE_F32, E, 1, NULL, ids + (size_t)t * k, weights + (size_t)t * k);
      if (st) return st;
    }
  }
  return MOERT_OK;
}
