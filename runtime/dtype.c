/* dtype.c — conversions between float32 and the 16-bit float formats (round to nearest
 * even, NaN kept NaN, subnormals exact), with no dependence on compiler _Float16 support. */
#include <string.h>

#include "internal.h"

size_t moert_dtype_size(moert_dtype dtype) {
  switch (dtype) {
  case MOERT_DTYPE_F32: return 4;
  case MOERT_DTYPE_BF16:
  case MOERT_DTYPE_F16: return 2;
  default: return 0;
  }
}

const char *moert_dtype_name(moert_dtype dtype) {
  switch (dtype) {
  case MOERT_DTYPE_F32: return "f32";
  case MOERT_DTYPE_BF16: return "bf16";
  case MOERT_DTYPE_F16: return "f16";
  default: return "unknown";
  }
}

static inline float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

float moert_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t moert_f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float moert_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) { /* zero or subnormal: man * 2^-24 is exact in float */
    float v = (float)man * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t moert_f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
  if (a < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
    /* value * 2^24 rounded to an integer, nearest even, is the subnormal mantissa */
    float v = bits_f32(a) * 16777216.0f;
    uint32_t m = (uint32_t)v;
    float frac = v - (float)m;
    if (frac > 0.5f || (frac == 0.5f && (m & 1u))) m++;
    return (uint16_t)(sign | m);
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u); /* round the 13 dropped bits */
  return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

float moert_load_f32(const void *src, moert_dtype dtype, size_t i) {
  switch (dtype) {
  case MOERT_DTYPE_F32: return ((const float *)src)[i];
  case MOERT_DTYPE_BF16: return moert_bf16_to_f32(((const uint16_t *)src)[i]);
  default: return moert_f16_to_f32(((const uint16_t *)src)[i]);
  }
}

void moert_to_f32(const void *src, moert_dtype dtype, float *dst, size_t n) {
  if (dtype == MOERT_DTYPE_F32) {
    memcpy(dst, src, n * 4);
  } else if (dtype == MOERT_DTYPE_BF16) {
    const uint16_t *s = (const uint16_t *)src;
    for (size_t i = 0; i < n; i++) dst[i] = bits_f32((uint32_t)s[i] << 16);
  } else {
    const uint16_t *s = (const uint16_t *)src;
    for (size_t i = 0; i < n; i++) dst[i] = moert_f16_to_f32(s[i]);
  }
}

void moert_from_f32(const float *src, moert_dtype dtype, void *dst, size_t n) {
  if (dtype == MOERT_DTYPE_F32) {
    memcpy(dst, src, n * 4);
  } else if (dtype == MOERT_DTYPE_BF16) {
    uint16_t *d = (uint16_t *)dst;
    for (size_t i = 0; i < n; i++) d[i] = moert_f32_to_bf16(src[i]);
  } else {
    uint16_t *d = (uint16_t *)dst;
    for (size_t i = 0; i < n; i++) d[i] = moert_f32_to_f16(src[i]);
  }
}
