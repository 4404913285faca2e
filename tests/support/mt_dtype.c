/* mt_dtype.c — bf16/f16 <-> f32, typed loads/stores and poison patterns, written
 * independently of runtime/dtype.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moert_test.h"

static uint32_t f2u(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float u2f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float mt_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t mt_f32_to_bf16(float f) {
  uint32_t u = f2u(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
  uint32_t lsb = (u >> 16) & 1u;
  return (uint16_t)((u + 0x7fffu + lsb) >> 16);
}

float mt_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  float v;
  if (e == 0) {
    v = ldexpf((float)m, -24);
  } else if (e == 31) {
    return u2f(sign | 0x7f800000u | (m << 13));
  } else {
    v = ldexpf((float)(m | 0x400u), (int)e - 25);
  }
  return u2f(f2u(v) | sign);
}

uint16_t mt_f32_to_f16(float f) {
  uint32_t u = f2u(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
  if (a >= 0x47800000u) return (uint16_t)(sign | 0x7c00u); /* >= 65536: inf */
  if (a < 0x38800000u) { /* below 2^-14: subnormal or zero; f * 2^24 is exact */
    float s = u2f(a) * 16777216.0f;
    return (uint16_t)(sign | (uint16_t)nearbyintf(s)); /* 1024 rounds up into a normal */
  }
  uint32_t e = (a >> 23) - 127 + 15, m = a & 0x7fffffu;
  uint32_t h = (e << 10) | (m >> 13), rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* may carry into inf: correct */
  return (uint16_t)(sign | h);
}

size_t mt_dtype_size(moert_dtype dtype) {
  switch (dtype) {
    case MOERT_DTYPE_F32: return 4;
    case MOERT_DTYPE_BF16:
    case MOERT_DTYPE_F16: return 2;
    default: return 0;
  }
}

const char *mt_dtype_name(moert_dtype dtype) {
  switch (dtype) {
    case MOERT_DTYPE_F32: return "f32";
    case MOERT_DTYPE_BF16: return "bf16";
    case MOERT_DTYPE_F16: return "f16";
    default: return "?";
  }
}

double mt_load(const void *buf, moert_dtype dtype, size_t i) {
  switch (dtype) {
    case MOERT_DTYPE_F32: return ((const float *)buf)[i];
    case MOERT_DTYPE_BF16: return mt_bf16_to_f32(((const uint16_t *)buf)[i]);
    case MOERT_DTYPE_F16: return mt_f16_to_f32(((const uint16_t *)buf)[i]);
    default: abort();
  }
}

double mt_store(void *buf, moert_dtype dtype, size_t i, double v) {
  float f = (float)v;
  switch (dtype) {
    case MOERT_DTYPE_F32: ((float *)buf)[i] = f; break;
    case MOERT_DTYPE_BF16: ((uint16_t *)buf)[i] = mt_f32_to_bf16(f); break;
    case MOERT_DTYPE_F16: ((uint16_t *)buf)[i] = mt_f32_to_f16(f); break;
    default: abort();
  }
  return mt_load(buf, dtype, i);
}

void mt_fill_uniform(mt_rng *r, void *buf, moert_dtype dtype, size_t n, double lo, double hi) {
  for (size_t i = 0; i < n; i++) mt_store(buf, dtype, i, mt_uniform(r, lo, hi));
}

void mt_decode(const void *buf, moert_dtype dtype, size_t n, double *out) {
  switch (dtype) {
    case MOERT_DTYPE_F32:
      for (size_t i = 0; i < n; i++) out[i] = ((const float *)buf)[i];
      break;
    case MOERT_DTYPE_BF16:
      for (size_t i = 0; i < n; i++) out[i] = mt_bf16_to_f32(((const uint16_t *)buf)[i]);
      break;
    case MOERT_DTYPE_F16:
      for (size_t i = 0; i < n; i++) out[i] = mt_f16_to_f32(((const uint16_t *)buf)[i]);
      break;
    default: abort();
  }
}

void *mt_alloc(size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0 || !p) {
    fprintf(stderr, "mt_alloc: out of memory for %zu bytes\n", bytes);
    abort();
  }
  return p;
}

void mt_free(void *p) { free(p); }

/* ---- poison ---- */
#define MT_POISON_F32 0x7fd1ce5bu /* quiet NaN with a payload */
#define MT_POISON_16 0x7fd1u       /* bf16: quiet NaN; f16: NaN 0x7fd1 too (e=31, m!=0) */

void mt_poison(void *buf, moert_dtype dtype, size_t n) {
  if (dtype == MOERT_DTYPE_F32) {
    uint32_t *p = buf;
    for (size_t i = 0; i < n; i++) p[i] = MT_POISON_F32;
  } else {
    uint16_t *p = buf;
    for (size_t i = 0; i < n; i++) p[i] = MT_POISON_16;
  }
}

int mt_is_poison(const void *buf, moert_dtype dtype, size_t i) {
  if (dtype == MOERT_DTYPE_F32) return ((const uint32_t *)buf)[i] == MT_POISON_F32;
  return ((const uint16_t *)buf)[i] == MT_POISON_16;
}

void mt_poison_bytes(void *buf, size_t n) { memset(buf, 0xa5, n); }
