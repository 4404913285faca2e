/* isa.c — which x86 vector instruction sets the host router and plan may use. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int moert_cpu_isa(void) {
  static _Atomic int level = -1;
  int l = atomic_load_explicit(&level, memory_order_relaxed);
  if (l >= 0) return l;
  l = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) {
    l = 1;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
      l = 2;
  }
#endif
  const char *cap = getenv("MOERT_CPU_ISA");
  if (cap && !strcmp(cap, "avx2") && l > 1) l = 1;
  if (cap && !strcmp(cap, "generic")) l = 0;
  atomic_store_explicit(&level, l, memory_order_relaxed);
  return l;
}
