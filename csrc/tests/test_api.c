/* test_api.c - edge cases of the C API: bad arguments, errno, exhaustion, foreign pointers,
 * alignment, realloc corner cases, introspection, slabs. Exit status 0 when all hold. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "pyalloc.h"

static int failures;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", \
    __FILE__, __LINE__, #cond); failures++; } } while (0)

static void test_create_arguments(void)
{
    errno = 0;
    CHECK(pa_pool_create(0, PA_BEST, 0) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(pa_pool_create(1 << 20, -1, 0) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(pa_pool_create(1 << 20, PA_NPOLICIES, 0) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(pa_pool_create(PA_POOL_MAX_CAPACITY + 1, PA_BEST, 0) == NULL && errno == EINVAL);
    CHECK(pa_policy_from_name("fifo") == PA_FIFO && pa_policy_from_name("nope") == -1);
    CHECK(pa_policy_from_name(NULL) == -1 && pa_policy_name(9) == NULL);
    CHECK(strcmp(pa_policy_name(PA_WORST), "worst") == 0);
    pa_pool *p = pa_pool_create(1, PA_FIRST, 0); /* rounded up to a page */
    CHECK(p && pa_pool_capacity(p) >= 4096 && pa_pool_policy(p) == PA_FIRST);
    pa_pool_destroy(p);
    pa_pool_destroy(NULL);
    errno = 0;
    CHECK(pa_slab_create(0, 4096, 0) == NULL && errno == EINVAL);
    CHECK(pa_slab_create(64, 0, 0) == NULL && errno == EINVAL);
}

static void test_alloc_edges(void)
{
    pa_pool *p = pa_pool_create(1 << 20, PA_BEST, PA_NOLOCK);
    char *a = pa_pool_alloc(p, 0);
    CHECK(a && pa_pool_usable_size(p, a) >= 1 && ((uintptr_t)a & 15) == 0);
    errno = 0;
    CHECK(pa_pool_alloc(p, SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(pa_pool_alloc(p, 2 << 20) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(pa_pool_alloc_aligned(p, 10, 24) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(pa_pool_alloc_aligned(p, 10, 0) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(pa_pool_alloc_aligned(p, 10, PA_MAX_ALIGN * 2) == NULL && errno == EINVAL);
    for (size_t al = 1; al <= 65536; al <<= 1) {
        char *q = pa_pool_alloc_aligned(p, 33, al);
        CHECK(q && ((uintptr_t)q & (al - 1)) == 0 && pa_pool_usable_size(p, q) >= 33);
        CHECK(pa_pool_free(p, q) == 0);
    }
    pa_stats st;
    pa_pool_stats(p, &st);
    CHECK(st.failed_allocs == 2 && st.live_blocks == 1);
    CHECK(pa_pool_free(p, a) == 0 && pa_pool_free(p, NULL) == 0);
    CHECK(pa_pool_check(p) == 0);
    pa_pool_destroy(p);
}

static void test_foreign_pointers(void)
{
    pa_pool *p = pa_pool_create(1 << 20, PA_FIRST, 0);
    pa_pool *q = pa_pool_create(1 << 20, PA_FIRST, 0);
    char *a = pa_pool_alloc(p, 100);
    char stack[256];
    errno = 0;
    CHECK(pa_pool_free(q, a) == -1 && errno == EINVAL);      /* another pool's block */
    CHECK(pa_pool_free(p, stack + 16) == -1);                 /* not in the arena */
    CHECK(pa_pool_free(p, a + 16) == -1);                     /* interior pointer */
    CHECK(pa_pool_free(p, a + 1) == -1);                      /* misaligned */
    CHECK(pa_pool_realloc(p, a + 32, 10) == NULL && errno == EINVAL);
    CHECK(pa_pool_usable_size(p, a + 16) == 0 && !pa_pool_is_live(p, a + 16));
    CHECK(pa_pool_contains(p, a) && !pa_pool_contains(q, a));
    char *end = (char *)pa_pool_base(p) + pa_pool_capacity(p) - 16;
    CHECK(pa_pool_free(p, end) == -1);                        /* never-committed region */
    CHECK(pa_pool_free(p, a) == 0);
    CHECK(pa_pool_free(p, a) == -1);                          /* double free */
    pa_stats st;
    pa_pool_stats(p, &st);
    CHECK(st.invalid_frees == 6 && st.frees == 1);
    CHECK(pa_pool_check(p) == 0 && pa_pool_check(q) == 0);
    pa_pool_destroy(p);
    pa_pool_destroy(q);
}

static void test_realloc(void)
{
    pa_pool *p = pa_pool_create(1 << 20, PA_BEST, 0);
    char *a = pa_pool_realloc(p, NULL, 50); /* realloc(NULL) allocates */
    CHECK(a != NULL);
    memset(a, 'x', 50);
    char *b = pa_pool_realloc(p, a, 5000); /* grows into the free tail, in place */
    CHECK(b == a && b[49] == 'x');
    char *fence = pa_pool_alloc(p, 10);
    char *c = pa_pool_realloc(p, b, 50000); /* must move */
    CHECK(c && c != b && c[0] == 'x' && c[49] == 'x');
    char *d = pa_pool_realloc(p, c, 8); /* shrinks in place */
    CHECK(d == c && pa_pool_usable_size(p, d) < 100);
    errno = 0;
    CHECK(pa_pool_realloc(p, d, 4 << 20) == NULL && errno == ENOMEM);
    CHECK(pa_pool_is_live(p, d) && d[0] == 'x'); /* intact after a failed realloc */
    pa_pool_free(p, d);
    pa_pool_free(p, fence);
    pa_stats st;
    pa_pool_stats(p, &st);
    CHECK(st.used == 0 && st.free_blocks == 1 && st.reallocs == 3 && st.failed_allocs == 1);
    CHECK(pa_pool_check(p) == 0);
    pa_pool_destroy(p);
}

static void test_introspection(void)
{
    pa_pool *p = pa_pool_create(1 << 20, PA_FIFO, 0);
    void *v[10];
    for (int i = 0; i < 10; i++)
        v[i] = pa_pool_alloc(p, 100);
    for (int i = 0; i < 10; i += 2)
        pa_pool_free(p, v[i]);
    pa_block_info info[16];
    size_t n = pa_pool_free_blocks(p, info, 16);
    CHECK(n == 6 && pa_pool_free_blocks(p, NULL, 0) == 6);
    for (size_t i = 1; i < n; i++)
        CHECK(info[i].offset > info[i - 1].offset); /* address order */
    CHECK(info[0].offset == (uint64_t)((char *)v[0] - (char *)pa_pool_base(p)));
    CHECK(info[0].seq == 1 && info[1].seq == 2 && info[5].seq == 0);
    CHECK(pa_pool_live_blocks(p, info, 16) == 5);
    pa_stats st;
    pa_pool_stats(p, &st);
    CHECK(st.used + st.free + st.overhead == st.capacity);
    CHECK(st.fragmentation > 0.0 && st.fragmentation < 1.0);
    CHECK(strcmp(pa_check_message(0), "consistent") == 0 && pa_check_message(999) != NULL);
    pa_pool_destroy(p);
}

static void test_slab(void)
{
    pa_slab *s = pa_slab_create(40, 4096, 0);
    CHECK(s && pa_slab_block_size(s) == 48);
    size_t n = pa_slab_capacity(s) / 48;
    void *first = pa_slab_alloc(s);
    for (size_t i = 1; i < n; i++)
        CHECK(pa_slab_alloc(s) != NULL);
    errno = 0;
    CHECK(pa_slab_alloc(s) == NULL && errno == ENOMEM);
    CHECK(pa_slab_free(s, (char *)first + 8) == -1);
    CHECK(pa_slab_free(s, first) == 0 && pa_slab_free(s, first) == -1);
    CHECK(pa_slab_alloc(s) == first);
    pa_slab_stats st;
    pa_slab_stats_get(s, &st);
    CHECK(st.live_blocks == n && st.failed_allocs == 1 && st.invalid_frees == 2);
    pa_slab_destroy(s);
}

static long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* Alloc/touch/free cycles at the top of the arena and inside it must not fault their pages in
 * every time (the trimming has hysteresis); an explicit trim releases free pages. */
static void test_trim_hysteresis(void)
{
    pa_pool *p = pa_pool_create((size_t)256 << 20, PA_BEST, 0);
    void *fence_lo = pa_pool_alloc(p, 100);
    long before = minor_faults();
    for (int i = 0; i < 2000; i++) {
        char *q = pa_pool_alloc(p, 512 << 10);
        memset(q, i, 512 << 10);
        pa_pool_free(p, q);
    }
    long top_faults = minor_faults() - before;
    CHECK(top_faults < 2000); /* ~128 pages once, not 128 per cycle */
    /* inside: a big free region between two live blocks */
    char *big = pa_pool_alloc(p, 8 << 20);
    void *fence_hi = pa_pool_alloc(p, 100);
    pa_pool_free(p, big); /* >= threshold: purged */
    before = minor_faults();
    for (int i = 0; i < 2000; i++) {
        char *q = pa_pool_alloc(p, 256 << 10);
        memset(q, i, 256 << 10);
        pa_pool_free(p, q);
    }
    CHECK(minor_faults() - before < 2000);
    pa_stats st;
    pa_pool_stats(p, &st);
    uint64_t committed = st.committed;
    CHECK(pa_pool_trim(p) > 0);
    pa_pool_stats(p, &st);
    CHECK(st.committed <= committed && st.trims > 0);
    CHECK(pa_pool_check(p) == 0);
    pa_pool_free(p, fence_lo);
    pa_pool_free(p, fence_hi);
    CHECK(pa_pool_check(p) == 0);
    pa_pool_destroy(p);
}

static void test_batch_and_reset(void)
{
    for (int policy = 0; policy < PA_NPOLICIES; policy++) {
        pa_pool *p = pa_pool_create(1 << 20, policy, 0);
        void *hole = pa_pool_alloc(p, 5000), *fence = pa_pool_alloc(p, 10);
        pa_pool_free(p, hole);
        uint64_t sizes[5] = {0, 1, 100, 4000, 33}, offs[5];
        CHECK(pa_pool_alloc_batch(p, sizes, 5, offs) == 0);
        CHECK(pa_pool_check(p) == 0);
        for (int i = 1; i < 5; i++)
            CHECK(offs[i] > offs[i - 1]);
        char *base = pa_pool_base(p);
        for (int i = 0; i < 5; i++)
            CHECK(pa_pool_is_live(p, base + offs[i]) && pa_pool_usable_size(p, base + offs[i]) >=
                  sizes[i]);
        memset(base + offs[3], 0xAB, 4000); /* the blocks do not overlap their neighbours */
        CHECK(pa_pool_check(p) == 0);
        uint64_t huge[2] = {1 << 19, 1 << 19}, junk[2] = {7, 7};
        errno = 0;
        CHECK(pa_pool_alloc_batch(p, huge, 2, junk) == -1 && errno == ENOMEM && junk[0] == 7);
        uint64_t over[1] = {UINT64_MAX};
        CHECK(pa_pool_alloc_batch(p, over, 1, junk) == -1 && junk[0] == 7);
        CHECK(pa_pool_alloc_batch(p, sizes, 0, junk) == 0);
        pa_stats st;
        pa_pool_stats(p, &st);
        CHECK(st.live_blocks == 6 && st.failed_allocs == 2);
        CHECK(pa_pool_reset(p) == 6);
        pa_pool_stats(p, &st);
        CHECK(st.live_blocks == 0 && st.used == 0 && st.free_blocks == 1);
        CHECK(!pa_pool_is_live(p, fence) && pa_pool_free(p, fence) == -1);
        CHECK(pa_pool_check(p) == 0);
        CHECK(pa_pool_alloc(p, 10) != NULL && pa_pool_check(p) == 0);
        pa_pool_destroy(p);
    }
}

int main(void)
{
    test_create_arguments();
    test_alloc_edges();
    test_foreign_pointers();
    test_realloc();
    test_introspection();
    test_slab();
    test_trim_hysteresis();
    test_batch_and_reset();
    printf("%d passed, %d failed\n", failures ? 0 : 8, failures ? 1 : 0);
    return failures ? 1 : 0;
}
