/* mt_stress.c - multi-threaded stress of the malloc family with cross-thread frees.
 *
 * Workers allocate blocks of random sizes (mostly small, some medium, a few huge) with
 * malloc, calloc, realloc and posix_memalign, stamp every block with a pattern derived from
 * its address and size, and verify the pattern before resizing or freeing it. A quarter of
 * the blocks are handed to other threads through a shared exchange array and freed there.
 * Workers are started and joined in waves so thread-exit cache flushes happen all the time.
 *
 *   mt_stress [threads=4] [ops per thread=200000] [waves=3]
 * Exit status 0 when every check held. Works with any malloc (plain, preloaded, ASan).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 512
#define EXCHANGE 1024

typedef struct { unsigned char *p; size_t n; } blk;

static long ops_per_thread = 200000;
static atomic_long failures;
static _Atomic(blk *) exchange[EXCHANGE];

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); atomic_fetch_add(&failures, 1); } while (0)

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static inline unsigned char pat(const unsigned char *p, size_t i, size_t n)
{
    return (unsigned char)(((uintptr_t)p >> 4) + i * 13 + n);
}

/* Stamps the first and last 64 bytes and every 4 KiB in between (cheap for huge blocks). */
static void stamp(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i = (i < 64 || i + 64 >= n) ? i + 1 : (i + 4096 < n - 64 ? i + 4096 : n - 64))
        p[i] = pat(p, i, n);
}

static int check(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i = (i < 64 || i + 64 >= n) ? i + 1 : (i + 4096 < n - 64 ? i + 4096 : n - 64))
        if (p[i] != pat(p, i, n))
            return 0;
    return 1;
}

static size_t pick_size(uint64_t *s)
{
    uint64_t r = rnd(s) % 1000;
    if (r < 700)
        return rnd(s) % 256 + 1;          /* small */
    if (r < 950)
        return rnd(s) % 4096 + 1;         /* small and medium */
    if (r < 998)
        return rnd(s) % (256 << 10) + 1; /* medium */
    return rnd(s) % (3 << 20) + 1;       /* huge */
}

static void release(blk *b)
{
    if (!check(b->p, b->n))
        FAIL("pattern damaged: %p size %zu\n", (void *)b->p, b->n);
    free(b->p);
    free(b);
}

static void *worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    blk slots[SLOTS];
    memset(slots, 0, sizeof slots);
    for (long op = 0; op < ops_per_thread; op++) {
        uint64_t r = rnd(&seed);
        blk *s = &slots[r % SLOTS];
        unsigned kind = (unsigned)(r >> 32) % 16;
        if (s->p) {
            if (!check(s->p, s->n)) {
                FAIL("pattern damaged: %p size %zu\n", (void *)s->p, s->n);
                s->p = NULL;
                continue;
            }
            if (kind < 3) { /* realloc */
                size_t n = pick_size(&seed);
                unsigned char *q = realloc(s->p, n);
                if (!q) {
                    FAIL("realloc(%zu) failed\n", n);
                    continue;
                }
                size_t keep = n < s->n ? n : s->n;
                for (size_t i = 0; i < keep && i < 64; i++)
                    if (q[i] != pat(s->p, i, s->n)) {
                        FAIL("realloc lost data\n");
                        break;
                    }
                s->p = q;
                s->n = n;
                stamp(q, n);
            } else if (kind < 7) { /* hand over to whoever comes next */
                blk *b = malloc(sizeof *b);
                *b = *s;
                s->p = NULL;
                blk *old = atomic_exchange(&exchange[rnd(&seed) % EXCHANGE], b);
                if (old)
                    release(old);
            } else {
                free(s->p);
                s->p = NULL;
            }
        } else {
            size_t n = pick_size(&seed);
            unsigned char *p;
            if (kind < 2) {
                p = calloc(1, n);
                if (p)
                    for (size_t i = 0; i < n; i += (i < 256 ? 1 : 997))
                        if (p[i]) {
                            FAIL("calloc(%zu) not zero at %zu\n", n, i);
                            break;
                        }
            } else if (kind < 3) {
                size_t al = (size_t)16 << (rnd(&seed) % 9);
                void *q = NULL;
                if (posix_memalign(&q, al, n) != 0)
                    q = NULL;
                p = q;
                if (p && ((uintptr_t)p & (al - 1)))
                    FAIL("posix_memalign(%zu) misaligned\n", al);
            } else {
                p = malloc(n);
            }
            if (!p) {
                FAIL("allocation of %zu failed\n", n);
                continue;
            }
            if (((uintptr_t)p & 15) != 0)
                FAIL("%p not 16-byte aligned\n", (void *)p);
            if (malloc_usable_size(p) < n)
                FAIL("usable size %zu < %zu\n", malloc_usable_size(p), n);
            s->p = p;
            s->n = n;
            stamp(p, n);
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p) {
            if (!check(slots[i].p, slots[i].n))
                FAIL("pattern damaged at exit\n");
            free(slots[i].p);
        }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2)
        ops_per_thread = atol(argv[2]);
    int waves = argc > 3 ? atoi(argv[3]) : 3;
    if (threads < 1 || threads > 256 || ops_per_thread < 1 || waves < 1) {
        fprintf(stderr, "usage: mt_stress [threads] [ops] [waves]\n");
        return 2;
    }
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    for (int w = 0; w < waves; w++) {
        for (int t = 0; t < threads; t++)
            if (pthread_create(&th[t], NULL, worker, (void *)(uintptr_t)(w * threads + t + 1))) {
                FAIL("pthread_create\n");
                return 1;
            }
        for (int t = 0; t < threads; t++)
            pthread_join(th[t], NULL);
    }
    for (int i = 0; i < EXCHANGE; i++) {
        blk *b = atomic_exchange(&exchange[i], NULL);
        if (b)
            release(b);
    }
    free(th);
    long f = atomic_load(&failures);
    printf("mt_stress: %d threads x %ld ops x %d waves: %ld failures\n", threads, ops_per_thread,
           waves, f);
    return f != 0;
}
