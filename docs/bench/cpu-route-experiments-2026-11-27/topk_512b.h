__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,popcnt"))) static int32_t topk_512b(const float *row, uint32_t E, uint32_t k, float *vals, int32_t *idx) {
  const uint32_t nv = E / 16;
  if (k > 8 || nv < 2 || (E & 15)) return topk_row(row, E, k, vals, idx);
  const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
  __m512 A = ninf, B = ninf;
  for (uint32_t v = 0; v < nv; v++) {
    const __m512 x = _mm512_loadu_ps(row + 16 * v);
    B = _mm512_max_ps(B, _mm512_min_ps(A, x));
    A = _mm512_max_ps(A, x);
  }
  /* fold cells l and l+8: top-2 of each pair of sorted pairs -> 8 cells, 16 tracked values */
  const __m256 a = _mm512_castps512_ps256(A), a2 = _mm512_extractf32x8_ps(A, 1);
  const __m256 b = _mm512_castps512_ps256(B), b2 = _mm512_extractf32x8_ps(B, 1);
  const __m256 fa = _mm256_max_ps(a, a2), fb = _mm256_max_ps(_mm256_min_ps(a, a2), _mm256_max_ps(b, b2));
  const __m512 Tr = _mm512_insertf32x8(_mm512_castps256_ps512(fa), fb, 1);
  float tr[16] __attribute__((aligned(64)));
  _mm512_store_ps(tr, Tr);
  __m512i cnt = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi32(1);
  for (int i = 0; i < 16; i++) {
    const __mmask16 m = _mm512_cmp_ps_mask(_mm512_set1_ps(tr[i]), Tr, _CMP_GE_OQ);
    cnt = _mm512_mask_add_epi32(cnt, m, cnt, one);
  }
  const __mmask16 ok = _mm512_cmpge_epi32_mask(cnt, _mm512_set1_epi32((int)k));
  const __m512 thv = _mm512_set1_ps(_mm512_mask_reduce_max_ps(ok, Tr));
  /* candidates */
  __mmask16 mk[MOERT_MAX_EXPERTS / 16];
  uint32_t C = 0;
  for (uint32_t v = 0; v < nv; v++) {
    mk[v] = _mm512_cmp_ps_mask(_mm512_loadu_ps(row + 16 * v), thv, _CMP_NLT_UQ);
    C += (uint32_t)__builtin_popcount(mk[v]);
  }
  if (C > 16) return topk_row(row, E, k, vals, idx);
  float cv[MOERT_MAX_EXPERTS + 32] __attribute__((aligned(64)));
  int32_t ci[MOERT_MAX_EXPERTS + 32] __attribute__((aligned(64)));
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  uint32_t c = 0;
  for (uint32_t v = 0; v < nv; v++) {
    _mm512_storeu_ps(cv + c, _mm512_maskz_compress_ps(mk[v], _mm512_loadu_ps(row + 16 * v)));
    _mm512_storeu_si512(ci + c, _mm512_maskz_compress_epi32(mk[v], _mm512_add_epi32(iota, _mm512_set1_epi32((int)(16 * v)))));
    c += (uint32_t)__builtin_popcount(mk[v]);
  }
  _mm512_storeu_ps(cv + C, ninf);
  const __m512 V = _mm512_load_ps(cv);
  const __m512i I = _mm512_load_si512(ci);
  if (_mm512_cmp_ps_mask(V, V, _CMP_UNORD_Q)) return topk_row(row, E, k, vals, idx);
  __m512i r = _mm512_setzero_si512();
  for (int i = 0; i < 16; i++) {
    const __mmask16 m = _mm512_cmp_ps_mask(_mm512_set1_ps(cv[i]), V, _CMP_GT_OQ);
    r = _mm512_mask_add_epi32(r, m, r, one);
  }
  const __mmask16 real = (__mmask16)((1u << C) - 1);
  if ((uint32_t)_mm512_mask_reduce_add_epi32(real, r) != C * (C - 1) / 2) return topk_row(row, E, k, vals, idx);
  const __mmask16 sel = _mm512_mask_cmplt_epi32_mask(real, r, _mm512_set1_epi32((int)k));
  (void)sel;
  int32_t rk[16] __attribute__((aligned(64)));
  _mm512_store_si512(rk, _mm512_mask_blend_epi32(real, _mm512_set1_epi32((int)k), _mm512_min_epi32(r, _mm512_set1_epi32((int)k))));
  float ov[MOERT_MAX_TOP_K + 1];
  int32_t oi[MOERT_MAX_TOP_K + 1];
  for (int j = 0; j < 16; j++) { ov[rk[j]] = cv[j]; oi[rk[j]] = ci[j]; }
  for (uint32_t j = 0; j < k; j++) { vals[j] = ov[j]; idx[j] = oi[j]; }
  return -1;
}
