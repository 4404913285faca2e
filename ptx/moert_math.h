/* moert_math.h — float helpers that give the same bits on the host (C, compiled with
 * -ffp-contract=off) and on the GPU (CUDA through NVRTC), so the host and device routers
 * agree bit for bit.  Every multiply and add is a separately rounded IEEE operation
 * (__fmul_rn/__fadd_rn never fuse on the device); no libm call is made, since expf differs
 * between glibc and CUDA in the last bit. */
#ifndef MOERT_MATH_H
#define MOERT_MATH_H

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define MOERT_MATH_FN static __device__ __forceinline__
#define MOERT_FMUL(a, b) __fmul_rn((a), (b))
#define MOERT_FADD(a, b) __fadd_rn((a), (b))
#define MOERT_FDIV(a, b) __fdiv_rn((a), (b))
MOERT_MATH_FN float moert_bits_to_float(unsigned int u) { return __uint_as_float(u); }
#else
#include <string.h>
#define MOERT_MATH_FN static inline
#define MOERT_FMUL(a, b) ((float)(a) * (float)(b))
#define MOERT_FADD(a, b) ((float)(a) + (float)(b))
#define MOERT_FDIV(a, b) ((float)(a) / (float)(b))
MOERT_MATH_FN float moert_bits_to_float(unsigned int u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
#endif

/* e^x to within about 1 ulp: x = n ln2 + r, |r| <= ln2/2, a degree-7 Taylor polynomial for
 * e^r (truncation under 6e-9 relative), then a scale by 2^n built from bits. */
MOERT_MATH_FN float moert_expf(float x) {
  if (x != x) return x;
  if (x > 88.72283935546875f) return moert_bits_to_float(0x7f800000u); /* +inf */
  if (x < -103.97208404541015625f) return 0.0f;
  const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  float n = MOERT_FADD(MOERT_FADD(MOERT_FMUL(x, 1.44269502162933349609375f), magic), -magic);
  /* ln2 = hi + lo; hi has 16 significant bits so n * hi is exact */
  float r = MOERT_FADD(x, -MOERT_FMUL(n, 0.693145751953125f));
  r = MOERT_FADD(r, -MOERT_FMUL(n, 1.428606765330187045e-06f));
  float p = 1.98412698412698413e-4f; /* 1/7! */
  p = MOERT_FADD(MOERT_FMUL(p, r), 1.38888888888888889e-3f);
  p = MOERT_FADD(MOERT_FMUL(p, r), 8.33333333333333333e-3f);
  p = MOERT_FADD(MOERT_FMUL(p, r), 4.16666666666666667e-2f);
  p = MOERT_FADD(MOERT_FMUL(p, r), 1.66666666666666667e-1f);
  p = MOERT_FADD(MOERT_FMUL(p, r), 0.5f);
  p = MOERT_FADD(MOERT_FMUL(p, r), 1.0f);
  p = MOERT_FADD(MOERT_FMUL(p, r), 1.0f);
  int ni = (int)n;
  if (ni > 127) { /* only x in (88.38, 88.72]: 2^128 is not a float, scale in two steps */
    p = MOERT_FMUL(p, 2.0f);
    ni -= 1;
  }
  if (ni < -126) { /* subnormal results: scale by 2^-64 first (exact) */
    p = MOERT_FMUL(p, 5.42101086242752217e-20f);
    ni += 64;
  }
  return MOERT_FMUL(p, moert_bits_to_float((unsigned int)(ni + 127) << 23));
}

/* 1 / (1 + e^-x): 0 at -inf, 1 at +inf. */
MOERT_MATH_FN float moert_sigmoidf(float x) {
  return MOERT_FDIV(1.0f, MOERT_FADD(1.0f, moert_expf(-x)));
}

#endif
