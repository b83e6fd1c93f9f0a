/* preload.c - libpyalloc.so: the malloc family for LD_PRELOAD, on top of the pyalloc core.
 *
 * This file holds the exported symbols, initialization, configuration from the environment,
 * thread setup/teardown, fork handling and the routing of requests between the three tiers
 * (size classes in small.c, arena pools from the core's pool.c, huge mappings in
 * huge.c). See internal.h for the overview and docs/preload.md for the
 * reasons.
 *
 * Misuse (a free of a pointer that is no block: foreign, interior, unaligned; a double free)
 * is detected and, by default, stops the program like glibc: one line on stderr naming the
 * error and the address, then abort(). PYALLOC_CHECK=warn reports it and ignores the call,
 * PYALLOC_CHECK=quiet only counts it. Heap corruption (a free-list link or a block header
 * that cannot be right) always aborts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena.h"
#include "internal.h"

pa_global pa_g;
__thread pa_tcache pa_tc __attribute__((tls_model("initial-exec")));

/* ------------------------------------------------------------------------------------------
 * Bootstrap heap: serves the (theoretical) allocations made while this thread runs the
 * global init. Never freed; each block has a 16-byte header holding its size.
 * ------------------------------------------------------------------------------------------ */
#define BOOT_SIZE (64 << 10)
static char boot_heap[BOOT_SIZE] __attribute__((aligned(64)));
static size_t boot_used;

static void *boot_alloc(size_t n)
{
    size_t need = ((n + 15) & ~(size_t)15) + 16;
    if (n > BOOT_SIZE || boot_used + need > BOOT_SIZE) {
        errno = ENOMEM;
        return NULL;
    }
    char *b = boot_heap + boot_used;
    boot_used += need;
    *(size_t *)b = n;
    return b + 16;
}

static inline int in_boot(const void *p)
{
    return (const char *)p >= boot_heap && (const char *)p < boot_heap + BOOT_SIZE;
}

static inline size_t boot_size(const void *p) { return *(const size_t *)((const char *)p - 16); }

/* ------------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------------ */
void pa_write_err(const char *s)
{
    int e = errno;
    pa_write_all(2, s, strlen(s));
    errno = e;
}

static void misuse_line(pa_buf *b, const char *who, const char *error, const void *p)
{
    pa_buf_str(b, "pyalloc: ");
    pa_buf_str(b, who);
    pa_buf_str(b, "(): ");
    pa_buf_str(b, error);
    pa_buf_str(b, " 0x");
    pa_buf_hex(b, (uint64_t)(uintptr_t)p);
}

void pa_corrupt(const char *who, const char *error, const void *p)
{
    char mem[200];
    pa_buf b = {mem, 0, sizeof mem};
    misuse_line(&b, who, error, p);
    pa_buf_str(&b, ": heap corrupted, aborting\n");
    pa_write_all(2, b.p, b.len);
    abort();
}

void pa_misuse(const char *who, const char *error, const void *p)
{
    atomic_fetch_add_explicit(&pa_st.invalid, 1, memory_order_relaxed);
    if (pa_g.check == CHECK_QUIET)
        return;
    char mem[200];
    pa_buf b = {mem, 0, sizeof mem};
    misuse_line(&b, who, error, p);
    if (pa_g.check == CHECK_ABORT) {
        pa_buf_str(&b, ": aborting (PYALLOC_CHECK=warn to ignore)\n");
        pa_write_all(2, b.p, b.len);
        abort();
    }
    int n = atomic_fetch_add(&pa_g.warnings, 1);
    if (n > 10)
        return;
    pa_buf_str(&b, n == 10 ? " ignored; further warnings suppressed\n" : " ignored\n");
    int e = errno;
    pa_write_all(2, b.p, b.len);
    errno = e;
}

/* ------------------------------------------------------------------------------------------
 * Environment: read straight from `environ` (no getenv before libc is up is an issue only for
 * its locking, environ itself is set before any constructor or malloc call); if environ is
 * not yet set, from /proc/self/environ into a static buffer.
 * ------------------------------------------------------------------------------------------ */
extern char **environ;
static char env_buf[16384];
static size_t env_len;
static int env_from_proc;

void pa_getenv_init(void)
{
    if (environ)
        return;
    int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t r;
    while (env_len < sizeof env_buf - 1 &&
           (r = read(fd, env_buf + env_len, sizeof env_buf - 1 - env_len)) > 0)
        env_len += (size_t)r;
    close(fd);
    env_buf[env_len] = 0;
    env_from_proc = 1;
}

const char *pa_getenv(const char *name)
{
    size_t nl = strlen(name);
    if (!env_from_proc) {
        if (!environ)
            return NULL;
        for (char **e = environ; *e; e++)
            if (strncmp(*e, name, nl) == 0 && (*e)[nl] == '=')
                return *e + nl + 1;
        return NULL;
    }
    for (size_t i = 0; i < env_len;) {
        const char *e = env_buf + i;
        size_t l = strlen(e);
        if (strncmp(e, name, nl) == 0 && e[nl] == '=')
            return e + nl + 1;
        i += l + 1;
    }
    return NULL;
}

static void config_warn(const char *var, const char *val, const char *expected,
                        const char *fallback)
{
    char mem[400];
    pa_buf b = {mem, 0, sizeof mem};
    pa_buf_str(&b, "pyalloc: warning: ignoring ");
    pa_buf_str(&b, var);
    pa_buf_str(&b, "='");
    size_t vl = strlen(val);
    if (vl > 60) {
        char cut[64];
        memcpy(cut, val, 60);
        cut[60] = 0;
        pa_buf_str(&b, cut);
        pa_buf_str(&b, "...");
    } else {
        pa_buf_str(&b, val);
    }
    pa_buf_str(&b, "' (expected ");
    pa_buf_str(&b, expected);
    pa_buf_str(&b, "); using ");
    pa_buf_str(&b, fallback);
    pa_buf_str(&b, "\n");
    pa_write_all(2, b.p, b.len);
}

static int parse_bool(const char *v, int *out)
{
    if (!strcmp(v, "1") || !strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true"))
        *out = 1;
    else if (!strcmp(v, "0") || !strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false"))
        *out = 0;
    else
        return -1;
    return 0;
}

/* A boolean variable: sets *out when it is set and valid; warns and keeps *out otherwise. */
static void env_bool(const char *name, int *out)
{
    const char *v = pa_getenv(name);
    if (!v || !*v)
        return;
    if (parse_bool(v, out) != 0)
        config_warn(name, v, "0|1", *out ? "1" : "0");
}

/* Parses "123", "64k", "1m", "2g"; -1 if malformed. */
static int parse_size(const char *v, size_t *out)
{
    if (!*v)
        return -1;
    size_t n = 0;
    const char *s = v;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (n > (SIZE_MAX - 9) / 10)
            return -1;
        n = n * 10 + (size_t)(*s - '0');
    }
    if (s == v)
        return -1;
    int shift = 0;
    if (*s == 'k' || *s == 'K')
        shift = 10;
    else if (*s == 'm' || *s == 'M')
        shift = 20;
    else if (*s == 'g' || *s == 'G')
        shift = 30;
    if (shift)
        s++;
    if (*s)
        return -1;
    if (shift && n > (SIZE_MAX >> shift))
        return -1;
    *out = n << shift;
    return 0;
}

static void read_config(void)
{
    pa_getenv_init();
    int secure = getauxval(AT_SECURE) != 0;
    const char *v;
    pa_g.policy = PA_BEST;
    pa_g.tcache = 1;
    pa_g.huge_min = PA_DEFAULT_HUGE;
    pa_g.huge_dynamic = 1;
    if ((v = pa_getenv("PYALLOC_POLICY")) && *v) {
        int p = pa_policy_from_name(v);
        if (p < 0)
            config_warn("PYALLOC_POLICY", v, "best|worst|first|fifo", "best");
        else
            pa_g.policy = p;
    }
    env_bool("PYALLOC_TCACHE", &pa_g.tcache);
    if ((v = pa_getenv("PYALLOC_CHECK")) && *v) {
        if (!strcmp(v, "warn"))
            pa_g.check = CHECK_WARN;
        else if (!strcmp(v, "abort"))
            pa_g.check = CHECK_ABORT;
        else if (!strcmp(v, "quiet"))
            pa_g.check = CHECK_QUIET;
        else
            config_warn("PYALLOC_CHECK", v, "abort|warn|quiet", "abort");
    }
    env_bool("PYALLOC_SECURE", &pa_g.secure);
    if ((v = pa_getenv("PYALLOC_MMAP_THRESHOLD")) && *v) {
        size_t n;
        if (parse_size(v, &n) != 0)
            config_warn("PYALLOC_MMAP_THRESHOLD", v, "a size in bytes, e.g. 1m",
                        "128k, dynamic");
        else {
            pa_g.huge_min = n ? (n < PA_SMALL_MAX + 1 ? PA_SMALL_MAX + 1 : n) : SIZE_MAX;
            pa_g.huge_dynamic = 0;
        }
    }
    if ((v = pa_getenv("PYALLOC_ARENAS")) && *v) {
        size_t n;
        if (parse_size(v, &n) != 0 || n < 1 || n > PA_MAX_ARENAS)
            config_warn("PYALLOC_ARENAS", v, "1..16", "2 per CPU");
        else
            pa_g.narenas = (int)n;
    }
    if ((v = pa_getenv("PYALLOC_STATS")) && *v && strcmp(v, "0") != 0) {
        if (!strcmp(v, "1") || !strcmp(v, "stderr") || !strcmp(v, "text")) {
            pa_g.stats = 1;
        } else if (!strcmp(v, "json")) {
            pa_g.stats = 3; /* JSON on stderr */
        } else if (secure) {
            pa_g.stats = 1;
        } else if (strchr(v, '/') || strlen(v) > 5) {
            if (strlen(v) >= sizeof pa_g.stats_path - 32) {
                config_warn("PYALLOC_STATS", v, "1 or a shorter path", "1");
                pa_g.stats = 1;
            } else {
                memcpy(pa_g.stats_path, v, strlen(v) + 1);
                pa_g.stats = 2;
            }
        } else {
            config_warn("PYALLOC_STATS", v, "0|1|json|/path.json", "1");
            pa_g.stats = 1;
        }
    }
    if ((v = pa_getenv("PYALLOC_TRACE")) && *v && !secure) {
        if (strlen(v) >= sizeof pa_g.trace_path - 32)
            config_warn("PYALLOC_TRACE", v, "a path shorter than 480 bytes", "no trace");
        else {
            memcpy(pa_g.trace_path, v, strlen(v) + 1);
            pa_g.trace = 1;
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * Init, threads, fork
 * ------------------------------------------------------------------------------------------ */
static int route_free(pa_tcache *t, void *p, size_t *usable);

/* PYALLOC_SECURE: frees the blocks the thread holds back. */
static void quarantine_flush(pa_tcache *t)
{
    while (t->qcount) {
        void *q = t->quar[t->qhead];
        t->qhead = (t->qhead + 1) % PA_QUARANTINE;
        t->qcount--;
        route_free(t, q, NULL);
    }
}

static void thread_exit(void *arg)
{
    pa_tcache *t = arg;
    t->fast = 0;
    quarantine_flush(t);
    pa_tcache_flush_all(t);
    pa_stats_unregister(t);
    t->state = TC_DEAD;
    atomic_fetch_sub_explicit(&pa_g.arena_threads[t->arena], 1, memory_order_relaxed);
}

static void fork_prepare(void)
{
    if (pa_g.trace)
        pa_trace_fork_prepare();
    pa_huge_lock();
    for (int a = 0; a < pa_g.narenas; a++)
        pthread_mutex_lock(&pa_g.arenas[a].pool_lock);
    pa_small_lock_all();
    pa_stats_fork_prepare();
}

static void fork_parent(void)
{
    pa_stats_fork_parent();
    pa_small_unlock_all(0);
    for (int a = pa_g.narenas - 1; a >= 0; a--)
        pthread_mutex_unlock(&pa_g.arenas[a].pool_lock);
    pa_huge_unlock(0);
    if (pa_g.trace)
        pa_trace_fork_parent();
}

static void fork_child(void)
{
    pa_small_unlock_all(1);
    for (int a = pa_g.narenas - 1; a >= 0; a--)
        pthread_mutex_init(&pa_g.arenas[a].pool_lock, NULL);
    pa_huge_unlock(1);
    if (pa_g.trace)
        pa_trace_fork_child();
    pa_stats_fork_child();
}

#ifndef PA_MIN_TRIM
#define PA_MIN_TRIM ((size_t)4 << 20)
#endif
/* Free pool spans at least this large go back to the kernel. */
static size_t pool_trim_for(size_t huge_min)
{
    if (huge_min == SIZE_MAX)
        return (size_t)64 << 20;
    return 2 * huge_min > PA_MIN_TRIM ? 2 * huge_min : PA_MIN_TRIM;
}

static void pool_corrupted(const char *what, const void *where)
{
    pa_corrupt("malloc", what, where);
}

static int cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long v = sysconf(_SC_NPROCESSORS_ONLN);
    return v > 0 ? (int)v : 1;
}

void pa_init_slow(void)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&pa_g.ready, &expected, 1)) {
        if (pa_tc.in_init)
            return; /* recursion from inside init: the caller uses the boot heap */
        while (atomic_load_explicit(&pa_g.ready, memory_order_acquire) != 2)
            sched_yield();
        return;
    }
    pa_tc.in_init = 1;
    read_config();
    if (pa_g.narenas == 0) {
        int n = 2 * cpu_count();
        pa_g.narenas = n > PA_MAX_ARENAS ? PA_MAX_ARENAS : n;
    }
    uint64_t key = (uint64_t)(uintptr_t)&key * 0x9E3779B97F4A7C15ull;
    uint64_t lkey = key * 0xD6E8FEB86659FD93ull + 0x2545F4914F6CDD1Dull;
    const unsigned char *rnd = (const unsigned char *)getauxval(AT_RANDOM);
    if (rnd) {
        uint64_t r;
        memcpy(&r, rnd + 8, sizeof r);
        key ^= r;
        memcpy(&r, rnd, sizeof r);
        lkey ^= r;
    }
    pa_g.key = key | 1; /* odd: never a valid pointer */
    pa_g.lkey = (uintptr_t)(lkey | 0x10); /* nonzero: NULL links do not read as NULL */
    pa_g.pool_trim = pool_trim_for(pa_g.huge_min);
    pa_set_corruption_handler(pool_corrupted);
    for (int a = 0; a < pa_g.narenas; a++)
        pthread_mutex_init(&pa_g.arenas[a].pool_lock, NULL);
    pa_small_setup();
    if (pthread_key_create(&pa_g.tkey, thread_exit) != 0)
        pa_g.tcache = 0; /* cannot flush at thread exit: run without caches */
    if (pa_g.trace)
        pa_trace_start(); /* before any record can be made */
    if (pa_g.stats == 1 || pa_g.stats == 3) {
        /* Programs often close stderr in their own exit handlers (coreutils do), which run
         * before ours: keep a private copy of it for the report. */
        int fd = fcntl(2, F_DUPFD_CLOEXEC, 100);
        pa_g.stats_fd = fd >= 0 ? fd : 2;
    }
    atomic_store_explicit(&pa_g.ready, 2, memory_order_release);
    pa_tc.in_init = 0;
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void pa_thread_init(pa_tcache *t)
{
    /* The arena with the fewest live threads (the lowest on ties): threads that come and go
     * keep reusing the same arenas instead of spreading their memory over all of them. */
    int best = 0, load = atomic_load_explicit(&pa_g.arena_threads[0], memory_order_relaxed);
    for (int a = 1; a < pa_g.narenas && load > 0; a++) {
        int l = atomic_load_explicit(&pa_g.arena_threads[a], memory_order_relaxed);
        if (l < load) {
            best = a;
            load = l;
        }
    }
    atomic_fetch_add_explicit(&pa_g.arena_threads[best], 1, memory_order_relaxed);
    t->arena = (uint8_t)best;
    for (int c = 0; c < pa_g.nclasses; c++)
        t->bins[c].max = pa_g.cls_max[c];
    pa_stats_register(t);
    t->state = TC_LIVE;
    pthread_setspecific(pa_g.tkey, t); /* thread_exit: flush the cache, release the arena */
    if (pa_g.tcache && pa_g.small_size)
        t->fast = !pa_g.trace && !pa_g.secure;
}

/* 1 when the heap is up and this thread is set up; 0 when the caller must use the boot heap
 * (only while this very thread runs the init). */
static inline int ensure(pa_tcache *t)
{
    if (UNLIKELY(!pa_ready())) {
        pa_init_slow();
        if (!pa_ready())
            return 0;
    }
    if (UNLIKELY(t->state == TC_NEW))
        pa_thread_init(t);
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Routing (no statistics, no tracing: the exported functions add those)
 * ------------------------------------------------------------------------------------------ */
static pa_arena *pool_owner(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    for (int i = 0; i < pa_g.narenas; i++) {
        uintptr_t lo = atomic_load_explicit(&pa_g.pool_range[i].lo, memory_order_acquire);
        if (a - lo < atomic_load_explicit(&pa_g.pool_range[i].hi, memory_order_relaxed) - lo)
            return &pa_g.arenas[i];
    }
    return NULL;
}

/* After a pool operation (pool lock held): account for committed-bytes changes. */
static inline void pool_note(pa_arena *ar)
{
    size_t c = pa_pool_committed(ar->pool);
    if (UNLIKELY(c != ar->pool_committed)) {
        pa_stats_mapped((int64_t)c - (int64_t)ar->pool_committed);
        ar->pool_committed = c;
    }
}

/* Pool lock held: passes a changed trim threshold on to the pool. */
static inline void pool_sync_trim(pa_arena *ar)
{
    size_t t = atomic_load_explicit(&pa_g.pool_trim, memory_order_relaxed);
    if (UNLIKELY(t != ar->pool_trim)) {
        pa_pool_set_trim_threshold(ar->pool, t);
        ar->pool_trim = t;
    }
}

/* glibc's dynamic mmap threshold: freeing a mapped block of size S (up to 32 MiB) raises the
 * threshold to S, so that programs that keep allocating and freeing blocks of that size get
 * them from the pools, which keep up to twice the threshold mapped, instead of paying for
 * fresh zeroed pages and TLB shootdowns every time. */
static void huge_freed(size_t len)
{
    if (!pa_g.huge_dynamic || len < pa_g.huge_min || len > PA_HUGE_DYN_MAX)
        return;
    pa_g.huge_min = len + PA_ALIGN; /* a request of the freed block's size now fits below */
    atomic_store_explicit(&pa_g.pool_trim, pool_trim_for(len), memory_order_relaxed);
}

/* Medium class of a request n in (PA_SMALL_MAX, PA_MEDIUM_MAX]: four classes per doubling,
 * the class size being the request rounded up to the next quarter power of two. */
static inline unsigned mclass_of(size_t n)
{
    unsigned k = 63u - (unsigned)__builtin_clzll((unsigned long long)(n - 1)); /* 2^k < n */
    size_t quarter = (size_t)1 << (k - 2);
    size_t j = (n - ((size_t)1 << k) + quarter - 1) / quarter;             /* 1..4 */
    return (k - 12) * 4 + (unsigned)j - 1;
}

static inline size_t mclass_size(unsigned c)
{
    unsigned k = 12 + c / 4;
    return ((size_t)1 << k) + (size_t)(c % 4 + 1) * ((size_t)1 << (k - 2));
}

/* The largest class a block of `usable` bytes (<= PA_MEDIUM_MAX) can serve, or -1. */
static inline int mclass_floor(size_t usable)
{
    if (usable < mclass_size(0))
        return -1;
    if (usable >= PA_MEDIUM_MAX)
        return PA_MCLASSES - 1;
    unsigned c = mclass_of(usable);
    return mclass_size(c) <= usable ? (int)c : (int)c - 1;
}

/* A decoded medium-cache link: NULL, or an aligned block of this arena's pool marked free. */
static inline int mcache_link_ok(const pa_arena *ar, void **nx)
{
    long i = ar - pa_g.arenas;
    uintptr_t lo = pa_g.pool_range[i].lo, hi = pa_g.pool_range[i].hi;
    return !nx || ((uintptr_t)nx - lo < hi - lo &&
                   !((uintptr_t)nx & 15) && nx[1] == (void *)pa_g.key);
}

/* Is q in the medium cache of ar? Pool lock held. */
static int mcache_holds(pa_arena *ar, void **q)
{
    for (int c = 0; c < PA_MCLASSES; c++) {
        unsigned n = 0;
        for (void **e = ar->mcache[c]; e && n <= ar->mcount[c]; e = pa_dec(e), n++) {
            if (e == q)
                return 1;
            if (!mcache_link_ok(ar, e))
                break;
        }
    }
    return 0;
}

/* Pool lock held: keeps a freed medium block for reuse; 0 if it was not taken. -1 when the
 * block is already in the cache (a double free). */
static int mcache_put(pa_arena *ar, void *p, size_t usable)
{
    void **q = p;
    if (UNLIKELY(q[1] == (void *)pa_g.key) && mcache_holds(ar, q))
        return -1;
    int c = usable <= PA_MEDIUM_MAX ? mclass_floor(usable) : -1;
    if (c < 0 || ar->mcount[c] >= PA_MCACHE_COUNT || ar->mcache_bytes + usable > PA_MCACHE_BYTES)
        return 0;
    q[0] = pa_enc(q, ar->mcache[c]);
    q[1] = (void *)pa_g.key;
    ar->mcache[c] = q;
    ar->mcount[c]++;
    ar->mcache_bytes += usable;
    return 1;
}

/* Pool lock held: returns every cached medium block to the pool. */
static void mcache_flush(pa_arena *ar)
{
    for (int c = 0; c < PA_MCLASSES; c++) {
        while (ar->mcache[c]) {
            void **q = ar->mcache[c];
            void **nx = pa_dec(q);
            if (UNLIKELY(!mcache_link_ok(ar, nx)))
                pa_corrupt("malloc_trim", "corrupted free list", q);
            ar->mcache[c] = nx;
            q[1] = NULL;
            pa_pool_free(ar->pool, q);
        }
        ar->mcount[c] = 0;
    }
    ar->mcache_bytes = 0;
}

/* Pool lock held: frees the blocks other threads left on ar's remote list. */
static void mremote_drain(pa_arena *ar)
{
    void **q = atomic_exchange_explicit(&ar->mremote, NULL, memory_order_acquire);
    size_t bytes = 0;
    while (q) {
        void **nx = pa_dec(q);
        if (UNLIKELY(!mcache_link_ok(ar, nx)))
            pa_corrupt("free", "corrupted free list", q);
        q[1] = NULL;
        size_t u = pa_pool_usable_size(ar->pool, q);
        bytes += u;
        int cached = u ? mcache_put(ar, q, u) : 0;
        if (!u || cached < 0 || (!cached && pa_pool_free(ar->pool, q) != 0))
            pa_misuse("free", "double free", q); /* freed twice before it was drained */
        q = nx;
    }
    if (bytes)
        atomic_fetch_sub_explicit(&ar->mremote_bytes, bytes, memory_order_relaxed);
}

static inline void mremote_check(pa_arena *ar)
{
    if (UNLIKELY(atomic_load_explicit(&ar->mremote, memory_order_relaxed) != NULL))
        mremote_drain(ar);
}

/* A free of block p of ar by a thread of another arena: checked without the lock (a live
 * block's header and its neighbour's only change under their owner's own frees) and pushed on
 * ar's remote list. 0 when the caller must take the locked path (the block looks wrong or
 * already freed, or the list is full). */
static int mremote_push(pa_arena *ar, void *p, size_t *usable)
{
    void **q = p;
    if (q[1] == (void *)pa_g.key)
        return 0;
    size_t u = pa_pool_usable_size(ar->pool, p);
    if (!u || u <= PA_SMALL_MAX ||
        atomic_load_explicit(&ar->mremote_bytes, memory_order_relaxed) + u > PA_MREMOTE_BYTES)
        return 0;
    atomic_fetch_add_explicit(&ar->mremote_bytes, u, memory_order_relaxed);
    q[1] = (void *)pa_g.key;
    void *old = atomic_load_explicit(&ar->mremote, memory_order_relaxed);
    do
        q[0] = pa_enc(q, old);
    while (!atomic_compare_exchange_weak_explicit(&ar->mremote, &old, q, memory_order_release,
                                                  memory_order_relaxed));
    if (usable)
        *usable = u;
    return 1;
}

static void *pool_alloc_in(pa_arena *ar, size_t n, size_t align, size_t *usable, int exact)
{
    void *p = NULL;
    int mc = -1;
    if (pa_g.tcache && !exact && n > PA_SMALL_MAX && n <= PA_MEDIUM_MAX && align <= PA_ALIGN) {
        mc = (int)mclass_of(n);
        n = mclass_size((unsigned)mc);
    }
    pthread_mutex_lock(&ar->pool_lock);
    if (ar->pool)
        mremote_check(ar);
    if (mc >= 0 && ar->mcache[mc]) {
        void **q = ar->mcache[mc];
        void **nx = pa_dec(q);
        if (UNLIKELY(!mcache_link_ok(ar, nx)))
            pa_corrupt("malloc", "corrupted free list", q);
        ar->mcache[mc] = nx;
        ar->mcount[mc]--;
        q[1] = NULL;
        size_t u = pa_pool_usable_size(ar->pool, q);
        ar->mcache_bytes -= u;
        if (usable)
            *usable = u;
        pthread_mutex_unlock(&ar->pool_lock);
        return q;
    }
    if (!ar->pool) {
        for (size_t cap = PA_POOL_CAPACITY; cap >= ((size_t)64 << 20) && !ar->pool; cap /= 4)
            ar->pool = pa_pool_create(cap, pa_g.policy, PA_NOLOCK);
        if (ar->pool) {
            uintptr_t lo = (uintptr_t)pa_pool_base(ar->pool);
            int i = (int)(ar - pa_g.arenas);
            atomic_store_explicit(&pa_g.pool_range[i].hi, lo + pa_pool_capacity(ar->pool),
                                  memory_order_relaxed);
            atomic_store_explicit(&pa_g.pool_range[i].lo, lo, memory_order_release);
        }
    }
    if (ar->pool) {
        pool_sync_trim(ar);
        p = pa_pool_alloc_ex(ar->pool, n, align > PA_ALIGN ? align : 0, usable);
        pool_note(ar);
    }
    pthread_mutex_unlock(&ar->pool_lock);
    return p;
}

/* Growth by realloc. A block that realloc must move to a larger size tends to grow again:
 * above PA_GROW_POOL_MIN bytes it moves to the pool at its own size rather than to a size
 * class, so that it can later grow in place and the blocks it leaves behind coalesce with
 * their neighbours (size classes cannot reuse a freed 1 KiB block for a 2 KiB request; this
 * is what kept the peak RSS of realloc-heavy programs well above glibc's). A small step
 * (less than an eighth of the block, as in appending to a string) gets an eighth more room,
 * so that the next steps need no call into the pool; a program that doubles its buffers
 * manages its own capacity and gets none. */
#ifndef PA_GROW_POOL_MIN
#define PA_GROW_POOL_MIN 256
#endif
#define PA_GROW_SLACK_MAX ((size_t)64 << 10)
static inline size_t grow_target(size_t old, size_t n)
{
    if (n - old < old / 8 && n <= PA_GROW_SLACK_MAX)
        return n + n / 8;
    return n;
}

/* grow_from: the usable size of the block that a realloc is moving, 0 for other requests. */
static void *route_alloc(pa_tcache *t, size_t n, size_t align, int *kind, size_t *usable,
                         size_t grow_from)
{
    void *p;
    int grow = pa_g.tcache && grow_from && n > grow_from && n > PA_GROW_POOL_MIN;
    if (grow)
        n = grow_target(grow_from, n);
    if (pa_g.tcache && !grow && n <= PA_SMALL_MAX && align <= PA_SMALL_MAX && pa_g.small_size) {
        unsigned c = pa_class_of(n);
        while (c < (unsigned)pa_g.nclasses && (pa_g.cls_size[c] & (align - 1)))
            c++;
        if (c < (unsigned)pa_g.nclasses) {
            p = pa_small_alloc(t, c);
            if (p) {
                *kind = PA_KIND_SMALL;
                if (usable)
                    *usable = pa_g.cls_size[c];
                return p;
            }
        }
    }
    if (n < pa_g.huge_min && align <= PA_MAX_ALIGN) {
        p = pool_alloc_in(&pa_g.arenas[t->arena], n, align, usable, grow);
        if (!p) /* that pool is full: try the others before mmap */
            for (int a = 0; a < pa_g.narenas && !p; a++)
                if (a != t->arena)
                    p = pool_alloc_in(&pa_g.arenas[a], n, align, usable, grow);
        if (p) {
            *kind = PA_KIND_POOL;
            return p;
        }
    }
    p = pa_huge_alloc(n, align);
    if (p) {
        *kind = PA_KIND_HUGE;
        if (usable)
            *usable = pa_huge_usable(p);
    }
    return p;
}

/* PA_FREE_OK, or why p could not be freed. *usable gets the freed block's usable size. */
static int route_free(pa_tcache *t, void *p, size_t *usable)
{
    if (pa_in_small(p)) {
        if (usable)
            *usable = pa_small_usable(p);
        return pa_small_free(t, p);
    }
    pa_arena *ar = pool_owner(p);
    if (ar) {
        if (pa_g.tcache && t->state == TC_LIVE && ar != &pa_g.arenas[t->arena] &&
            mremote_push(ar, p, usable))
            return PA_FREE_OK;
        pthread_mutex_lock(&ar->pool_lock);
        mremote_check(ar);
        pool_sync_trim(ar);
        int rc;
        size_t u = 0;
        if (!pa_g.tcache) { /* no medium cache: one lookup of the block */
            rc = pa_pool_free_ex(ar->pool, p, &u) == 0 ? PA_FREE_OK
                 : pa_pool_ptr_state(ar->pool, p) == PA_PTR_FREE ? PA_FREE_DOUBLE
                                                                 : PA_FREE_INVALID;
        } else if ((u = pa_pool_usable_size(ar->pool, p)) != 0) {
            int cached = u > PA_SMALL_MAX ? mcache_put(ar, p, u) : 0;
            rc = cached < 0 ? PA_FREE_DOUBLE
                 : cached || pa_pool_free(ar->pool, p) == 0 ? PA_FREE_OK : PA_FREE_INVALID;
        } else {
            rc = pa_pool_ptr_state(ar->pool, p) == PA_PTR_FREE ? PA_FREE_DOUBLE : PA_FREE_INVALID;
        }
        if (usable)
            *usable = u;
        pool_note(ar);
        pthread_mutex_unlock(&ar->pool_lock);
        return rc;
    }
    if (in_boot(p))
        return PA_FREE_OK; /* never reused */
    size_t len = pa_huge_free(p);
    if (usable)
        *usable = len;
    if (len)
        huge_freed(len);
    return len ? PA_FREE_OK : PA_FREE_INVALID;
}

/* Usable size of a live block, 0 if p is not one. */
static size_t route_usable(const void *p)
{
    if (pa_in_small(p))
        return pa_small_usable(p);
    pa_arena *ar = pool_owner(p);
    if (ar) {
        pthread_mutex_lock(&ar->pool_lock);
        size_t r = pa_pool_usable_size(ar->pool, p);
        pthread_mutex_unlock(&ar->pool_lock);
        return r;
    }
    if (in_boot(p))
        return boot_size(p);
    return pa_huge_usable(p);
}

/* PYALLOC_SECURE free: the block is checked, zeroed, and held back in the thread's
 * quarantine ring; the block it pushes out is freed for real. Huge blocks are unmapped at
 * once (a later access faults). */
static int secure_free(pa_tcache *t, void *p, size_t *usable)
{
    void **q = p;
    if (t->state != TC_LIVE || pa_huge_usable(p) || in_boot(p))
        return route_free(t, p, usable);
    for (uint32_t i = 0, j = t->qhead; i < t->qcount; i++, j = (j + 1) % PA_QUARANTINE)
        if (t->quar[j] == p)
            return PA_FREE_DOUBLE;
    size_t u;
    if ((pa_in_small(p) && q[1] == (void *)pa_g.key) || !(u = route_usable(p)))
        return route_free(t, p, usable); /* says what is wrong with it */
    memset(p, 0, u);
    if (usable)
        *usable = u;
    if (t->qcount == PA_QUARANTINE) {
        void *old = t->quar[t->qhead];
        t->quar[t->qhead] = p;
        t->qhead = (t->qhead + 1) % PA_QUARANTINE;
        route_free(t, old, NULL);
    } else {
        t->quar[(t->qhead + t->qcount) % PA_QUARANTINE] = p;
        t->qcount++;
    }
    return PA_FREE_OK;
}

/* Moves a block: new block, copy, free the old one. */
static void *realloc_move(pa_tcache *t, void *p, size_t old_usable, size_t n, size_t *new_usable)
{
    int kind;
    void *q = route_alloc(t, n, PA_ALIGN, &kind, new_usable, old_usable);
    if (!q)
        return NULL;
    memcpy(q, p, old_usable < n ? old_usable : n);
    if (pa_g.secure)
        secure_free(t, p, NULL);
    else
        route_free(t, p, NULL);
    return q;
}

/* realloc for p != NULL, n > 0. *invalid set when p is not a live block. */
static void *route_realloc(pa_tcache *t, void *p, size_t n, size_t *old_usable,
                           size_t *new_usable, int *invalid)
{
    *invalid = 0;
    if (pa_in_small(p)) {
        size_t u = pa_small_usable(p);
        if (!u) {
            *invalid = 1;
            return NULL;
        }
        *old_usable = u;
        if (n <= u && (n > u / 2 || u <= 32)) {
            *new_usable = u;
            return p;
        }
        return realloc_move(t, p, u, n, new_usable);
    }
    pa_arena *ar = pool_owner(p);
    if (ar) {
        pthread_mutex_lock(&ar->pool_lock);
        size_t u = pa_pool_usable_size(ar->pool, p);
        if (!u) {
            pthread_mutex_unlock(&ar->pool_lock);
            *invalid = 1;
            return NULL;
        }
        *old_usable = u;
        void *q = NULL;
        if (pa_g.tcache && n <= u && n > u / 2) {
            q = p; /* still fits: keep the slack for the next growth */
            *new_usable = u;
        } else if (n < pa_g.huge_min) {
            q = pa_pool_realloc(ar->pool, p, pa_g.tcache && n > u ? grow_target(u, n) : n);
            if (q)
                *new_usable = pa_pool_usable_size(ar->pool, q);
        }
        pool_note(ar);
        pthread_mutex_unlock(&ar->pool_lock);
        if (q)
            return q;
        return realloc_move(t, p, u, n, new_usable);
    }
    if (in_boot(p)) {
        size_t u = boot_size(p);
        *old_usable = 0; /* boot blocks are not in the statistics */
        int kind;
        void *q = route_alloc(t, n, PA_ALIGN, &kind, new_usable, 0);
        if (q)
            memcpy(q, p, u < n ? u : n);
        return q;
    }
    size_t u = pa_huge_usable(p);
    if (!u) {
        *invalid = 1;
        return NULL;
    }
    *old_usable = u;
    if (n >= pa_g.huge_min || n > u / 2) {
        void *q = pa_huge_realloc(p, n);
        if (q)
            *new_usable = pa_huge_usable(q);
        return q;
    }
    return realloc_move(t, p, u, n, new_usable);
}

/* ------------------------------------------------------------------------------------------
 * Slow paths of the exported functions
 * ------------------------------------------------------------------------------------------ */

static void *alloc_slow(pa_tcache *t, size_t n, size_t align, int op, int zero)
{
    if (UNLIKELY(n > PTRDIFF_MAX)) {
        errno = ENOMEM;
        atomic_fetch_add_explicit(&pa_st.failed, 1, memory_order_relaxed);
        return NULL;
    }
    if (UNLIKELY(!ensure(t))) {
        if (align > PA_ALIGN)
            return NULL;
        return boot_alloc(n); /* static memory is zero */
    }
    int kind = 0;
    size_t usable = 0;
    if (pa_g.trace)
        pa_trace_lock();
    void *p = route_alloc(t, n, align, &kind, &usable, 0);
    if (p && (zero || pa_g.secure) && kind != PA_KIND_HUGE)
        memset(p, 0, kind == PA_KIND_SMALL ? pa_g.cls_size[pa_class_of(n)] : n);
    if (pa_g.trace) {
        if (op == OP_MEMALIGN)
            pa_trace_memalign(t, align, n, p);
        else if (op == OP_CALLOC)
            pa_trace_calloc(t, n, p);
        else
            pa_trace_malloc(t, n, p);
        pa_trace_unlock();
    }
    if (p) {
        pa_count_alloc(t, op, n, usable, kind);
    } else {
        atomic_fetch_add_explicit(&pa_st.failed, 1, memory_order_relaxed);
        errno = ENOMEM;
    }
    return p;
}

static void free_slow(pa_tcache *t, void *p, const char *who)
{
    if (!p)
        return;
    int e = errno;
    if (UNLIKELY(!pa_ready())) {
        if (!in_boot(p))
            pa_misuse(who, "invalid pointer", p);
        errno = e;
        return;
    }
    if (UNLIKELY(t->state == TC_NEW))
        pa_thread_init(t);
    size_t usable = 0;
    if (pa_g.trace)
        pa_trace_lock();
    int rc = pa_g.secure ? secure_free(t, p, &usable) : route_free(t, p, &usable);
    if (pa_g.trace) {
        if (rc == 0)
            pa_trace_free(t, p);
        pa_trace_unlock();
    }
    if (rc != PA_FREE_OK)
        pa_misuse(who, rc == PA_FREE_DOUBLE ? "double free" : "invalid pointer", p);
    else if (!in_boot(p))
        pa_count_free(t, usable);
    errno = e;
}

/* ------------------------------------------------------------------------------------------
 * The malloc family
 * ------------------------------------------------------------------------------------------ */
PA_EXPORT void *malloc(size_t n)
{
    pa_tcache *t = &pa_tc;
    if (LIKELY(n <= PA_SMALL_MAX && t->fast)) {
        unsigned c = pa_class_of(n);
        pa_bin *b = &t->bins[c];
        void **p = b->head;
        if (LIKELY(p != NULL)) {
            void **nx = pa_dec(p);
            if (UNLIKELY(!pa_small_link_fast(nx)))
                pa_corrupt("malloc", "corrupted free list", p);
            b->head = nx;
            b->count--;
            p[1] = NULL;
            t->cnt.mallocs++;
            t->cnt.bytes_requested += n;
            t->cnt.live += pa_g.cls_size[c];
            t->cnt.small_allocs[c]++;
            return p;
        }
    }
    return alloc_slow(t, n, PA_ALIGN, OP_MALLOC, 0);
}

PA_EXPORT void free(void *p)
{
    pa_tcache *t = &pa_tc;
    if (LIKELY(pa_in_small(p) && t->fast)) {
        pa_span *s = pa_span_of(p);
        unsigned c = s->cls;
        if (LIKELY(c != PA_CLS_NONE)) {
            uint32_t off = (uint32_t)((uintptr_t)p & (PA_SPAN_SIZE - 1));
            uint32_t idx = (uint32_t)(((uint64_t)off * pa_g.cls_magic[c]) >> 32);
            void **q = p;
            pa_bin *b = &t->bins[c];
            if (LIKELY(idx * pa_g.cls_size[c] == off &&
                       idx < __atomic_load_n(&s->bump, __ATOMIC_RELAXED) &&
                       q[1] != (void *)pa_g.key && b->count < b->max)) {
                q[0] = pa_enc(q, b->head);
                q[1] = (void *)pa_g.key;
                b->head = q;
                b->count++;
                t->cnt.frees++;
                t->cnt.live -= pa_g.cls_size[c];
                return;
            }
        }
    }
    free_slow(t, p, "free");
}

PA_EXPORT void cfree(void *p) { free_slow(&pa_tc, p, "free"); }

PA_EXPORT void *calloc(size_t a, size_t b)
{
    size_t n;
    if (UNLIKELY(__builtin_mul_overflow(a, b, &n))) {
        errno = ENOMEM;
        return NULL;
    }
    pa_tcache *t = &pa_tc;
    if (LIKELY(n <= PA_SMALL_MAX && t->fast)) {
        unsigned c = pa_class_of(n);
        pa_bin *bin = &t->bins[c];
        void **p = bin->head;
        if (LIKELY(p != NULL)) {
            void **nx = pa_dec(p);
            if (UNLIKELY(!pa_small_link_fast(nx)))
                pa_corrupt("calloc", "corrupted free list", p);
            bin->head = nx;
            bin->count--;
            t->cnt.callocs++;
            t->cnt.bytes_requested += n;
            t->cnt.live += pa_g.cls_size[c];
            t->cnt.small_allocs[c]++;
            return memset(p, 0, pa_g.cls_size[c]);
        }
    }
    return alloc_slow(t, n, PA_ALIGN, OP_CALLOC, 1);
}

PA_EXPORT void *realloc(void *p, size_t n)
{
    if (!p)
        return alloc_slow(&pa_tc, n, PA_ALIGN, OP_MALLOC, 0);
    if (n == 0) {
        free_slow(&pa_tc, p, "realloc");
        return NULL;
    }
    if (UNLIKELY(n > PTRDIFF_MAX)) {
        errno = ENOMEM;
        return NULL;
    }
    pa_tcache *t = &pa_tc;
    if (UNLIKELY(!ensure(t))) {
        /* Only during init, and only boot blocks can exist then. */
        if (!in_boot(p))
            return NULL;
        void *q = boot_alloc(n);
        if (q)
            memcpy(q, p, boot_size(p) < n ? boot_size(p) : n);
        return q;
    }
    /* Fast case: a small block that still fits. */
    if (LIKELY(t->fast && pa_in_small(p))) {
        size_t u = pa_small_usable(p);
        if (u && n <= u && (n > u / 2 || u <= 32)) {
            t->cnt.reallocs++;
            t->cnt.bytes_requested += n;
            return p;
        }
    }
    size_t old_usable = 0, new_usable = 0;
    int invalid;
    if (pa_g.trace)
        pa_trace_lock();
    void *q = route_realloc(t, p, n, &old_usable, &new_usable, &invalid);
    if (pa_g.trace) {
        if (!invalid)
            pa_trace_realloc(t, p, n, q);
        pa_trace_unlock();
    }
    if (invalid) {
        pa_misuse("realloc", "invalid pointer", p);
        errno = EINVAL;
        return NULL;
    }
    if (!q) {
        errno = ENOMEM;
        atomic_fetch_add_explicit(&pa_st.failed, 1, memory_order_relaxed);
        return NULL;
    }
    if (LIKELY(t->state == TC_LIVE))
        t->cnt.live -= (int64_t)old_usable;
    else
        atomic_fetch_sub_explicit(&pa_st.live, (int64_t)old_usable, memory_order_relaxed);
    pa_count_alloc(t, OP_REALLOC, n, new_usable, 0);
    return q;
}

PA_EXPORT void *reallocarray(void *p, size_t a, size_t b)
{
    size_t n;
    if (__builtin_mul_overflow(a, b, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, n);
}

static inline int pow2(size_t a) { return a && !(a & (a - 1)); }

PA_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    if (!pow2(align) || align % sizeof(void *) != 0)
        return EINVAL;
    int e = errno;
    void *p = alloc_slow(&pa_tc, n, align < PA_ALIGN ? PA_ALIGN : align, OP_MEMALIGN, 0);
    if (!p) {
        errno = e;
        return ENOMEM;
    }
    *out = p;
    return 0;
}

PA_EXPORT void *aligned_alloc(size_t align, size_t n)
{
    if (!pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return alloc_slow(&pa_tc, n, align < PA_ALIGN ? PA_ALIGN : align, OP_MEMALIGN, 0);
}

PA_EXPORT void *memalign(size_t align, size_t n)
{
    if (align <= PA_ALIGN)
        return alloc_slow(&pa_tc, n, PA_ALIGN, OP_MEMALIGN, 0);
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (!pow2(align)) { /* glibc rounds up to a power of two */
        size_t a = PA_ALIGN;
        while (a < align)
            a <<= 1;
        align = a;
    }
    return alloc_slow(&pa_tc, n, align, OP_MEMALIGN, 0);
}

PA_EXPORT void *valloc(size_t n)
{
    return alloc_slow(&pa_tc, n, pa_os_page_size(), OP_MEMALIGN, 0);
}

PA_EXPORT void *pvalloc(size_t n)
{
    size_t page = pa_os_page_size();
    if (n > SIZE_MAX - page) {
        errno = ENOMEM;
        return NULL;
    }
    n = (n + page - 1) & ~(page - 1);
    return alloc_slow(&pa_tc, n ? n : page, page, OP_MEMALIGN, 0);
}

PA_EXPORT size_t malloc_usable_size(void *p)
{
    if (!p)
        return 0;
    pa_tcache *t = &pa_tc;
    if (!pa_ready()) {
        if (in_boot(p))
            return boot_size(p);
        pa_misuse("malloc_usable_size", "invalid pointer", p);
        return 0;
    }
    (void)t;
    size_t u = route_usable(p);
    if (!u)
        pa_misuse("malloc_usable_size", "invalid pointer", p);
    return u;
}

/* glibc's internal names, used by some programs and libraries to reach "the real malloc". */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-attributes"
PA_EXPORT void *__libc_malloc(size_t n) __attribute__((alias("malloc")));
PA_EXPORT void __libc_free(void *p) __attribute__((alias("free")));
PA_EXPORT void *__libc_calloc(size_t a, size_t b) __attribute__((alias("calloc")));
PA_EXPORT void *__libc_realloc(void *p, size_t n) __attribute__((alias("realloc")));
PA_EXPORT void *__libc_memalign(size_t a, size_t n) __attribute__((alias("memalign")));
PA_EXPORT void *__libc_valloc(size_t n) __attribute__((alias("valloc")));
PA_EXPORT void *__libc_pvalloc(size_t n) __attribute__((alias("pvalloc")));
PA_EXPORT int __posix_memalign(void **o, size_t a, size_t n) __attribute__((alias("posix_memalign")));
#pragma GCC diagnostic pop

/* ------------------------------------------------------------------------------------------
 * glibc extras: harmless, truthful where there is something to say
 * ------------------------------------------------------------------------------------------ */
PA_EXPORT int mallopt(int param, int value)
{
    (void)param;
    (void)value;
    return 1;
}

PA_EXPORT int malloc_trim(size_t pad)
{
    (void)pad;
    if (!pa_ready())
        return 0;
    for (int a = 0; a < pa_g.narenas; a++) {
        pa_arena *ar = &pa_g.arenas[a];
        pthread_mutex_lock(&ar->pool_lock);
        if (ar->pool) {
            mremote_drain(ar);
            mcache_flush(ar);
            pa_pool_trim(ar->pool);
            pool_note(ar);
        }
        pthread_mutex_unlock(&ar->pool_lock);
    }
    return pa_small_trim() > 0;
}

static void fill_info(size_t *arena, size_t *hblks, size_t *hblkhd, size_t *uord, size_t *ford)
{
    uint64_t spans = 0, dirty = 0, hb = 0, hbytes = 0, pused = 0, pfree = 0, pcommit = 0;
    if (pa_ready()) {
        pa_small_counts(&spans, &dirty);
        pa_huge_counts(&hb, &hbytes);
        for (int a = 0; a < pa_g.narenas; a++) {
            pa_arena *ar = &pa_g.arenas[a];
            pthread_mutex_lock(&ar->pool_lock);
            if (ar->pool) {
                pa_stats s;
                pa_pool_stats(ar->pool, &s);
                pused += s.used;
                pfree += s.free < s.committed ? s.free : s.committed - s.used;
                pcommit += s.committed;
            }
            pthread_mutex_unlock(&ar->pool_lock);
        }
    }
    *arena = (size_t)(pcommit + (spans + dirty) * PA_SPAN_SIZE);
    *hblks = (size_t)hb;
    *hblkhd = (size_t)hbytes;
    *uord = (size_t)(pused + spans * PA_SPAN_SIZE);
    *ford = (size_t)(*arena - *uord);
}

PA_EXPORT struct mallinfo2 mallinfo2(void)
{
    struct mallinfo2 m;
    memset(&m, 0, sizeof m);
    fill_info(&m.arena, &m.hblks, &m.hblkhd, &m.uordblks, &m.fordblks);
    m.keepcost = 0;
    return m;
}

PA_EXPORT struct mallinfo mallinfo(void)
{
    struct mallinfo2 m2 = mallinfo2();
    struct mallinfo m;
    memset(&m, 0, sizeof m);
    m.arena = (int)m2.arena;
    m.hblks = (int)m2.hblks;
    m.hblkhd = (int)m2.hblkhd;
    m.uordblks = (int)m2.uordblks;
    m.fordblks = (int)m2.fordblks;
    return m;
}

PA_EXPORT void malloc_stats(void)
{
    if (pa_ready())
        pa_stats_report_text_now();
}

PA_EXPORT int malloc_info(int options, FILE *fp)
{
    if (options != 0)
        return EINVAL; /* as glibc */
    size_t arena, hblks, hblkhd, uord, ford;
    fill_info(&arena, &hblks, &hblkhd, &uord, &ford);
    fprintf(fp, "<malloc version=\"pyalloc-1\">\n<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n"
                "<system type=\"current\" size=\"%zu\"/>\n<aspace type=\"total\" size=\"%zu\"/>\n"
                "</malloc>\n",
            hblks, hblkhd, arena + hblkhd, arena + hblkhd);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Exit
 * ------------------------------------------------------------------------------------------ */
__attribute__((destructor)) static void pa_fini(void)
{
    if (!pa_ready())
        return;
    if (pa_g.trace)
        pa_trace_finish();
    if (pa_g.stats)
        pa_stats_report();
}

/* Makes sure the heap exists before main() even in programs that never allocate, so that
 * statistics and traces always cover the whole run. */
__attribute__((constructor)) static void pa_ctor(void)
{
    if (!pa_ready())
        pa_init_slow();
}

/* Lets programs and tests recognise the library: dlsym(RTLD_DEFAULT, "pyalloc_version"). */
PA_EXPORT const char pyalloc_version[] = "pyalloc 0.1.0";
