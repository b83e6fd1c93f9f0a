/* stress.c - several threads hammer one pool (each policy in turn) and one slab with random
 * sizes, reallocs and cross-thread frees; every block carries a data pattern that is verified
 * before it is freed or resized, and the pool's invariants are checked along the way.
 * Exit status 0 when every check held. Run under ASan/UBSan and valgrind by `make ctest`. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyalloc.h"

#define THREADS 4
#define SLOTS 256
#define EXCHANGE 64

static pa_pool *pool;
static pa_slab *slab;
static long iterations = 20000;
static atomic_int failures;
static _Atomic(uintptr_t) exchange[EXCHANGE];

typedef struct { unsigned char *p; size_t n; unsigned char tag; } slot;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill(unsigned char *p, size_t n, unsigned char tag)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(tag + i * 31);
}

static int verify(const unsigned char *p, size_t n, unsigned char tag)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(tag + i * 31))
            return 0;
    return 1;
}

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); atomic_fetch_add(&failures, 1); } while (0)

/* A block handed to another thread carries its length and tag in its first bytes. */
static void give_away(unsigned char *p, size_t n, unsigned char tag, uint64_t *seed)
{
    if (n < 16) {
        if (pa_pool_free(pool, p) != 0)
            FAIL("free of a small block failed\n");
        return;
    }
    memcpy(p, &n, sizeof n);
    p[8] = tag;
    uintptr_t old = atomic_exchange(&exchange[rnd(seed) % EXCHANGE], (uintptr_t)p);
    if (old) {
        unsigned char *q = (unsigned char *)old;
        size_t qn;
        memcpy(&qn, q, sizeof qn);
        if (!verify(q + 9, qn - 9, (unsigned char)(q[8] + 9 * 31)))
            FAIL("exchanged block corrupted\n");
        if (pa_pool_free(pool, q) != 0)
            FAIL("cross-thread free failed\n");
    }
}

static void *worker(void *arg)
{
    uint64_t seed = 0x1234567ull + (uintptr_t)arg * 7919;
    slot slots[SLOTS];
    void *sblocks[SLOTS];
    memset(slots, 0, sizeof slots);
    memset(sblocks, 0, sizeof sblocks);
    for (long it = 0; it < iterations; it++) {
        size_t i = rnd(&seed) % SLOTS;
        slot *s = &slots[i];
        unsigned op = rnd(&seed) % 10;
        if (s->p && !verify(s->p, s->n, s->tag))
            FAIL("thread %ld: block %p (%zu bytes) corrupted\n", (long)(uintptr_t)arg,
                 (void *)s->p, s->n);
        if (s->p && op < 4) {
            if (op == 0) {
                give_away(s->p, s->n, s->tag, &seed);
            } else if (pa_pool_free(pool, s->p) != 0) {
                FAIL("free failed\n");
            }
            s->p = NULL;
        } else if (s->p && op < 6) {
            size_t n = 1 + rnd(&seed) % (rnd(&seed) % 8 == 0 ? 20000 : 300);
            unsigned char *q = pa_pool_realloc(pool, s->p, n);
            if (q) {
                size_t keep = n < s->n ? n : s->n;
                if (!verify(q, keep, s->tag))
                    FAIL("realloc lost data\n");
                s->p = q;
                s->n = n;
                fill(q, n, s->tag);
            }
        } else if (!s->p) {
            size_t n = 1 + rnd(&seed) % (rnd(&seed) % 8 == 0 ? 20000 : 300);
            size_t align = rnd(&seed) % 5 == 0 ? (size_t)32 << (rnd(&seed) % 8) : 0;
            s->p = align ? pa_pool_alloc_aligned(pool, n, align) : pa_pool_alloc(pool, n);
            if (s->p) {
                if (align && ((uintptr_t)s->p & (align - 1)))
                    FAIL("misaligned block\n");
                if (pa_pool_usable_size(pool, s->p) < n)
                    FAIL("usable size too small\n");
                s->n = n;
                s->tag = (unsigned char)rnd(&seed);
                fill(s->p, n, s->tag);
            }
        }
        /* slab traffic */
        size_t j = rnd(&seed) % SLOTS;
        if (sblocks[j]) {
            if (*(uintptr_t *)sblocks[j] != (uintptr_t)&sblocks[j])
                FAIL("slab block corrupted\n");
            if (pa_slab_free(slab, sblocks[j]) != 0)
                FAIL("slab free failed\n");
            sblocks[j] = NULL;
        } else if ((sblocks[j] = pa_slab_alloc(slab)) != NULL) {
            *(uintptr_t *)sblocks[j] = (uintptr_t)&sblocks[j];
        }
        if (it % 5000 == 0) {
            int rc = pa_pool_check(pool);
            if (rc)
                FAIL("pool check: %s\n", pa_check_message(rc));
        }
    }
    for (size_t i = 0; i < SLOTS; i++) {
        if (slots[i].p && pa_pool_free(pool, slots[i].p) != 0)
            FAIL("final free failed\n");
        if (sblocks[i] && pa_slab_free(slab, sblocks[i]) != 0)
            FAIL("final slab free failed\n");
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        iterations = atol(argv[1]);
    for (int policy = 0; policy < PA_NPOLICIES; policy++) {
        pool = pa_pool_create(32 << 20, policy, 0);
        slab = pa_slab_create(48, 1 << 20, 0);
        if (!pool || !slab) {
            perror("create");
            return 2;
        }
        pa_pool_set_trim_threshold(pool, 256 << 10);
        pthread_t th[THREADS];
        for (long t = 0; t < THREADS; t++)
            pthread_create(&th[t], NULL, worker, (void *)t);
        for (int t = 0; t < THREADS; t++)
            pthread_join(th[t], NULL);
        for (int k = 0; k < EXCHANGE; k++) {
            uintptr_t q = atomic_exchange(&exchange[k], 0);
            if (q && pa_pool_free(pool, (void *)q) != 0)
                FAIL("exchange free failed\n");
        }
        int rc = pa_pool_check(pool);
        if (rc)
            FAIL("final pool check: %s\n", pa_check_message(rc));
        pa_stats st;
        pa_pool_stats(pool, &st);
        if (st.used != 0 || st.live_blocks != 0 || st.free_blocks != 1)
            FAIL("%s: pool not empty at the end (used %llu, live %llu, free blocks %llu)\n",
                 pa_policy_name(policy), (unsigned long long)st.used,
                 (unsigned long long)st.live_blocks, (unsigned long long)st.free_blocks);
        /* foreign and double frees are refused */
        char local[64];
        if (pa_pool_free(pool, local + 16) == 0)
            FAIL("foreign free accepted\n");
        void *p = pa_pool_alloc(pool, 100);
        if (pa_pool_free(pool, p) != 0 || pa_pool_free(pool, p) == 0)
            FAIL("double free accepted\n");
        if (pa_pool_free(pool, (char *)pa_pool_alloc(pool, 500) + 16) == 0)
            FAIL("interior free accepted\n");
        pa_slab_stats ss;
        pa_slab_stats_get(slab, &ss);
        if (ss.live_blocks != 0)
            FAIL("slab not empty at the end\n");
        printf("%-5s allocs=%llu frees=%llu reallocs=%llu failed=%llu peak_used=%llu trims=%llu\n",
               pa_policy_name(policy), (unsigned long long)st.allocs,
               (unsigned long long)st.frees, (unsigned long long)st.reallocs,
               (unsigned long long)st.failed_allocs, (unsigned long long)st.peak_used,
               (unsigned long long)st.trims);
        pa_pool_destroy(pool);
        pa_slab_destroy(slab);
    }
    int f = atomic_load(&failures);
    printf("%s: %d failures\n", f ? "FAIL" : "ok", f);
    return f ? 1 : 0;
}
