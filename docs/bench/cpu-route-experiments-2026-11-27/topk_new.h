/* rank-based selection among threshold candidates */
static int32_t topk_row_rank(const float *row, uint32_t E, uint32_t k, float *vals, int32_t *idx) {
  const uint32_t nv = E / 4, d = (k + 3) / 4;
  if (nv < d || nv < 2 || (E & 3)) return topk_row_scan(row, E, k, vals, idx);
  __m128 lo;
  switch (d) {
  case 1: lo = cell_threshold(row, nv, 1); break;
  case 2: lo = cell_threshold(row, nv, 2); break;
  case 3: lo = cell_threshold(row, nv, 3); break;
  default: lo = cell_threshold(row, nv, 4); break;
  }
  enum { CAP = 32 };
  float cv[CAP + 4] __attribute__((aligned(16)));
  int32_t ci[CAP + 4] __attribute__((aligned(16)));
  uint32_t C = 0;
  uint32_t nan = 0;
  for (uint32_t w = 0; w < (nv + 15) / 16; w++) {
    uint64_t word = 0;
    const uint32_t v1 = 16 * w + 16 < nv ? 16 * w + 16 : nv;
    for (uint32_t v = 16 * w; v < v1; v++)
      word |= (uint64_t)_mm_movemask_ps(_mm_cmpnlt_ps(_mm_loadu_ps(row + 4 * v), lo)) << (4 * (v - 16 * w));
    const uint32_t pc = (uint32_t)__builtin_popcountll(word);
    if (C + pc > CAP) return topk_row(row, E, k, vals, idx);
    while (word) {
      const uint32_t e = 64 * w + (uint32_t)__builtin_ctzll(word);
      word &= word - 1;
      const float x = row[e];
      nan |= x != x;
      cv[C] = x;
      ci[C] = (int32_t)e;
      C++;
    }
  }
  if (nan) return topk_row(row, E, k, vals, idx);
  for (uint32_t j = C; j < ((C + 3) & ~3u); j++) cv[j] = -__builtin_inff(), ci[j] = 0x7fffffff;
  const uint32_t nb = (C + 3) / 4;
  __m128i rank[CAP / 4];
  __m128 V[CAP / 4];
  for (uint32_t b = 0; b < nb; b++) rank[b] = _mm_setzero_si128(), V[b] = _mm_load_ps(cv + 4 * b);
  for (uint32_t i = 0; i < C; i++) {
    const __m128 vi = _mm_set1_ps(cv[i]);
    for (uint32_t b = 0; b < nb; b++)
      rank[b] = _mm_sub_epi32(rank[b], _mm_castps_si128(_mm_cmpgt_ps(vi, V[b])));
  }
  int32_t rk[CAP] __attribute__((aligned(16)));
  for (uint32_t b = 0; b < nb; b++) _mm_store_si128((__m128i *)(rk + 4 * b), rank[b]);
  /* ranks by strict '>' are distinct exactly when no two candidates tie */
  uint32_t sum = 0;
  for (uint32_t j = 0; j < C; j++) sum += (uint32_t)rk[j];
  if (sum != C * (C - 1) / 2) return topk_row(row, E, k, vals, idx);
  float ov[MOERT_MAX_TOP_K + 1];
  int32_t oi[MOERT_MAX_TOP_K + 1];
  for (uint32_t j = 0; j < C; j++) {
    const uint32_t r = (uint32_t)rk[j] < k ? (uint32_t)rk[j] : k;
    ov[r] = cv[j];
    oi[r] = ci[j];
  }
  memcpy(vals, ov, k * sizeof *vals);
  memcpy(idx, oi, k * sizeof *idx);
  return -1;
}
