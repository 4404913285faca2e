/* AVX2: threshold + compaction as topk_row_avx2, then a bitonic sort of the 16 candidates */
__attribute__((target("avx2"))) static inline void cx(__m256 *V, __m256 *I, int j, const int dmask) {
  __m256 Vp, Ip;
  if (j == 1) { Vp = _mm256_permute_ps(*V, 0xB1); Ip = _mm256_permute_ps(*I, 0xB1); }
  else if (j == 2) { Vp = _mm256_permute_ps(*V, 0x4E); Ip = _mm256_permute_ps(*I, 0x4E); }
  else { Vp = _mm256_permute2f128_ps(*V, *V, 1); Ip = _mm256_permute2f128_ps(*I, *I, 1); }
  const __m256i D = _mm256_setr_epi32(dmask & 1 ? -1 : 0, dmask & 2 ? -1 : 0, dmask & 4 ? -1 : 0, dmask & 8 ? -1 : 0,
                                      dmask & 16 ? -1 : 0, dmask & 32 ? -1 : 0, dmask & 64 ? -1 : 0, dmask & 128 ? -1 : 0);
  const __m256 take = _mm256_xor_ps(_mm256_cmp_ps(*V, Vp, _CMP_GT_OQ), _mm256_castsi256_ps(D));
  *V = _mm256_blendv_ps(*V, Vp, take);
  *I = _mm256_blendv_ps(*I, Ip, take);
}
/* want-max lane masks: descending sort of 8, stage (size, j) */
static inline int wm(int size, int j, int desc) { int m = 0; for (int l = 0; l < 8; l++) { int w = ((l & j) == 0) ^ ((l & size) != 0); if (!desc) w = !w; if (size == 8 && desc) w = (l & j) == 0; if (size == 8 && !desc) w = (l & j) != 0; m |= w << l; } return m; }
__attribute__((target("avx2"))) static int32_t topk_bit(const float *row, uint32_t E, uint32_t k, float *vals, int32_t *idx) {
  const uint32_t nv = E / 8;
  if (k > 8 || nv < 2 || (E & 7)) return topk_row(row, E, k, vals, idx);
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  __m256 A = ninf, B = ninf;
  for (uint32_t v = 0; v < nv; v++) {
    const __m256 x = _mm256_loadu_ps(row + 8 * v);
    B = _mm256_max_ps(B, _mm256_min_ps(A, x));
    A = _mm256_max_ps(A, x);
  }
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
  __m256 th = _mm256_max_ps(_mm256_blendv_ps(ninf, A, _mm256_castsi256_ps(_mm256_cmpgt_epi32(cA, km1))),
                            _mm256_blendv_ps(ninf, B, _mm256_castsi256_ps(_mm256_cmpgt_epi32(cB, km1))));
  th = _mm256_max_ps(th, _mm256_permute2f128_ps(th, th, 1));
  th = _mm256_max_ps(th, _mm256_shuffle_ps(th, th, _MM_SHUFFLE(1, 0, 3, 2)));
  th = _mm256_max_ps(th, _mm256_shuffle_ps(th, th, _MM_SHUFFLE(2, 3, 0, 1)));
  float cv[MOERT_MAX_EXPERTS + 16] __attribute__((aligned(32)));
  int32_t ci[MOERT_MAX_EXPERTS + 16] __attribute__((aligned(32)));
  uint32_t C = 0;
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
  __m256 V0 = _mm256_load_ps(cv), V1 = _mm256_load_ps(cv + 8);
  __m256 I0 = _mm256_load_ps((const float *)ci), I1 = _mm256_load_ps((const float *)ci + 8);
  if (_mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(V0, V0, _CMP_UNORD_Q), _mm256_cmp_ps(V1, V1, _CMP_UNORD_Q))))
    return topk_row(row, E, k, vals, idx);
  /* sort V0 descending, V1 ascending */
#define ST(size, j) cx(&V0, &I0, j, wm(size, j, 1)); cx(&V1, &I1, j, wm(size, j, 0));
  ST(2, 1) ST(4, 2) ST(4, 1) ST(8, 4) ST(8, 2) ST(8, 1)
#undef ST
  /* V0 <- max: the top 8 (bitonic); V1 <- min */
  const __m256 gt = _mm256_cmp_ps(V0, V1, _CMP_GT_OQ);
  const __m256 nV0 = _mm256_blendv_ps(V1, V0, gt), nI0 = _mm256_blendv_ps(I1, I0, gt);
  __m256 rest = _mm256_min_ps(V0, V1);
  V0 = nV0, I0 = nI0;
  cx(&V0, &I0, 4, wm(8, 4, 1)); cx(&V0, &I0, 2, wm(8, 2, 1)); cx(&V0, &I0, 1, wm(8, 1, 1));
  /* ties inside the top k or at its edge: sorted[p] == sorted[p+1] for p < k */
  rest = _mm256_max_ps(rest, _mm256_permute2f128_ps(rest, rest, 1));
  rest = _mm256_max_ps(rest, _mm256_permute_ps(rest, 0x4E));
  rest = _mm256_max_ps(rest, _mm256_permute_ps(rest, 0xB1)); /* sorted[8] in every lane */
  /* next[p] = sorted[p+1] (p < 7), sorted[8] at p = 7 */
  const __m256 next = _mm256_blend_ps(_mm256_permutevar8x32_ps(V0, _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7)), rest, 0x80);
  const int eq = _mm256_movemask_ps(_mm256_cmp_ps(V0, next, _CMP_EQ_OQ));
  if (eq & ((1 << k) - 1)) return topk_row(row, E, k, vals, idx);
  const __m256i km = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  _mm256_maskstore_ps(vals, km, V0);
  _mm256_maskstore_epi32(idx, km, _mm256_castps_si256(I0));
  return -1;
}
