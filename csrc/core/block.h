/* block.h - boundary tags of pool blocks (internal).
 *
 * A block starts with a 64-bit header word:
 *   bits 0      CINUSE  this block is allocated
 *   bits 1      PINUSE  the block before it is allocated (or there is none)
 *   bits 4..47  total size of the block in bytes (a multiple of 16)
 *   bits 48..63 a check tag derived from the block's address and the pool's secret, so a
 *               pointer the pool did not hand out is recognised, not trusted
 * A free block repeats its size in its last word (the footer) unless it is the last block of
 * the arena; its payload holds the free index node.
 */
#ifndef PA_BLOCK_H
#define PA_BLOCK_H

#include <stdint.h>

#include "pyalloc.h"

#define PA_CINUSE ((uint64_t)1)
#define PA_PINUSE ((uint64_t)2)
#define PA_FLAGS ((uint64_t)3)
#define PA_SIZE_MASK ((uint64_t)0x0000FFFFFFFFFFF0ull)
#define PA_TAG_SHIFT 48

static inline uint64_t pa_hdr(const char *b) { return *(const uint64_t *)b; }
static inline uint64_t pa_bsize(const char *b) { return pa_hdr(b) & PA_SIZE_MASK; }
static inline uint64_t pa_tag(const char *b, uint64_t secret)
{
    return (((uint64_t)(uintptr_t)b * 0x9E3779B97F4A7C15ull) ^ secret) >> PA_TAG_SHIFT;
}
static inline void pa_set_hdr(char *b, uint64_t size, uint64_t flags, uint64_t secret)
{
    *(uint64_t *)b = (pa_tag(b, secret) << PA_TAG_SHIFT) | size | flags;
}
static inline void pa_set_footer(char *b, uint64_t size) { *(uint64_t *)(b + size - 8) = size; }
static inline uint64_t pa_prev_footer(const char *b) { return *(const uint64_t *)(b - 8); }

#endif
