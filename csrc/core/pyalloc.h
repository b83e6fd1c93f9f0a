/*
 * pyalloc.h - the public C API of the pyalloc core.
 *
 * The core offers two kinds of allocator, both backed only by mmap (never libc malloc):
 *
 *   pa_pool  a variable-size pool: one reserved address range ("arena") carved into blocks
 *            with boundary tags; free blocks sit in a policy-ordered index (best, worst, first
 *            or fifo fit, all exact, see "Placement contract" below); free coalesces with both
 *            neighbours in O(1); alloc and free are O(log n) in the number of free blocks.
 *   pa_slab  a fixed-size block pool: one block size, intrusive singly linked free list, O(1).
 *
 * A C program can use the core directly:
 *
 *     #include "pyalloc.h"
 *     pa_pool *p = pa_pool_create(64 << 20, PA_BEST, 0);
 *     char *s = pa_pool_alloc(p, 100);
 *     ...
 *     pa_pool_free(p, s);
 *     pa_pool_destroy(p);
 *
 * with -Icsrc/core, and link csrc/core/arena.c csrc/core/freeindex.c csrc/core/pool.c
 * csrc/core/slab.c.
 *
 * Threads: every pool and slab has its own mutex unless created with PA_NOLOCK, so one pool
 * may be used from many threads at once. Functions never abort on bad input: they report it
 * through their return value and errno.
 *
 * Memory layout of a pool (all sizes in bytes):
 *
 *   [pa_pool header pages][base ...................................... base + capacity)
 *                          ^ arena base: offsets count from here
 *
 *   A block is a header word followed by its payload. The header holds the block's total size
 *   (a multiple of PA_ALIGN) and two flag bits: this block in use, previous block in use.
 *   A free block also stores its size in its last word (the footer), so the block after it can
 *   find it; its payload holds the free index's node. Payloads are PA_ALIGN aligned, so every
 *   block's total size is a multiple of PA_ALIGN and its usable size is total - PA_HEADER.
 *   The first block starts at base + PA_ALIGN - PA_HEADER, so the first payload is at offset
 *   PA_ALIGN. A new pool has exactly one free block spanning the whole arena.
 *
 * Placement contract (exact, verified by tests/test_pool_model.py):
 *   A free block has an offset (of its payload, from the arena base), a usable size, and a seq
 *   (a counter value taken when it entered the free set; a merged block takes a new seq; the
 *   remainder of a split keeps the seq of the block it came from). For alloc(n), let
 *   need = max(PA_MIN_BLOCK, round_up(n + PA_HEADER, PA_ALIGN)); the candidates are the free
 *   blocks whose total size (usable + PA_HEADER) is >= need, i.e. usable >= n, except the
 *   free top (the free block that ends at the arena's end, the untouched rest of it), which
 *   is a candidate only when no other free block fits ("wilderness preservation": otherwise
 *   worst fit and fifo would always pick it and never reuse a hole). The chosen one:
 *     PA_BEST   smallest size, ties to the lowest offset
 *     PA_WORST  largest size, ties to the lowest offset
 *     PA_FIRST  lowest offset
 *     PA_FIFO   lowest seq
 *   The allocation is carved from the low end; if total - need >= PA_MIN_BLOCK the rest stays
 *   free as a new block (same seq), otherwise the whole block is handed out.
 *   Aligned allocation with align > PA_ALIGN asks the policy for a block of usable size
 *   >= n + align + PA_MIN_BLOCK - PA_ALIGN (enough for any placement), then places the payload
 *   at the first aligned address that leaves either no gap or a gap of at least PA_MIN_BLOCK
 *   before it; the gap stays free with the chosen block's seq.
 */
#ifndef PYALLOC_H
#define PYALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PA_ALIGN 16       /* payload alignment and size granularity */
#define PA_HEADER 8       /* per-block overhead of an allocated block */
#define PA_MIN_BLOCK 64   /* smallest total block size (a free block holds its index node) */
#define PA_MAX_ALIGN ((size_t)1 << 26) /* largest alignment accepted (64 MiB) */

/* Placement policies. */
enum pa_policy { PA_BEST = 0, PA_WORST = 1, PA_FIRST = 2, PA_FIFO = 3 };
#define PA_NPOLICIES 4

/* Flags for pa_pool_create / pa_slab_create. */
#define PA_NOLOCK 1u      /* no mutex: the caller serialises all calls */
#define PA_HUGEPAGE 2u    /* ask for transparent huge pages on the arena */

/* Policy name ("best", "worst", "first", "fifo") to value; -1 if unknown. */
int pa_policy_from_name(const char *name);
/* Value to name; NULL if out of range. */
const char *pa_policy_name(int policy);

/* ------------------------------------------------------------------------------------------
 * Variable-size pools
 * ------------------------------------------------------------------------------------------ */
typedef struct pa_pool pa_pool;

/* Creates a pool able to hold `capacity` bytes of blocks (rounded up to a page; at least one
 * page; at most PA_POOL_MAX_CAPACITY). The address range is reserved at once and committed
 * in chunks as it is first used. Returns NULL with errno EINVAL (bad capacity or policy) or
 * ENOMEM (no address space). */
#define PA_POOL_MAX_CAPACITY ((size_t)1 << 46)
pa_pool *pa_pool_create(size_t capacity, int policy, unsigned flags);
/* Unmaps everything. Pointers into the pool become invalid. NULL is a no-op. */
void pa_pool_destroy(pa_pool *pool);

/* Allocates n bytes (n == 0 is treated as 1). NULL with errno ENOMEM when no free block fits. */
void *pa_pool_alloc(pa_pool *pool, size_t n);
/* As pa_pool_alloc, with the payload aligned to `align` (a power of two <= PA_MAX_ALIGN);
 * align <= PA_ALIGN is a plain alloc. NULL with errno EINVAL for a bad alignment. */
void *pa_pool_alloc_aligned(pa_pool *pool, size_t n, size_t align);
/* Both of the above in one call (align 0 means the default), also storing the block's usable
 * size in *usable when usable is not NULL: for bindings that pay per call. */
void *pa_pool_alloc_ex(pa_pool *pool, size_t n, size_t align, size_t *usable);
/* Frees a block. Returns 0, or -1 with errno EINVAL if p is not a live block of this pool
 * (foreign pointer, interior pointer, double free); the pool is left untouched then.
 * p == NULL returns 0. */
int pa_pool_free(pa_pool *pool, void *p);
/* pa_pool_free that also gives the freed block's usable size (untouched on failure). */
int pa_pool_free_ex(pa_pool *pool, void *p, size_t *usable);
/* Allocates n blocks as one request: the block the pool's policy picks for the sum of their
 * block sizes, carved into n consecutive blocks from its low end (sizes[i] usable bytes each,
 * rounded as pa_pool_alloc rounds). Writes the payload offsets to offsets[0..n). Returns 0, or
 * -1 with errno ENOMEM and nothing allocated. */
int pa_pool_alloc_batch(pa_pool *pool, const uint64_t *sizes, size_t n, uint64_t *offsets);
/* Frees every live block at once: the arena becomes one free block again (a new seq), with the
 * committed memory trimmed as a free of the whole heap would trim it. The header check tags
 * change, so pointers from before the reset are refused like foreign ones. Returns how many
 * blocks were live. */
size_t pa_pool_reset(pa_pool *pool);
/* Resizes a block, in place when it shrinks or when the next block is free and large enough;
 * otherwise allocates a new block by the policy, copies and frees the old one. Returns the
 * (possibly moved) block; NULL with errno ENOMEM (the old block is intact) or EINVAL (p not
 * a live block). p == NULL is pa_pool_alloc(n). */
void *pa_pool_realloc(pa_pool *pool, void *p, size_t n);
/* pa_pool_realloc that also stores the usable size of the result in *usable (if not NULL). */
void *pa_pool_realloc_ex(pa_pool *pool, void *p, size_t n, size_t *usable);
/* A pool that finds its own structures corrupted (a free block whose header is not one, an
 * index that contradicts itself; only a write through a dangling or overflowing pointer does
 * that) fails the operation with EFAULT, after calling the handler set here, if any, with a
 * description and the address. libpyalloc.so installs one that aborts. Process-wide. */
typedef void (*pa_corruption_handler)(const char *what, const void *where);
void pa_set_corruption_handler(pa_corruption_handler handler);
/* Bytes of the arena currently committed (cheap: one field, no lock; for accounting). */
size_t pa_pool_committed(const pa_pool *pool);
/* What ptr is to the pool: PA_PTR_LIVE (a live block), PA_PTR_FREE (the payload of a free
 * block: freeing it would be a double free), or PA_PTR_NONE (anything else). */
enum { PA_PTR_NONE = 0, PA_PTR_LIVE = 1, PA_PTR_FREE = 2 };
int pa_pool_ptr_state(pa_pool *pool, const void *ptr);
/* Usable size of a live block, 0 if p is not one. */
size_t pa_pool_usable_size(pa_pool *pool, const void *p);
/* 1 if p is a live block of this pool, else 0. */
int pa_pool_is_live(pa_pool *pool, const void *p);
/* 1 if p points anywhere into the pool's arena, else 0 (lock-free). */
int pa_pool_contains(const pa_pool *pool, const void *p);

/* Arena base address (offsets count from here), capacity, policy. */
void *pa_pool_base(const pa_pool *pool);
size_t pa_pool_capacity(const pa_pool *pool);
int pa_pool_policy(const pa_pool *pool);

/* Memory goes back to the kernel past this threshold (default 1 MiB; 0 disables): when a
 * block of at least this size is freed inside the arena, its pages are purged
 * (MADV_DONTNEED); when more than twice this is committed past the start of the arena's free
 * top, the top is decommitted down to one threshold of slack. Smaller frees are never purged
 * on the spot, so alloc/free cycles do not fault their pages in again and again. */
void pa_pool_set_trim_threshold(pa_pool *pool, size_t bytes);
/* Returns every whole free page to the kernel now (like malloc_trim): purges the interior
 * of every free block and decommits the free top. Returns the bytes released. */
size_t pa_pool_trim(pa_pool *pool);

typedef struct pa_stats {
    uint64_t capacity;       /* bytes of the arena */
    uint64_t used;           /* usable bytes of live blocks */
    uint64_t free;           /* usable bytes of free blocks */
    uint64_t overhead;       /* capacity - used - free: headers and the arena prologue */
    uint64_t largest_free;   /* usable size of the largest free block */
    uint64_t free_blocks;    /* number of free blocks */
    uint64_t live_blocks;    /* number of live blocks */
    uint64_t peak_used;      /* highest `used` seen */
    uint64_t committed;      /* bytes of the arena made accessible (mapped read/write) */
    uint64_t peak_committed; /* highest `committed` seen */
    uint64_t allocs;         /* successful allocations (realloc that moves counts one) */
    uint64_t frees;          /* successful frees */
    uint64_t reallocs;       /* successful reallocs */
    uint64_t failed_allocs;  /* allocations (and reallocs) refused for lack of space */
    uint64_t invalid_frees;  /* frees of pointers that were not live blocks */
    uint64_t trims;          /* madvise/decommit calls returning memory to the kernel */
    double fragmentation;    /* 1 - largest_free / free (0 when nothing is free) */
    uint64_t top;            /* heap extent: offset where the arena's free top starts (the
                                capacity when the last block is in use) */
} pa_stats;
void pa_pool_stats(pa_pool *pool, pa_stats *out);

typedef struct pa_block_info {
    uint64_t offset; /* payload offset from the arena base */
    uint64_t size;   /* usable size */
    uint64_t seq;    /* free-sequence number */
} pa_block_info;
/* Writes up to `max` free blocks, in address order, to out; returns how many free blocks the
 * pool has in all (call with max == 0 to size the buffer). */
size_t pa_pool_free_blocks(pa_pool *pool, pa_block_info *out, size_t max);
/* Same for live blocks (seq is 0). */
size_t pa_pool_live_blocks(pa_pool *pool, pa_block_info *out, size_t max);

/* Walks the whole pool and checks every invariant (tags, footers, flags, no adjacent free
 * blocks, index order and augmentation, byte accounting). Returns 0 if consistent, otherwise
 * a positive code naming the first broken invariant (see pa_check_message). */
int pa_pool_check(pa_pool *pool);
const char *pa_check_message(int code);

/* ------------------------------------------------------------------------------------------
 * Fixed-size block pools
 * ------------------------------------------------------------------------------------------ */
typedef struct pa_slab pa_slab;

/* A slab of blocks of `block_size` bytes (rounded up to a multiple of 16; at least 16) in an
 * arena of `capacity` bytes (rounded up to a whole number of blocks and pages). NULL with
 * errno EINVAL or ENOMEM. */
pa_slab *pa_slab_create(size_t block_size, size_t capacity, unsigned flags);
void pa_slab_destroy(pa_slab *slab);
/* O(1). NULL with errno ENOMEM when every block is live. */
void *pa_slab_alloc(pa_slab *slab);
/* O(1). 0, or -1 with errno EINVAL if p is not a live block of this slab. */
int pa_slab_free(pa_slab *slab, void *p);
int pa_slab_is_live(pa_slab *slab, const void *p);
void *pa_slab_base(const pa_slab *slab);
size_t pa_slab_block_size(const pa_slab *slab);
size_t pa_slab_capacity(const pa_slab *slab);

typedef struct pa_slab_stats {
    uint64_t capacity;      /* bytes of blocks */
    uint64_t block_size;
    uint64_t blocks;        /* capacity / block_size */
    uint64_t live_blocks;
    uint64_t peak_live_blocks;
    uint64_t used;          /* live_blocks * block_size */
    uint64_t free;          /* capacity - used */
    uint64_t allocs;
    uint64_t frees;
    uint64_t failed_allocs;
    uint64_t invalid_frees;
} pa_slab_stats;
void pa_slab_stats_get(pa_slab *slab, pa_slab_stats *out);

/* ------------------------------------------------------------------------------------------
 * Batch entry points (benchmarks): the loops run in C so the cost of a cffi call does not
 * hide the cost of the allocator.
 * ------------------------------------------------------------------------------------------ */
/* Leaves `nfree` free blocks in the pool, separated by live blocks, their sizes drawn from
 * [min_size, max_size] by a generator seeded with `seed`. Returns 0, or -1 if the pool is too
 * small. */
int pa_bench_fragment(pa_pool *pool, size_t nfree, size_t min_size, size_t max_size,
                      uint64_t seed);
/* For `rounds` passes over sizes[0..nsizes): p = alloc(sizes[i]); free(p). Returns elapsed
 * nanoseconds (CLOCK_MONOTONIC), or -1 if an allocation failed. */
int64_t pa_bench_alloc_free(pa_pool *pool, const size_t *sizes, size_t nsizes, size_t rounds);
/* Same for a slab: alloc then free, `count` times. */
int64_t pa_bench_slab_alloc_free(pa_slab *slab, size_t count);

#ifdef __cplusplus
}
#endif
#endif /* PYALLOC_H */
