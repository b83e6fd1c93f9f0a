/* bench.c - batch entry points for benchmarks: loops in C, so the cost measured is the
 * allocator's and not that of a cffi call per operation. Not part of libpyalloc.so. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "pyalloc.h"

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int pa_bench_fragment(pa_pool *pool, size_t nfree, size_t min_size, size_t max_size,
                      uint64_t seed)
{
    if (min_size == 0 || max_size < min_size)
        return -1;
    void **ptrs = malloc(2 * nfree * sizeof *ptrs);
    if (!ptrs && nfree)
        return -1;
    int rc = 0;
    size_t i;
    for (i = 0; i < 2 * nfree; i++) {
        size_t n = min_size + (size_t)(splitmix(&seed) % (max_size - min_size + 1));
        ptrs[i] = pa_pool_alloc(pool, n);
        if (!ptrs[i]) {
            rc = -1;
            break;
        }
    }
    /* Free every other block: each hole sits between two live blocks and cannot merge. */
    for (size_t j = 0; j < i; j += 2)
        pa_pool_free(pool, ptrs[j]);
    if (rc)
        for (size_t j = 1; j < i; j += 2)
            pa_pool_free(pool, ptrs[j]);
    free(ptrs);
    return rc;
}

int64_t pa_bench_alloc_free(pa_pool *pool, const size_t *sizes, size_t nsizes, size_t rounds)
{
    int64_t t0 = now_ns();
    for (size_t r = 0; r < rounds; r++) {
        for (size_t i = 0; i < nsizes; i++) {
            void *p = pa_pool_alloc(pool, sizes[i]);
            if (!p)
                return -1;
            *(volatile char *)p = 1;
            pa_pool_free(pool, p);
        }
    }
    return now_ns() - t0;
}

int64_t pa_bench_slab_alloc_free(pa_slab *slab, size_t count)
{
    int64_t t0 = now_ns();
    for (size_t i = 0; i < count; i++) {
        void *p = pa_slab_alloc(slab);
        if (!p)
            return -1;
        *(volatile char *)p = 1;
        pa_slab_free(slab, p);
    }
    return now_ns() - t0;
}
