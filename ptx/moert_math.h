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

/* The constants of moert_expf, named once for it and for the host's vector copies of it
 * (runtime/router.c: expf4, expf8, expf16 perform the same operations lane by lane) */
#define MOERT_EXP_HI 88.72283935546875f     /* above: +inf */
#define MOERT_EXP_LO (-103.97208404541015625f) /* below: 0 */
#define MOERT_EXP_MAGIC 12582912.0f          /* 1.5 * 2^23: adding it rounds to an integer */
#define MOERT_EXP_LOG2E 1.44269502162933349609375f
#define MOERT_EXP_LN2_HI 0.693145751953125f /* ln2 = hi + lo; hi has 16 significant bits */
#define MOERT_EXP_LN2_LO 1.428606765330187045e-06f
#define MOERT_EXP_C7 1.98412698412698413e-4f /* 1/7!, ..., 1/2!, 1, 1 */
#define MOERT_EXP_C6 1.38888888888888889e-3f
#define MOERT_EXP_C5 8.33333333333333333e-3f
#define MOERT_EXP_C4 4.16666666666666667e-2f
#define MOERT_EXP_C3 1.66666666666666667e-1f
#define MOERT_EXP_C2 0.5f

/* e^x to within about 1 ulp: x = n ln2 + r, |r| <= ln2/2, a degree-7 Taylor polynomial for
 * e^r (truncation under 6e-9 relative), then a scale by 2^n built from bits. */
MOERT_MATH_FN float moert_expf(float x) {
  if (x != x) return x;
  if (x > MOERT_EXP_HI) return moert_bits_to_float(0x7f800000u); /* +inf */
  if (x < MOERT_EXP_LO) return 0.0f;
  const float magic = MOERT_EXP_MAGIC;
  float n = MOERT_FADD(MOERT_FADD(MOERT_FMUL(x, MOERT_EXP_LOG2E), magic), -magic);
  /* n * hi is exact */
  float r = MOERT_FADD(x, -MOERT_FMUL(n, MOERT_EXP_LN2_HI));
  r = MOERT_FADD(r, -MOERT_FMUL(n, MOERT_EXP_LN2_LO));
  float p = MOERT_EXP_C7;
  p = MOERT_FADD(MOERT_FMUL(p, r), MOERT_EXP_C6);
  p = MOERT_FADD(MOERT_FMUL(p, r), MOERT_EXP_C5);
  p = MOERT_FADD(MOERT_FMUL(p, r), MOERT_EXP_C4);
  p = MOERT_FADD(MOERT_FMUL(p, r), MOERT_EXP_C3);
  p = MOERT_FADD(MOERT_FMUL(p, r), MOERT_EXP_C2);
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
