/* arena.c — the bump allocator that carves a scratch's single allocation.  Sizing and
 * carving run the same code: a first pass with base == NULL only adds up the sizes. */
#include "internal.h"

void *moert_arena_take(moert_arena *arena, size_t bytes) {
  size_t start = (arena->used + 63) & ~(size_t)63;
  arena->used = start + bytes;
  if (!arena->base) return NULL;
  return arena->base + start;
}
