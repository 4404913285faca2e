#include <immintrin.h>
static uint32_t g_perm[256][8];
static void init_perm(void){ for(int m=0;m<256;m++){int n=0; for(int l=0;l<8;l++) if(m>>l&1) g_perm[m][n++]=l; while(n<8) g_perm[m][n++]=0;} }
__attribute__((target("avx2,popcnt,bmi"))) static int32_t topk_avx2(const float *row, uint32_t E, uint32_t k, float *vals, int32_t *idx) {
  const uint32_t nv = E / 8;
  if (k > 8 || nv < 2 || (E & 7)) return topk_row(row, E, k, vals, idx);
  /* 8 cells (lanes), the 2 largest of each */
  __m256 A = _mm256_set1_ps(-__builtin_inff()), B = A;
  for (uint32_t v = 0; v < nv; v++) {
    __m256 x = _mm256_loadu_ps(row + 8 * v);
    __m256 lo = _mm256_min_ps(A, x);
    A = _mm256_max_ps(A, x);
    B = _mm256_max_ps(B, lo);
  }
  /* theta: the k-th largest of the 16 tracked values (>= k elements are >= theta) */
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
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  __m256 th = _mm256_max_ps(_mm256_blendv_ps(ninf, A, _mm256_castsi256_ps(_mm256_cmpgt_epi32(cA, km1))),
                            _mm256_blendv_ps(ninf, B, _mm256_castsi256_ps(_mm256_cmpgt_epi32(cB, km1))));
  th = _mm256_max_ps(th, _mm256_permute2f128_ps(th, th, 1));
  th = _mm256_max_ps(th, _mm256_shuffle_ps(th, th, _MM_SHUFFLE(1, 0, 3, 2)));
  th = _mm256_max_ps(th, _mm256_shuffle_ps(th, th, _MM_SHUFFLE(2, 3, 0, 1)));
  /* candidates: x >= theta (and NaN: not less than), compacted in index order */
  float cv[MOERT_MAX_EXPERTS + 16] __attribute__((aligned(32)));
  int32_t ci[MOERT_MAX_EXPERTS + 16] __attribute__((aligned(32)));
  uint32_t C = 0;
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (uint32_t v = 0; v < nv; v++) {
    const __m256 x = _mm256_loadu_ps(row + 8 * v);
    const uint32_t m = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(x, th, _CMP_NLT_UQ));
    const __m256i p = _mm256_load_si256((const __m256i *)g_perm[m]);
    _mm256_storeu_ps(cv + C, _mm256_permutevar8x32_ps(x, p));
    _mm256_storeu_si256((__m256i *)(ci + C), _mm256_add_epi32(p, _mm256_set1_epi32((int)(8 * v))));
    C += (uint32_t)__builtin_popcount(m);
  }
  if (C > 16) return topk_row(row, E, k, vals, idx);
  _mm256_storeu_ps(cv + C, ninf);
  _mm256_storeu_ps(cv + C + 8, ninf);
  const __m256 V0 = _mm256_load_ps(cv), V1 = _mm256_load_ps(cv + 8);
  /* NaN among the candidates: the general path finds the first one */
  if (_mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(V0, V0, _CMP_UNORD_Q), _mm256_cmp_ps(V1, V1, _CMP_UNORD_Q))))
    return topk_row(row, E, k, vals, idx);
  __m256i r0 = _mm256_setzero_si256(), r1 = r0;
  for (int i = 0; i < 16; i++) {
    const __m256 t = _mm256_broadcast_ss(cv + i);
    r0 = _mm256_sub_epi32(r0, _mm256_castps_si256(_mm256_cmp_ps(t, V0, _CMP_GT_OQ)));
    r1 = _mm256_sub_epi32(r1, _mm256_castps_si256(_mm256_cmp_ps(t, V1, _CMP_GT_OQ)));
  }
  const __m256i cC = _mm256_set1_epi32((int)C), kk = _mm256_set1_epi32((int)k);
  const __m256i m0 = _mm256_cmpgt_epi32(cC, iota), m1 = _mm256_cmpgt_epi32(cC, _mm256_add_epi32(iota, _mm256_set1_epi32(8)));
  __m256i s = _mm256_add_epi32(_mm256_and_si256(r0, m0), _mm256_and_si256(r1, m1));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
  /* strict ranks are distinct exactly when no two candidates tie */
  if ((uint32_t)_mm_cvtsi128_si32(s4) != C * (C - 1) / 2) return topk_row(row, E, k, vals, idx);
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
