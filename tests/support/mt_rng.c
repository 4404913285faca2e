/* mt_rng.c — seeded random numbers for the tests (xorshift64*, seeds from splitmix64). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "moert_test.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int g_have_base;
static uint64_t g_base;

uint64_t mt_base_seed(void) {
  if (!g_have_base) {
    const char *env = getenv("MOERT_TEST_SEED");
    if (env && *env) {
      g_base = strtoull(env, NULL, 0);
    } else {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      uint64_t x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^
                   ((uint64_t)getpid() << 32);
      g_base = splitmix64(&x) & 0xffffffffffffull; /* short enough to type */
    }
    g_have_base = 1;
  }
  return g_base;
}

void mt_rng_for_test(mt_rng *r, const char *name, int index) {
  uint64_t base = mt_base_seed();
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the test name */
  for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
  uint64_t x = base ^ h ^ ((uint64_t)(uint32_t)index << 40);
  r->s = splitmix64(&x);
  if (r->s == 0) r->s = 1;
  fprintf(stderr, "[seed] %s[%d]: MOERT_TEST_SEED=%llu replays this run\n", name, index,
          (unsigned long long)base);
}

uint64_t mt_next(mt_rng *r) {
  uint64_t x = r->s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->s = x;
  return x * 0x2545f4914f6cdd1dull;
}

uint32_t mt_below(mt_rng *r, uint32_t n) { return (uint32_t)((mt_next(r) >> 32) % n); }

double mt_uniform(mt_rng *r, double lo, double hi) {
  double u = (double)(mt_next(r) >> 11) * (1.0 / 9007199254740992.0);
  return lo + (hi - lo) * u;
}

double mt_normal(mt_rng *r) {
  double u1 = mt_uniform(r, 0.0, 1.0), u2 = mt_uniform(r, 0.0, 1.0);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void mt_shuffle_i32(mt_rng *r, int32_t *v, uint32_t n) {
  for (uint32_t i = n; i > 1; i--) {
    uint32_t j = mt_below(r, i);
    int32_t t = v[i - 1];
    v[i - 1] = v[j];
    v[j] = t;
  }
}
