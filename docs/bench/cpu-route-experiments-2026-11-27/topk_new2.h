/* rank-based selection among threshold candidates, fixed 16 slots */
static inline __attribute__((always_inline)) int32_t topk_row_rank2(const float *row, uint32_t E, uint32_t k, float *vals, int32_t *idx) {
  const uint32_t nv = E / 4, d = (k + 3) / 4;
  if (k > 8 || E > 128 || nv < d || nv < 2 || (E & 3)) return topk_row(row, E, k, vals, idx);
  __m128 lo;
  if (d == 1) lo = cell_threshold(row, nv, 1); else lo = cell_threshold(row, nv, 2);
  enum { CAP = 16 };
  float cv[CAP] __attribute__((aligned(16)));
  int32_t ci[CAP] __attribute__((aligned(16)));
  uint64_t w0 = 0, w1 = 0;
  for (uint32_t v = 0; v < nv && v < 16; v++)
    w0 |= (uint64_t)_mm_movemask_ps(_mm_cmpnlt_ps(_mm_loadu_ps(row + 4 * v), lo)) << (4 * v);
  for (uint32_t v = 16; v < nv; v++)
    w1 |= (uint64_t)_mm_movemask_ps(_mm_cmpnlt_ps(_mm_loadu_ps(row + 4 * v), lo)) << (4 * (v - 16));
  const uint32_t C = (uint32_t)(__builtin_popcountll(w0) + __builtin_popcountll(w1));
  if (C > CAP) return topk_row(row, E, k, vals, idx);
  for (uint32_t j = 0; j < CAP; j += 4) _mm_store_ps(cv + j, _mm_set1_ps(-__builtin_inff()));
  uint32_t nan = 0;
  for (uint32_t c = 0; c < C; c++) {
    const uint64_t cur = w0 ? w0 : w1;
    const uint32_t e = (w0 ? 0u : 64u) + (uint32_t)__builtin_ctzll(cur);
    if (w0) w0 &= w0 - 1; else w1 &= w1 - 1;
    const float x = row[e];
    nan |= x != x;
    cv[c] = x;
    ci[c] = (int32_t)e;
  }
  if (nan) return topk_row(row, E, k, vals, idx);
  __m128 V0 = _mm_load_ps(cv), V1 = _mm_load_ps(cv + 4), V2 = _mm_load_ps(cv + 8), V3 = _mm_load_ps(cv + 12);
  __m128i r0 = _mm_setzero_si128(), r1 = r0, r2 = r0, r3 = r0;
  for (uint32_t i = 0; i < CAP; i++) {
    const __m128 vi = _mm_set1_ps(cv[i]);
    r0 = _mm_sub_epi32(r0, _mm_castps_si128(_mm_cmpgt_ps(vi, V0)));
    r1 = _mm_sub_epi32(r1, _mm_castps_si128(_mm_cmpgt_ps(vi, V1)));
    r2 = _mm_sub_epi32(r2, _mm_castps_si128(_mm_cmpgt_ps(vi, V2)));
    r3 = _mm_sub_epi32(r3, _mm_castps_si128(_mm_cmpgt_ps(vi, V3)));
  }
  /* real lanes: lane < C; others get rank k (the dummy slot) */
  const __m128i iota = _mm_setr_epi32(0, 1, 2, 3), cC = _mm_set1_epi32((int)C), kk = _mm_set1_epi32((int)k);
  __m128i m0 = _mm_cmpgt_epi32(cC, iota), m1 = _mm_cmpgt_epi32(cC, _mm_add_epi32(iota, _mm_set1_epi32(4)));
  __m128i m2 = _mm_cmpgt_epi32(cC, _mm_add_epi32(iota, _mm_set1_epi32(8))), m3 = _mm_cmpgt_epi32(cC, _mm_add_epi32(iota, _mm_set1_epi32(12)));
  __m128i s = _mm_add_epi32(_mm_add_epi32(_mm_and_si128(r0, m0), _mm_and_si128(r1, m1)), _mm_add_epi32(_mm_and_si128(r2, m2), _mm_and_si128(r3, m3)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  if ((uint32_t)_mm_cvtsi128_si32(s) != C * (C - 1) / 2) return topk_row(row, E, k, vals, idx);
#define CLAMP(r, m) _mm_or_si128(_mm_and_si128(m, _mm_or_si128(_mm_and_si128(_mm_cmpgt_epi32(kk, r), r), _mm_andnot_si128(_mm_cmpgt_epi32(kk, r), kk))), _mm_andnot_si128(m, kk))
  int32_t rk[CAP] __attribute__((aligned(16)));
  _mm_store_si128((__m128i *)rk, CLAMP(r0, m0));
  _mm_store_si128((__m128i *)(rk + 4), CLAMP(r1, m1));
  _mm_store_si128((__m128i *)(rk + 8), CLAMP(r2, m2));
  _mm_store_si128((__m128i *)(rk + 12), CLAMP(r3, m3));
#undef CLAMP
  float ov[MOERT_MAX_TOP_K + 1];
  int32_t oi[MOERT_MAX_TOP_K + 1];
  for (uint32_t j = 0; j < CAP; j++) {
    ov[rk[j]] = cv[j];
    oi[rk[j]] = ci[j];
  }
  memcpy(vals, ov, k * sizeof *vals);
  memcpy(idx, oi, k * sizeof *idx);
  return -1;
}
