/* conformance.c - edge cases of every malloc-family symbol, as glibc documents them.
 *
 * Runs against whatever malloc the process has: plain (glibc) and with libpyalloc.so
 * preloaded, so every check here must hold for both. Checks of pyalloc-only behaviour
 * (invalid pointers detected and ignored, C17 aligned_alloc, the statistics symbols) run only
 * when the library is present (found by its `pyalloc_version` symbol).
 *
 *   cc -std=gnu11 -O1 -fno-builtin -pthread -o conformance csrc/tests/conformance.c -ldl
 *   ./conformance && LD_PRELOAD=pyalloc/libpyalloc.so ./conformance
 *
 * Prints one line per failed check and a summary; exit status 0 when all passed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int checks, failures;
static int pyalloc;
#ifdef __SANITIZE_ADDRESS__
static const int asan = 1; /* ASan's allocator differs from glibc's in a few documented corners */
#else
static const int asan = 0;
#endif

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        checks++;                                                                          \
        if (!(cond)) {                                                                     \
            failures++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)

/* Calls through volatile pointers so the compiler cannot pair up or elide allocations. */
static void *(*volatile v_malloc)(size_t) = malloc;
static void (*volatile v_free)(void *) = free;
static void *(*volatile v_calloc)(size_t, size_t) = calloc;
static void *(*volatile v_realloc)(void *, size_t) = realloc;
static void *(*volatile v_reallocarray)(void *, size_t, size_t) = reallocarray;

static const size_t sizes[] = {0,     1,     8,     15,     16,      17,      24,      31,
                               32,    33,    48,    64,     100,     127,     128,     129,
                               255,   256,   257,   512,    1000,    1023,    1024,    1025,
                               2000,  4095,  4096,  4097,   8192,    10000,   32768,   65536,
                               100000, 131072, 262144, 500000, 1 << 20, (1 << 20) + 1, 3 << 20,
                               16 << 20};
#define NSIZES (sizeof sizes / sizeof *sizes)

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 7);
}

static int same(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7))
            return 0;
    return 1;
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static void test_malloc(void)
{
    void *ps[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        unsigned char *p = v_malloc(n);
        ps[i] = p;
        CHECK(p != NULL, "malloc(%zu)", n);
        if (!p)
            continue;
        CHECK(((uintptr_t)p & 15) == 0, "malloc(%zu) = %p not 16-byte aligned", n, (void *)p);
        size_t u = malloc_usable_size(p);
        CHECK(u >= n, "malloc_usable_size %zu < %zu", u, n);
        fill(p, u, (unsigned)i); /* the whole usable size is ours */
    }
    for (size_t i = 0; i < NSIZES; i++)
        if (ps[i]) {
            CHECK(same(ps[i], sizes[i], (unsigned)i), "data of malloc(%zu) changed", sizes[i]);
            v_free(ps[i]);
        }
    /* malloc(0) gives distinct, freeable pointers. */
    void *a = v_malloc(0), *b = v_malloc(0);
    CHECK(a && b && a != b, "malloc(0) twice: %p %p", a, b);
    v_free(a);
    v_free(b);
    /* Too large: ENOMEM. */
    errno = 0;
    CHECK(v_malloc((size_t)PTRDIFF_MAX + 1) == NULL && errno == ENOMEM, "PTRDIFF_MAX+1");
    errno = 0;
    CHECK(v_malloc(SIZE_MAX) == NULL && errno == ENOMEM, "SIZE_MAX");
    errno = 0;
    CHECK(v_malloc(SIZE_MAX - 4096) == NULL && errno == ENOMEM, "SIZE_MAX-4096");
    errno = 0;
    CHECK(v_malloc((size_t)1 << 62) == NULL && errno == ENOMEM, "1<<62: no such memory");
    /* Many small blocks are distinct and keep their contents. */
    enum { N = 5000 };
    static unsigned char *many[N];
    for (int i = 0; i < N; i++) {
        many[i] = v_malloc((size_t)(i % 300) + 1);
        fill(many[i], (size_t)(i % 300) + 1, (unsigned)i);
    }
    int ok = 1;
    for (int i = 0; i < N; i++)
        ok &= same(many[i], (size_t)(i % 300) + 1, (unsigned)i);
    CHECK(ok, "5000 small blocks overlap");
    for (int i = 0; i < N; i += 2)
        v_free(many[i]);
    for (int i = 1; i < N; i += 2)
        ok &= same(many[i], (size_t)(i % 300) + 1, (unsigned)i);
    CHECK(ok, "freeing every other block damaged the rest");
    for (int i = 1; i < N; i += 2)
        v_free(many[i]);
}

static void test_free(void)
{
    v_free(NULL); /* no-op */
    for (size_t i = 0; i < NSIZES; i++) {
        void *p = v_malloc(sizes[i]);
        errno = 4242;
        v_free(p);
        CHECK(errno == 4242, "free of a %zu-byte block changed errno to %d", sizes[i], errno);
    }
    errno = 77;
    v_free(NULL);
    CHECK(errno == 77, "free(NULL) changed errno");
}

static void test_calloc(void)
{
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        /* Dirty a block of the same size first so calloc may get reused memory. */
        unsigned char *d = v_malloc(n ? n : 1);
        memset(d, 0xAB, n ? n : 1);
        v_free(d);
        unsigned char *p = v_calloc(1, n);
        CHECK(p != NULL, "calloc(1, %zu)", n);
        if (!p)
            continue;
        CHECK(all_zero(p, n), "calloc(1, %zu) not zeroed", n);
        CHECK(((uintptr_t)p & 15) == 0, "calloc alignment");
        v_free(p);
        p = v_calloc(n ? n : 1, 1);
        CHECK(p && all_zero(p, n), "calloc(%zu, 1)", n);
        v_free(p);
    }
    /* Many dirty small blocks, then calloc of the same class. */
    void *tmp[256];
    for (int i = 0; i < 256; i++) {
        tmp[i] = v_malloc(40);
        memset(tmp[i], 0xFF, 40);
    }
    for (int i = 0; i < 256; i++)
        v_free(tmp[i]);
    int ok = 1;
    for (int i = 0; i < 256; i++) {
        tmp[i] = v_calloc(5, 8);
        ok &= tmp[i] && all_zero(tmp[i], 40);
    }
    CHECK(ok, "calloc(5, 8) after dirty frees");
    for (int i = 0; i < 256; i++)
        v_free(tmp[i]);
    errno = 0;
    CHECK(v_calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM, "calloc overflow");
    errno = 0;
    CHECK(v_calloc((size_t)1 << 33, (size_t)1 << 33) == NULL && errno == ENOMEM, "overflow 2");
    errno = 0;
    CHECK(v_calloc(1, (size_t)PTRDIFF_MAX + 1) == NULL && errno == ENOMEM, "calloc > PTRDIFF_MAX");
    void *z = v_calloc(0, 0);
    CHECK(z != NULL, "calloc(0, 0) returns a unique pointer");
    v_free(z);
    z = v_calloc(0, 100);
    CHECK(z != NULL, "calloc(0, 100)");
    v_free(z);
}

static void test_realloc(void)
{
    /* NULL: like malloc. */
    unsigned char *p = v_realloc(NULL, 100);
    CHECK(p != NULL, "realloc(NULL, 100)");
    /* Grow through every tier, then shrink back, keeping the data. */
    size_t cur = 100;
    fill(p, cur, 9);
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        if (n <= cur)
            continue;
        unsigned char *q = v_realloc(p, n);
        CHECK(q != NULL, "realloc grow to %zu", n);
        if (!q)
            break;
        CHECK(same(q, cur, 9), "realloc grow %zu -> %zu lost data", cur, n);
        CHECK(((uintptr_t)q & 15) == 0, "realloc alignment");
        fill(q, n, 9);
        p = q;
        cur = n;
    }
    for (size_t i = NSIZES; i-- > 1;) {
        size_t n = sizes[i];
        if (n >= cur)
            continue;
        unsigned char *q = v_realloc(p, n);
        CHECK(q != NULL, "realloc shrink to %zu", n);
        if (!q)
            break;
        CHECK(same(q, n, 9), "realloc shrink %zu -> %zu lost data", cur, n);
        p = q;
        cur = n;
    }
    /* Too large: NULL, ENOMEM, the old block intact. */
    errno = 0;
    unsigned char *q = v_realloc(p, (size_t)PTRDIFF_MAX + 1);
    CHECK(q == NULL && errno == ENOMEM, "realloc > PTRDIFF_MAX");
    CHECK(same(p, cur, 9), "failed realloc damaged the block");
    errno = 0;
    q = v_realloc(p, SIZE_MAX);
    CHECK(q == NULL && errno == ENOMEM, "realloc SIZE_MAX");
    /* realloc(p, 0) frees p and returns NULL (glibc). */
    q = v_realloc(p, 0);
    CHECK(q == NULL, "realloc(p, 0) returns NULL");
    /* Same-size and tiny changes. */
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i] ? sizes[i] : 1;
        unsigned char *a = v_malloc(n);
        fill(a, n, 3);
        unsigned char *b = v_realloc(a, n);
        CHECK(b && same(b, n, 3), "realloc same size %zu", n);
        unsigned char *c = v_realloc(b, n + 1);
        CHECK(c && same(c, n, 3), "realloc +1 %zu", n);
        unsigned char *d = v_realloc(c, n / 2 + 1);
        CHECK(d && same(d, n / 2 + 1, 3), "realloc halve %zu", n);
        v_free(d);
    }
    /* Growth in small steps (vector push). */
    unsigned char *v = NULL;
    size_t len = 0;
    int ok = 1;
    for (size_t n = 1; n < (3 << 20); n = n * 5 / 4 + 1) {
        unsigned char *w = v_realloc(v, n);
        if (!w) {
            ok = 0;
            break;
        }
        ok &= same(w, len, 1);
        fill(w, n, 1);
        v = w;
        len = n;
    }
    CHECK(ok, "stepwise realloc growth");
    v_free(v);

    /* Interleaved appends of a few bytes to many strings (blocks that move out of the size
     * classes as they grow, and then grow in place or move again), with a shrink now and
     * then: every byte written must still be there, and malloc_usable_size must cover it. */
    enum { NSTR = 64 };
    unsigned char *str[NSTR] = {0};
    size_t slen[NSTR] = {0};
    uint64_t r = 12345;
    ok = 1;
    for (int k = 0; k < 20000 && ok; k++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int i = (int)((r >> 33) % NSTR);
        size_t add = 1 + (size_t)((r >> 20) % 40);
        size_t n = (r >> 40) % 97 == 0 ? slen[i] / 3 + 1 : slen[i] + add;
        unsigned char *q = v_realloc(str[i], n);
        if (!q || malloc_usable_size(q) < n) {
            ok = 0;
            break;
        }
        size_t keep = slen[i] < n ? slen[i] : n;
        for (size_t j = 0; j < keep && ok; j++)
            ok = q[j] == (unsigned char)(j * 7 + (size_t)i);
        for (size_t j = keep; j < n; j++)
            q[j] = (unsigned char)(j * 7 + (size_t)i);
        str[i] = q;
        slen[i] = n;
    }
    CHECK(ok, "interleaved string appends by realloc");
    for (int i = 0; i < NSTR; i++)
        v_free(str[i]);
}

static void test_reallocarray(void)
{
    unsigned char *p = v_reallocarray(NULL, 10, 10);
    CHECK(p != NULL, "reallocarray(NULL, 10, 10)");
    fill(p, 100, 5);
    errno = 0;
    unsigned char *q = v_reallocarray(p, SIZE_MAX / 2, 3);
    CHECK(q == NULL && errno == ENOMEM, "reallocarray overflow");
    CHECK(same(p, 100, 5), "reallocarray overflow damaged the block");
    q = v_reallocarray(p, 100, 100);
    CHECK(q && same(q, 100, 5), "reallocarray grow");
    v_free(q);
}

static void test_posix_memalign(void)
{
    for (size_t al = sizeof(void *); al <= ((size_t)64 << 20); al <<= 1) {
        for (int k = 0; k < 3; k++) {
            size_t n = k == 0 ? 1 : k == 1 ? al + 3 : 100000;
            void *p = (void *)0x1234;
            int rc = posix_memalign(&p, al, n);
            CHECK(rc == 0, "posix_memalign(%zu, %zu) = %d", al, n, rc);
            if (rc)
                continue;
            CHECK(((uintptr_t)p & (al - 1)) == 0, "posix_memalign(%zu) = %p misaligned", al, p);
            CHECK(malloc_usable_size(p) >= n, "usable size of aligned block");
            memset(p, 0x5A, n);
            v_free(p);
        }
    }
    size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 48, 100, 4097, (size_t)1 << 63 | 8};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *p = (void *)0x1234;
        errno = 0;
        int rc = posix_memalign(&p, bad[i], 64);
        CHECK(rc == EINVAL, "posix_memalign alignment %zu gave %d", bad[i], rc);
        CHECK(p == (void *)0x1234, "posix_memalign touched the output on EINVAL");
    }
    void *p = (void *)0x1234;
    int rc = posix_memalign(&p, 64, (size_t)PTRDIFF_MAX + 1);
    CHECK(rc == ENOMEM && p == (void *)0x1234, "posix_memalign too large: %d", rc);
    p = NULL;
    rc = posix_memalign(&p, 32, 0);
    CHECK(rc == 0, "posix_memalign size 0");
    v_free(p);
}

static void test_aligned(void)
{
    for (size_t al = 1; al <= ((size_t)1 << 22); al <<= 1) {
        size_t n = al * 3;
        void *p = aligned_alloc(al, n);
        CHECK(p && ((uintptr_t)p & (al - 1)) == 0, "aligned_alloc(%zu, %zu)", al, n);
        if (p)
            memset(p, 1, n);
        v_free(p);
        p = memalign(al, 100);
        CHECK(p && ((uintptr_t)p & (al - 1)) == 0, "memalign(%zu)", al);
        v_free(p);
    }
    volatile size_t big = (size_t)PTRDIFF_MAX + 1;
    /* memalign rounds a non-power-of-two alignment up (glibc). */
    void *p;
    if (!asan) {
        p = memalign(24, 100);
        CHECK(p && ((uintptr_t)p & 31) == 0, "memalign(24) should be 32-aligned: %p", p);
        v_free(p);
        p = memalign(3000, 10);
        CHECK(p && ((uintptr_t)p & 4095) == 0, "memalign(3000) should be 4096-aligned: %p", p);
        v_free(p);
    }
    errno = 0;
    p = memalign(64, big);
    CHECK(p == NULL && errno == ENOMEM, "memalign too large");
    errno = 0;
    p = aligned_alloc(64, big + 12345);
    CHECK(p == NULL && (asan || errno == ENOMEM), "aligned_alloc too large");
    long page = sysconf(_SC_PAGESIZE);
    p = valloc(10);
    CHECK(p && ((uintptr_t)p & (size_t)(page - 1)) == 0, "valloc page aligned");
    v_free(p);
    p = pvalloc(10);
    CHECK(p && ((uintptr_t)p & (size_t)(page - 1)) == 0, "pvalloc page aligned");
    CHECK(p && malloc_usable_size(p) >= (size_t)page, "pvalloc rounds up to a page");
    if (p)
        memset(p, 7, (size_t)page);
    v_free(p);
    p = pvalloc(0);
    CHECK(p != NULL, "pvalloc(0)");
    v_free(p);
    errno = 0;
    p = pvalloc(SIZE_MAX - 10);
    CHECK(p == NULL && errno == ENOMEM, "pvalloc overflow");
    if (pyalloc) {
        errno = 0;
        p = aligned_alloc(24, 48);
        CHECK(p == NULL && errno == EINVAL, "aligned_alloc non-power-of-two (C17)");
        errno = 0;
        p = aligned_alloc(0, 48);
        CHECK(p == NULL && errno == EINVAL, "aligned_alloc(0, n)");
    }
}

static void test_usable_and_extras(void)
{
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL)");
    if (!asan) {
        CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1, "mallopt");
        CHECK(mallopt(M_ARENA_MAX, 2) == 1, "mallopt arena max");
    }
    struct mallinfo2 mi = mallinfo2();
    (void)mi;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo m1 = mallinfo();
#pragma GCC diagnostic pop
    (void)m1;
    void *keep = v_malloc(1000);
    int t = malloc_trim(0);
    CHECK(t == 0 || t == 1, "malloc_trim returns 0 or 1");
    v_free(keep);
    FILE *f = fopen("/dev/null", "w");
    if (f) {
        CHECK(malloc_info(0, f) == 0, "malloc_info");
        CHECK(malloc_info(1, f) != 0, "malloc_info bad options");
        fclose(f);
    }
    /* glibc's internal names resolve and work. */
    const char *names[] = {"__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc",
                           "__libc_memalign", "__libc_valloc", "__libc_pvalloc"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        CHECK(dlsym(RTLD_DEFAULT, names[i]) != NULL, "%s missing", names[i]);
    void *(*lm)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_malloc");
    void (*lf)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "__libc_free");
    void *(*lc)(size_t, size_t) = (void *(*)(size_t, size_t))dlsym(RTLD_DEFAULT, "__libc_calloc");
    void *(*lr)(void *, size_t) = (void *(*)(void *, size_t))dlsym(RTLD_DEFAULT, "__libc_realloc");
    void *(*lmem)(size_t, size_t) =
        (void *(*)(size_t, size_t))dlsym(RTLD_DEFAULT, "__libc_memalign");
#ifdef __SANITIZE_ADDRESS__
    /* Under ASan, __libc_* are glibc's own functions, outside the sanitizer's heap. */
    lm = NULL;
#endif
    if (lm && lf && lc && lr && lmem) {
        unsigned char *p = lm(50);
        CHECK(p != NULL, "__libc_malloc");
        fill(p, 50, 2);
        p = lr(p, 5000);
        CHECK(p && same(p, 50, 2), "__libc_realloc");
        free(p); /* interchangeable with free */
        p = lc(10, 10);
        CHECK(p && all_zero(p, 100), "__libc_calloc");
        lf(p);
        p = lmem(256, 10);
        CHECK(p && ((uintptr_t)p & 255) == 0, "__libc_memalign");
        lf(p);
    }
    if (pyalloc) {
        CHECK(dlsym(RTLD_DEFAULT, "__libc_malloc") == dlsym(RTLD_DEFAULT, "malloc"),
              "__libc_malloc is pyalloc's malloc");
        void (*cf)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
        CHECK(cf != NULL, "cfree exported");
        if (cf)
            cf(v_malloc(10));
    }
}

/* pyalloc only: pointers it did not hand out are detected and ignored. Run in a child so a
 * crash is a failed check, not a dead test. */
static void test_invalid_pointers(void)
{
    if (!pyalloc)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        int bad = 0;
        char stack_buf[64];
        free(stack_buf + 16);                        /* foreign */
        static char data_buf[64];
        free(data_buf);                              /* foreign */
        char *p = malloc(100);
        free(p + 16);                                /* interior */
        free(p);
        free(p);                                     /* double free (small) */
        char *m = malloc(50000);
        free(m);
        free(m);                                     /* double free (pool) */
        char *h = malloc(8 << 20);
        free(h);
        free(h);                                     /* double free (huge) */
        if (malloc_usable_size(stack_buf + 16) != 0)
            bad |= 1;
        errno = 0;
        if (realloc(stack_buf + 16, 100) != NULL || errno != EINVAL)
            bad |= 2;
        /* The heap still works. */
        for (int i = 0; i < 10000; i++) {
            void *q = malloc((size_t)(i % 3000) + 1);
            if (!q)
                bad |= 4;
            free(q);
        }
        _exit(bad);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "invalid pointers: child status %#x", st);
}

static void *thread_alloc(void *arg)
{
    void **out = arg;
    for (int i = 0; i < 1000; i++)
        out[i] = v_malloc((size_t)(i % 500) + 1);
    for (int i = 0; i < 1000; i++)
        fill(out[i], (size_t)(i % 500) + 1, (unsigned)i);
    return NULL;
}

static void test_threads(void)
{
    /* Blocks allocated by a thread that has exited are still valid and freeable here. */
    static void *blocks[8][1000];
    pthread_t th[8];
    for (int t = 0; t < 8; t++)
        pthread_create(&th[t], NULL, thread_alloc, blocks[t]);
    for (int t = 0; t < 8; t++)
        pthread_join(th[t], NULL);
    int ok = 1;
    for (int t = 0; t < 8; t++)
        for (int i = 0; i < 1000; i++) {
            ok &= same(blocks[t][i], (size_t)(i % 500) + 1, (unsigned)i);
            v_free(blocks[t][i]);
        }
    CHECK(ok, "blocks of exited threads");
}

static void test_fork(void)
{
    void *p = v_malloc(1000);
    pid_t pid = fork();
    if (pid == 0) {
        void *q = v_malloc(1000);
        v_free(p);
        v_free(q);
        _exit(q ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "allocation in a forked child");
    v_free(p);
}

int main(void)
{
    pyalloc = dlsym(RTLD_DEFAULT, "pyalloc_version") != NULL;
    test_malloc();
    test_free();
    test_calloc();
    test_realloc();
    test_reallocarray();
    test_posix_memalign();
    test_aligned();
    test_usable_and_extras();
    test_invalid_pointers();
    test_threads();
    test_fork();
    printf("conformance (%s): %d checks, %d failures\n", pyalloc ? "pyalloc" : "system malloc",
           checks, failures);
    return failures != 0;
}
