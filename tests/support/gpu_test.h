/* gpu_test.h — what the GPU test programs (tests/test_gpu_*.c) share.  They link
 * moert_static for the private driver table, not the test support library, so these are
 * header-only.  Define GPU_TEST_SEED (the program's random seed) before including it. */
#ifndef MOERT_GPU_TEST_H
#define MOERT_GPU_TEST_H

#include <check.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "cuda/cuda_api.h"
#include "internal.h"

static const moert_cuda_driver *cu;
static CUcontext ctx;

#define CU(call)                                                                           \
  do {                                                                                     \
    CUresult rc_ = (call);                                                                 \
    ck_assert_msg(rc_ == 0, "%s failed with CUDA error %d", #call, rc_);                   \
  } while (0)
#define OK(call)                                                                           \
  do {                                                                                     \
    moert_status st_ = (call);                                                             \
    ck_assert_msg(st_ == MOERT_OK, "%s: %s (%s)", #call, moert_status_string(st_),        \
                  moert_last_error());                                                     \
  } while (0)

static inline double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* splitmix64 from the program's seed; uniform in [-a, a) */
static uint64_t gpu_test_rng = GPU_TEST_SEED;
static inline uint64_t rnd(void) {
  uint64_t z = (gpu_test_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static inline float uniform(float a) {
  return ((float)(rnd() >> 40) / 16777216.0f * 2.0f - 1.0f) * a;
}

/* n 16-bit values: windows of `win` values copied from a pool of pool_n random values at
 * random offsets (big arrays cost pool_n conversions, not one per element) */
static inline void copy_windows(uint16_t *p, size_t n, const uint16_t *pool, size_t pool_n,
                                size_t win) {
  for (size_t i = 0; i < n; i += win) {
    const size_t len = n - i < win ? n - i : win;
    memcpy(p + i, pool + rnd() % (pool_n - win), len * sizeof *p);
  }
}

static inline CUdeviceptr dalloc(size_t bytes) {
  CUdeviceptr p = 0;
  CU(cu->cuMemAlloc(&p, bytes ? bytes : 16));
  return p;
}
static inline void *dptr(CUdeviceptr p) { return (void *)(uintptr_t)p; }

#endif
