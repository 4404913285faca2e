/* fuzz_common.h — shared by the libFuzzer targets in tests/fuzz/ (built by tools/fuzz.sh,
 * which links the library's sources directly): a reader that turns the fuzzer's bytes
 * into values (zeros once the input runs out), the special float values an input can
 * pick, and a checked abort that names what broke. */
#ifndef MOERT_FUZZ_COMMON_H
#define MOERT_FUZZ_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moert.h"

typedef struct fz {
  const uint8_t *p;
  size_t n;
} fz;

static inline uint8_t fz_u8(fz *f) {
  if (!f->n) return 0;
  f->n--;
  return *f->p++;
}
static inline uint16_t fz_u16(fz *f) { return (uint16_t)(fz_u8(f) | (unsigned)fz_u8(f) << 8); }
static inline uint32_t fz_u32(fz *f) { return fz_u16(f) | (uint32_t)fz_u16(f) << 16; }
static inline uint64_t fz_u64(fz *f) { return fz_u32(f) | (uint64_t)fz_u32(f) << 32; }
/* a value in 0..n-1 */
static inline uint32_t fz_below(fz *f, uint32_t n) { return n ? fz_u32(f) % n : 0; }

/* A float32 logit: mostly ordinary values, often the hard ones. */
static inline float fz_logit(fz *f) {
  uint8_t sel = fz_u8(f);
  switch (sel & 15) {
  case 0: return NAN;
  case 1: return INFINITY;
  case 2: return -INFINITY;
  case 3: return 0.0f;
  case 4: return -0.0f;
  case 5: return 3.4028235e38f;
  case 6: return -3.4028235e38f;
  case 7: return 1e-45f;
  case 8: { /* raw bits: any float at all */
    uint32_t u = fz_u32(f);
    float v;
    memcpy(&v, &u, 4);
    return v;
  }
  case 9: return (float)(sel >> 4); /* small integers: many exact ties */
  default: return (float)(int8_t)fz_u8(f) * 0.0625f;
  }
}

static inline uint16_t fz_f32_to_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static inline float fz_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float v;
  memcpy(&v, &u, 4);
  return v;
}
static inline float fz_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0x1f) u = sign | 0x7f800000u | (man << 13);
  else if (exp == 0) {
    float v = (float)man * 5.9604644775390625e-8f;
    return sign ? -v : v;
  } else u = sign | ((exp + 112u) << 23) | (man << 13);
  float v;
  memcpy(&v, &u, 4);
  return v;
}

#define FZ_CHECK(cond, ...)                                         \
  do {                                                              \
    if (!(cond)) {                                                  \
      fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                 \
      fprintf(stderr, " (last error: \"%s\")\n", moert_last_error()); \
      abort();                                                      \
    }                                                               \
  } while (0)

/* A failing call must leave a sentence. */
#define FZ_FAILED_WELL(st) \
  FZ_CHECK((st) > 0 && (st) < MOERT_STATUS_END_ && moert_last_error()[0], "status %d", (int)(st))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
