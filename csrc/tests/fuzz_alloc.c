/* fuzz_alloc.c - random allocation fuzzer for any malloc (plain, LD_PRELOADed, sanitized).
 *
 *   fuzz_alloc [threads=2] [ops per thread=2000000] [seed=1] [own|shared]
 *
 * Each of T threads runs N random operations on slots of a global table of T x 4096 slots:
 *   own     thread t uses only slots [t*4096, (t+1)*4096): every block is freed by the
 *           thread that allocated it. The run is reproducible: thread t's operations depend
 *           only on (seed, t).
 *   shared  every thread picks any slot of the table, taken with an atomic exchange on the
 *           slot's lock word (and released with a store): blocks are reallocated and freed
 *           by threads other than the one that allocated them. The interleaving (and so the
 *           exact run) depends on scheduling.
 *
 * One operation: a uniformly random slot. Empty slot: allocate it with malloc (50%), calloc
 * (20%), posix_memalign (15%, alignment 16, 32, ..., 4096 uniformly) or realloc(NULL, n)
 * (15%). Full slot: free (50%) or realloc (50%: a new size from the distribution below (1/3),
 * grown x(1, 2] (1/3), or shrunk to [1/4, 1) of the size (1/3); never above 4 MiB, never 0).
 * So about 2/3 of the slots are live at any time.
 *
 * Sizes: 60% 1 B - 256 B, 25% 257 B - 8 KiB, 12% 8 KiB+1 - 256 KiB, 3% 256 KiB+1 - 4 MiB;
 * within a band log-uniform (a uniformly chosen octave (b, 2b], then uniform inside it).
 * Mean about 50 KB at allocation (reallocs drift larger). With the defaults glibc peaks at
 * 0.9-1.0 GB RSS and takes 4-8 s on 2 cores (most of it page faults and cache misses on
 * the pattern: every page of every block is written once and read once).
 *
 * Checks. Every block carries a pattern derived from (seed, slot, generation), the
 * generation counting the slot's allocations: all of its first 4 KiB and last 64 bytes, and
 * one 8-byte word in every further 4 KiB page (at an offset that moves from page to page),
 * so every page of a block is touched. The pattern is verified before the block is freed or
 * reallocated; after a realloc the old pattern must still be there up to the smaller of the
 * two sizes (the preserved prefix) before the block is stamped for its new size. calloc
 * memory must read as zero at those same places. Also: no NULL from an allocation, and
 * malloc/calloc/realloc results 16-byte aligned, posix_memalign's aligned as asked.
 * Mismatches are reported on stderr (the first 20) and counted.
 *
 * At the end every block is checked and freed, and one line is printed:
 *   fuzz: ops=N threads=T peak_rss_kb=K errors=E
 * N is the operations per thread, K getrusage(RUSAGE_SELF).ru_maxrss. Exit status 1 if any
 * check failed, 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define SLOTS_PER_THREAD 4096
#define MAX_THREADS 64
#define MAX_SIZE ((size_t)4 << 20)
#define DENSE 4096 /* bytes stamped in full at the start of a block */
#define TAIL 64    /* bytes stamped in full at its end */
#define MAX_REPORTS 20

typedef struct {
    atomic_int lock;   /* shared mode: 1 while a thread works on the slot */
    unsigned char *p;  /* NULL: empty */
    size_t n;
    uint64_t h;        /* pattern key, from (seed, slot, generation) */
    uint32_t gen;
} slot_t;

static slot_t slots[MAX_THREADS * SLOTS_PER_THREAD];
static int nthreads = 2;
static long nops = 2000000;
static uint64_t seed = 1;
static int shared_mode;
static atomic_long errors;
static pthread_barrier_t start_barrier;

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void report(const char *fmt, ...)
{
    if (atomic_fetch_add(&errors, 1) < MAX_REPORTS) {
        va_list ap;
        va_start(ap, fmt);
        fputs("fuzz_alloc: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
}

static uint64_t splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static inline uint64_t rnd(uint64_t *s) /* xorshift64 */
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static size_t rand_size(uint64_t *s)
{
    uint64_t r = rnd(s);
    unsigned band = (unsigned)(r % 100);
    uint64_t v = r >> 8;
    size_t b;
    if (band < 60) { /* 1..256: octaves [b, 2b] for b = 1..128 */
        b = (size_t)1 << (v % 8);
        return b + (size_t)((v >> 3) % (b + 1));
    }
    if (band < 85)      /* (256, 8 KiB] */
        b = (size_t)256 << (v % 5);
    else if (band < 97) /* (8 KiB, 256 KiB] */
        b = (size_t)8192 << (v % 5);
    else                /* (256 KiB, 4 MiB] */
        b = (size_t)262144 << (v % 4);
    return b + 1 + (size_t)((v >> 3) % b);
}

/* The pattern: 8-byte word w of a block is wordval(h, w), byte i is byte i % 8 of word i / 8
 * as stored in memory. */
static inline uint64_t wordval(uint64_t h, size_t w)
{
    uint64_t x = h ^ ((uint64_t)w * 0x9E3779B97F4A7C15ull);
    return x ^ (x >> 29);
}

enum { STAMP, CHECK, ZERO };

static inline size_t byte_op(unsigned char *p, size_t i, uint64_t h, int op)
{
    uint64_t w = op == ZERO ? 0 : wordval(h, i >> 3);
    unsigned char b[8];
    __builtin_memcpy(b, &w, 8);
    if (op == STAMP)
        p[i] = b[i & 7];
    else if (p[i] != b[i & 7])
        return i;
    return SIZE_MAX;
}

/* Applies op to bytes [lo, hi) of p; returns the offset of the first mismatch or SIZE_MAX. */
static size_t range_op(unsigned char *p, size_t lo, size_t hi, uint64_t h, int op)
{
    size_t bad;
    for (; lo < hi && (lo & 7); lo++)
        if ((bad = byte_op(p, lo, h, op)) != SIZE_MAX)
            return bad;
    size_t wend = lo + ((hi > lo ? hi - lo : 0) & ~(size_t)7);
    if (op == STAMP) {
        for (size_t i = lo; i < wend; i += 8) {
            uint64_t v = wordval(h, i >> 3);
            __builtin_memcpy(p + i, &v, 8);
        }
    } else {
        uint64_t diff = 0;
        for (size_t i = lo; i < wend; i += 8) { /* no early exit: vectorizes */
            uint64_t v = op == ZERO ? 0 : wordval(h, i >> 3), got;
            __builtin_memcpy(&got, p + i, 8);
            diff |= got ^ v;
        }
        if (diff)
            for (size_t i = lo; i < wend; i++)
                if ((bad = byte_op(p, i, h, op)) != SIZE_MAX)
                    return bad;
    }
    for (lo = wend; lo < hi; lo++)
        if ((bad = byte_op(p, lo, h, op)) != SIZE_MAX)
            return bad;
    return SIZE_MAX;
}

/* Applies op to the pattern places of an n-byte block that lie below limit (<= n). */
static size_t block_op(unsigned char *p, size_t n, size_t limit, uint64_t h, int op)
{
    size_t bad, hi = n < DENSE ? n : DENSE;
    if ((bad = range_op(p, 0, hi < limit ? hi : limit, h, op)) != SIZE_MAX)
        return bad;
    if (n <= DENSE)
        return SIZE_MAX;
    size_t tail = n - TAIL > DENSE ? n - TAIL : DENSE;
    for (size_t page = DENSE; page + 8 <= tail; page += 4096) {
        size_t off = page + (((page >> 12) * 2056) & 4088);
        if (off + 8 > tail)
            off = tail - 8;
        if (off + 8 > limit)
            return SIZE_MAX;
        if ((bad = range_op(p, off, off + 8, h, op)) != SIZE_MAX)
            return bad;
    }
    return range_op(p, tail, n < limit ? n : limit, h, op);
}

static void stamp(slot_t *s)
{
    block_op(s->p, s->n, s->n, s->h, STAMP);
}

static int verify(slot_t *s, size_t idx, size_t limit, const char *when)
{
    size_t bad = block_op(s->p, s->n, limit, s->h, CHECK);
    if (bad == SIZE_MAX)
        return 1;
    uint64_t want = wordval(s->h, bad >> 3);
    unsigned char b[8];
    __builtin_memcpy(b, &want, 8);
    report("corruption %s: slot %zu gen %" PRIu32 " block %p size %zu byte %zu is 0x%02x, "
           "want 0x%02x (seed %" PRIu64 ")", when, idx, s->gen, (void *)s->p, s->n, bad,
           s->p[bad], b[bad & 7], seed);
    return 0;
}

static void new_key(slot_t *s, size_t idx)
{
    s->gen++;
    s->h = splitmix(seed ^ splitmix(((uint64_t)idx << 32) | s->gen));
}

static void check_align(const void *p, size_t al, const char *what, size_t n)
{
    if ((uintptr_t)p & (al - 1))
        report("%s(%zu) = %p not %zu-byte aligned", what, n, p, al);
}

static void do_alloc(slot_t *s, size_t idx, uint64_t *rs)
{
    size_t n = rand_size(rs);
    unsigned kind = (unsigned)(rnd(rs) % 100);
    void *p = NULL;
    int zero = 0;
    if (kind < 50) {
        p = malloc(n);
        if (p)
            check_align(p, 16, "malloc", n);
    } else if (kind < 70) {
        size_t k = 1 + rnd(rs) % 4, each = (n + k - 1) / k; /* calloc(k, n / k) */
        n = k * each;
        if (n > MAX_SIZE) {
            k = 1;
            n = each = MAX_SIZE;
        }
        p = calloc(k, each);
        zero = 1;
        if (p)
            check_align(p, 16, "calloc", n);
    } else if (kind < 85) {
        size_t al = (size_t)16 << (rnd(rs) % 9);
        int rc = posix_memalign(&p, al, n);
        if (rc != 0) {
            report("posix_memalign(%zu, %zu) = %d", al, n, rc);
            p = NULL;
        } else {
            check_align(p, al, "posix_memalign", n);
        }
    } else {
        p = realloc(NULL, n);
        if (p)
            check_align(p, 16, "realloc(NULL)", n);
    }
    if (!p) {
        report("allocation of %zu bytes returned NULL (errno %d)", n, errno);
        return;
    }
    s->p = p;
    s->n = n;
    new_key(s, idx);
    if (zero && block_op(s->p, n, n, 0, ZERO) != SIZE_MAX) {
        size_t bad = block_op(s->p, n, n, 0, ZERO);
        report("calloc(%zu) = %p: byte %zu is 0x%02x, not zero", n, (void *)s->p, bad,
               s->p[bad]);
    }
    stamp(s);
}

static void do_free(slot_t *s, size_t idx)
{
    verify(s, idx, s->n, "before free");
    free(s->p);
    s->p = NULL;
    s->n = 0;
}

static void do_realloc(slot_t *s, size_t idx, uint64_t *rs)
{
    size_t n = s->n, m;
    unsigned how = (unsigned)(rnd(rs) % 3);
    if (how == 0)
        m = rand_size(rs);
    else if (how == 1)
        m = n + 1 + (size_t)(rnd(rs) % n);     /* (n, 2n] */
    else
        m = n / 4 + (size_t)(rnd(rs) % (n - n / 4)); /* [n/4, n) */
    if (m > MAX_SIZE)
        m = MAX_SIZE;
    if (m == 0)
        m = 1;
    verify(s, idx, n, "before realloc");
    unsigned char *q = realloc(s->p, m);
    if (!q) {
        report("realloc(%p, %zu -> %zu) returned NULL (errno %d)", (void *)s->p, n, m, errno);
        return; /* the old block is still there */
    }
    check_align(q, 16, "realloc", m);
    s->p = q;
    /* The old pattern must survive up to min(n, m): check with the old size's places. */
    char when[64];
    snprintf(when, sizeof when, "after realloc %zu -> %zu", n, m);
    verify(s, idx, m < n ? m : n, when);
    s->n = m;
    stamp(s);
}

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    uint64_t rs = splitmix(seed * 0x100000001B3ull + (uint64_t)t + 1);
    if (!rs)
        rs = 1;
    size_t base = shared_mode ? 0 : (size_t)t * SLOTS_PER_THREAD;
    size_t count = shared_mode ? (size_t)nthreads * SLOTS_PER_THREAD : SLOTS_PER_THREAD;
    pthread_barrier_wait(&start_barrier);
    for (long i = 0; i < nops; i++) {
        size_t idx;
        slot_t *s;
        for (;;) {
            idx = base + (size_t)(rnd(&rs) % count);
            s = &slots[idx];
            if (!shared_mode)
                break;
            if (atomic_exchange_explicit(&s->lock, 1, memory_order_acquire) == 0)
                break;
        }
        if (!s->p)
            do_alloc(s, idx, &rs);
        else if (rnd(&rs) & 1)
            do_free(s, idx);
        else
            do_realloc(s, idx, &rs);
        if (shared_mode)
            atomic_store_explicit(&s->lock, 0, memory_order_release);
    }
    return NULL;
}

static long arg_long(const char *s, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "fuzz_alloc: bad %s '%s' (%ld..%ld)\n", what, s, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        nthreads = (int)arg_long(argv[1], 1, MAX_THREADS, "thread count");
    if (argc > 2)
        nops = arg_long(argv[2], 0, 1L << 40, "operation count");
    if (argc > 3) {
        char *end;
        errno = 0;
        seed = strtoull(argv[3], &end, 0);
        if (errno || *end) {
            fprintf(stderr, "fuzz_alloc: bad seed '%s'\n", argv[3]);
            return 2;
        }
    }
    if (argc > 4) {
        if (!strcmp(argv[4], "shared")) {
            shared_mode = 1;
        } else if (strcmp(argv[4], "own")) {
            fprintf(stderr, "fuzz_alloc: mode must be own or shared, not '%s'\n", argv[4]);
            return 2;
        }
    }
    if (argc > 5) {
        fprintf(stderr, "usage: fuzz_alloc [threads=2] [ops per thread=2000000] [seed=1] "
                "[own|shared]\n");
        return 2;
    }

    pthread_t tid[MAX_THREADS];
    pthread_barrier_init(&start_barrier, NULL, (unsigned)nthreads);
    for (int t = 0; t < nthreads; t++) {
        int rc = pthread_create(&tid[t], NULL, worker, (void *)(intptr_t)t);
        if (rc) {
            fprintf(stderr, "fuzz_alloc: pthread_create: %s\n", strerror(rc));
            return 2;
        }
    }
    for (int t = 0; t < nthreads; t++)
        pthread_join(tid[t], NULL);
    pthread_barrier_destroy(&start_barrier);

    for (size_t i = 0; i < (size_t)nthreads * SLOTS_PER_THREAD; i++)
        if (slots[i].p)
            do_free(&slots[i], i);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long errs = atomic_load(&errors);
    if (errs > MAX_REPORTS)
        fprintf(stderr, "fuzz_alloc: %ld more errors not shown\n", errs - MAX_REPORTS);
    printf("fuzz: ops=%ld threads=%d peak_rss_kb=%ld errors=%ld\n", nops, nthreads,
           ru.ru_maxrss, errs);
    return errs ? 1 : 0;
}
