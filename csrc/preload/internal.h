/* internal.h - shared state of the LD_PRELOAD front end (libpyalloc.so), internal.
 *
 * Request routing (see docs/preload.md for the reasons behind each number):
 *   n <= PA_SMALL_MAX        size classes: per-thread caches (TLS, initial-exec), refilled in
 *                            batches from 16 KiB spans owned by an arena (small.c)
 *   n <  g.huge_min          the arena's pa_pool, with the configured policy (preload.c)
 *   n >= g.huge_min          mmap / mremap / munmap, with a registry (huge.c)
 * With PYALLOC_TCACHE=0 the first row is skipped: small requests go to the pools too.
 *
 * Ownership of a pointer is found from its address alone: all small spans live in one
 * reserved region (arena k owns the k-th slice), pools are a handful of address ranges, and
 * huge blocks are looked up in a hash table. Anything else is a foreign pointer.
 */
#ifndef PA_PRELOAD_INTERNAL_H
#define PA_PRELOAD_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "pyalloc.h"

#define PA_EXPORT __attribute__((visibility("default")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define PA_HIDDEN __attribute__((visibility("hidden")))

#ifndef PA_SMALL_MAX
#define PA_SMALL_MAX 4096             /* largest size served by the size classes */
#endif
#define PA_NCLASSES_MAX 40
/* A cache bin starts with room for two refill batches (at most 64 blocks); a bin that both
 * overflows and needs refills (a thread that holds many blocks of one class at a time, and
 * frees them itself) doubles its bound, up to this many bytes; one that overflows PA_BIN_DRY
 * times in a row with no refill in between (a thread that now frees what others allocated)
 * halves it again. */
#define PA_BIN_BYTES ((uint32_t)32 << 10)
#define PA_BIN_DRY 8
#ifndef PA_SPAN_SHIFT
#define PA_SPAN_SHIFT 14              /* 16 KiB spans (see docs/preload.md) */
#endif
#define PA_SPAN_SIZE ((size_t)1 << PA_SPAN_SHIFT)
#define PA_MAX_ARENAS 16
#define PA_DEFAULT_HUGE ((size_t)128 << 10) /* initial mmap threshold (glibc's) */
#define PA_HUGE_DYN_MAX ((size_t)32 << 20)  /* the dynamic threshold stops here (glibc's) */
#define PA_POOL_CAPACITY ((size_t)1 << 38)  /* address space reserved per arena pool (256 GiB) */
#define PA_REGION_SLICE ((size_t)1 << 34)   /* small-span address space per arena (16 GiB) */
#define PA_CLS_NONE 0xFF
#define PA_QUARANTINE 64   /* blocks per thread held back from reuse under PYALLOC_SECURE */
#define PA_REGION_CHUNK ((size_t)256 << 10) /* the small region is made writable this much at a time */
#define PA_REGION_GUARD ((size_t)4 << 20)   /* inaccessible space below the small region */
/* Medium blocks (above PA_SMALL_MAX, up to PA_MEDIUM_MAX) come from the pools; with thread
 * caches on, their sizes are rounded up to classes of four per doubling and freed blocks are
 * kept per arena and class (PA_MCACHE_COUNT at most, PA_MCACHE_BYTES in all), so that hot
 * medium sizes skip the pool's free index. PYALLOC_TCACHE=0 turns this off too. */
#define PA_MEDIUM_MAX ((size_t)256 << 10)
#define PA_MCLASSES 24
#define PA_MCACHE_COUNT 16
#define PA_MCACHE_BYTES ((size_t)4 << 20)

/* ------------------------------------------------------------------------------------------
 * Small objects: spans and thread caches
 * ------------------------------------------------------------------------------------------ */
typedef struct pa_span {
    void *free;              /* intrusive free list of blocks returned to the span */
    struct pa_span *next;    /* in the class's partial list, or an arena's empty list */
    struct pa_span *prev;
    uint32_t nfree;          /* blocks on `free` + blocks never handed out */
    uint32_t bump;           /* index of the next never-used block */
    uint32_t nblocks;
    uint8_t cls;             /* size class, PA_CLS_NONE when the span holds no class */
    uint8_t arena;
    uint8_t listed;          /* on the class's partial list */
    uint8_t dirty;           /* empty but its pages were not returned to the kernel */
} pa_span;

typedef struct pa_bin {
    void *head;              /* singly linked through word 0; word 1 holds g.key */
    uint32_t count;
    uint16_t max;            /* bound on count: cls_max..cls_cap (PA_BIN_BYTES) */
    uint16_t dry;            /* overflows in a row with no refill in between */
} pa_bin;

enum { TC_NEW = 0, TC_LIVE = 1, TC_DEAD = 2 };

/* Request counters, always on: each thread counts its own requests in plain words of its
 * cache (no atomics, no shared cache lines), and malloc_stats() / the exit report add them
 * up under the registry lock (stats.c). */
typedef struct pa_tcount {
    uint64_t mallocs, callocs, reallocs, memaligns, frees;
    uint64_t bytes_requested;
    int64_t live;                          /* usable bytes allocated - freed by this thread */
    uint64_t small_allocs[PA_NCLASSES_MAX];
    uint64_t medium_allocs, huge_allocs;
} pa_tcount;

typedef struct pa_tcache {
    pa_bin bins[PA_NCLASSES_MAX];
    uint8_t fast;            /* thread caches on, no trace: the inline paths apply */
    uint8_t state;           /* TC_* */
    uint8_t arena;
    uint8_t in_init;         /* this thread is running the global init */
    uint32_t trace_tid;      /* thread number in the trace, 0 = not yet assigned */
    uint64_t refilled;       /* bit c: bin c was refilled since it last overflowed */
    pa_tcount cnt;
    void *quar[PA_QUARANTINE]; /* PYALLOC_SECURE: freed blocks held back from reuse (ring) */
    uint32_t qhead, qcount;
    int64_t live_pushed;     /* part of cnt.live already added to the global live figure */
    struct pa_tcache *reg_next, *reg_prev; /* the registry of live thread caches */
} pa_tcache;

typedef struct pa_aclass {   /* one size class of one arena */
    pthread_mutex_t lock;
    pa_span *partial;        /* spans with free blocks (circular, doubly linked) */
    uint64_t spans;
    /* Blocks of this arena freed by threads of other arenas: pushed a batch at a time with
     * one compare-and-swap (no lock), taken whole by the next refill of this class in this
     * arena, which hands them out without touching their spans. Its own cache line. */
    _Atomic(void *) remote __attribute__((aligned(64)));
    _Atomic uint32_t nremote;
} __attribute__((aligned(64))) pa_aclass;
#define PA_REMOTE_MAX 4096   /* blocks a remote list may hold; past it, the locked path */

typedef struct pa_arena {
    pa_aclass cls[PA_NCLASSES_MAX];
    pthread_mutex_t span_lock;     /* region bump pointer and empty span lists */
    uintptr_t region_lo, region_hi, region_bump;
    uintptr_t region_commit;       /* end of the slice's read/write part (the rest faults) */
    pa_span *dirty;                /* empty spans whose pages are still mapped (LIFO) */
    pa_span *clean;                /* empty spans already purged */
    uint32_t ndirty;
    pthread_mutex_t pool_lock __attribute__((aligned(64)));
    pa_pool *pool;
    uint64_t pool_committed;       /* last committed figure seen (stats) */
    void *mcache[PA_MCLASSES];     /* cached medium blocks per class, linked through word 0 */
    uint16_t mcount[PA_MCLASSES];
    size_t mcache_bytes;
    size_t pool_trim;              /* trim threshold in force for this pool */
    /* Pool blocks freed by threads of other arenas, checked and pushed with one
     * compare-and-swap instead of a wait for pool_lock; whoever takes the lock next frees
     * them (pa_mremote_drain). Bounded by PA_MREMOTE_BYTES. */
    _Atomic(void *) mremote __attribute__((aligned(64)));
    _Atomic size_t mremote_bytes;
} pa_arena;
#define PA_MREMOTE_BYTES ((size_t)4 << 20)

/* ------------------------------------------------------------------------------------------
 * Global state
 * ------------------------------------------------------------------------------------------ */
enum { CHECK_ABORT = 0, CHECK_WARN = 1, CHECK_QUIET = 2 };

typedef struct pa_global {
    _Atomic int ready;             /* 0 none, 1 initializing, 2 ready */
    int policy;
    int tcache;                    /* thread caches on */
    int check;                     /* CHECK_* for invalid pointers */
    int secure;                    /* PYALLOC_SECURE: zero on free, quarantine, no fast paths */
    int stats;                     /* exit report: 0 none, 1 text on stderr, 2 JSON to
                                      stats_path, 3 JSON on stderr (counting is always on) */
    int stats_fd;                  /* a copy of stderr for the report */
    int trace;                     /* recording a trace */
    int narenas;
    int nclasses;
    size_t huge_min;               /* mmap threshold (dynamic unless set by environment) */
    int huge_dynamic;
    _Atomic size_t pool_trim;      /* trim threshold for the pools: 2 x mmap threshold */
    uint64_t key;                  /* marks blocks sitting in a cache or a span free list */
    uintptr_t lkey;                /* secret mixed into every free-list link (safe-linking) */
    uintptr_t small_base;          /* the small-span region */
    size_t small_size;
    pa_span *spans;                /* metadata, one per span of the region */
    pthread_key_t tkey;
    _Atomic unsigned next_arena;
    _Atomic int arena_threads[PA_MAX_ARENAS]; /* live threads using each arena */
    _Atomic int warnings;
    /* The address range of each arena's pool (0, 0 until it exists), written once and read
     * by every free of a pool block: kept apart from the arenas' locks, so that finding a
     * block's owner does not pull in a cache line that another thread is locking. */
    struct {
        _Atomic(uintptr_t) lo, hi;
    } pool_range[PA_MAX_ARENAS] __attribute__((aligned(64)));
    char stats_path[512] __attribute__((aligned(64)));
    char trace_path[512];
    uint32_t cls_size[PA_NCLASSES_MAX];
    uint32_t cls_magic[PA_NCLASSES_MAX]; /* ceil(2^32 / size): offset / size by multiply */
    uint32_t cls_batch[PA_NCLASSES_MAX];
    uint32_t cls_max[PA_NCLASSES_MAX];   /* a cache bin's starting bound */
    uint32_t cls_cap[PA_NCLASSES_MAX];   /* how far the bound may grow (PA_BIN_BYTES) */
    uint8_t lut[PA_SMALL_MAX / 16 + 1];  /* (n + 15) >> 4 -> class */
    pa_arena arenas[PA_MAX_ARENAS];
} pa_global;

extern pa_global pa_g PA_HIDDEN;
extern __thread pa_tcache pa_tc PA_HIDDEN __attribute__((tls_model("initial-exec")));

/* preload.c */
PA_HIDDEN void pa_init_slow(void);
PA_HIDDEN void pa_thread_init(pa_tcache *t);
/* Misuse: `who` is the function ("free"), `error` names what is wrong ("invalid pointer",
 * "double free"). Aborts with one line on stderr unless PYALLOC_CHECK=warn|quiet. */
PA_HIDDEN void pa_misuse(const char *who, const char *error, const void *p);
/* Heap corruption (a free-list link or a header that cannot be right): one line, abort,
 * whatever PYALLOC_CHECK says. */
PA_HIDDEN __attribute__((noreturn, cold)) void pa_corrupt(const char *who, const char *error,
                                                          const void *p);
PA_HIDDEN void pa_write_err(const char *s);
PA_HIDDEN void pa_getenv_init(void);
PA_HIDDEN const char *pa_getenv(const char *name);

static inline int pa_ready(void)
{
    return LIKELY(atomic_load_explicit(&pa_g.ready, memory_order_acquire) == 2);
}

/* small.c */
PA_HIDDEN void pa_small_setup(void);
PA_HIDDEN void *pa_small_alloc(pa_tcache *t, unsigned cls);   /* NULL: no span space */
enum { PA_FREE_OK = 0, PA_FREE_INVALID = 1, PA_FREE_DOUBLE = 2 };
PA_HIDDEN int pa_small_free(pa_tcache *t, void *p);           /* PA_FREE_* */
PA_HIDDEN size_t pa_small_usable(const void *p);              /* 0 if not a small block */
PA_HIDDEN void pa_tcache_flush_all(pa_tcache *t);
PA_HIDDEN void pa_small_lock_all(void);
PA_HIDDEN void pa_small_unlock_all(int reinit);
PA_HIDDEN size_t pa_small_trim(void);
PA_HIDDEN void pa_small_counts(uint64_t *spans_in_use, uint64_t *spans_dirty);

static inline unsigned pa_class_of(size_t n) { return pa_g.lut[(n + 15) >> 4]; }

/* Free-list links (thread caches, span free lists, the medium cache) are stored encoded, as
 * glibc's safe-linking does, with a secret: a use-after-free write or an overflow into a free
 * block's first word turns into a wild pointer that the checks below reject, instead of a
 * block handed out at an address of the attacker's choosing. */
static inline void *pa_enc(void **slot, void *next)
{
    return (void *)((uintptr_t)next ^ ((uintptr_t)slot >> 12) ^ pa_g.lkey);
}
static inline void **pa_dec(void **slot)
{
    return (void **)((uintptr_t)slot[0] ^ ((uintptr_t)slot >> 12) ^ pa_g.lkey);
}
static inline int pa_in_small(const void *p)
{
    return (uintptr_t)p - pa_g.small_base < pa_g.small_size;
}
static inline pa_span *pa_span_of(const void *p)
{
    return &pa_g.spans[((uintptr_t)p - pa_g.small_base) >> PA_SPAN_SHIFT];
}
/* The check of the inline pop: NULL, or 16-byte aligned inside the small region. With the
 * secret in the encoding, a value written into a free block decodes to a random address,
 * which lands there with a chance of about 2^-21 (region) x 1/16 (alignment). */
static inline int pa_small_link_fast(void **nx)
{
    return !nx || (pa_in_small(nx) && !((uintptr_t)nx & 15));
}
/* The full check of the slower paths: also marked free. */
static inline int pa_small_link_ok(void **nx)
{
    return !nx || (pa_in_small(nx) && !((uintptr_t)nx & 15) && nx[1] == (void *)pa_g.key);
}

/* huge.c */
PA_HIDDEN void *pa_huge_alloc(size_t n, size_t align);
PA_HIDDEN size_t pa_huge_free(void *p);              /* bytes unmapped, 0 if not huge */
PA_HIDDEN size_t pa_huge_usable(const void *p);      /* 0 if not a huge block */
PA_HIDDEN void *pa_huge_realloc(void *p, size_t n);  /* NULL + errno ENOMEM on failure */
PA_HIDDEN void pa_huge_lock(void);
PA_HIDDEN void pa_huge_unlock(int reinit);
PA_HIDDEN void pa_huge_counts(uint64_t *blocks, uint64_t *bytes);

/* stats.c */
typedef struct pa_gstats {
    _Atomic uint64_t invalid, failed;
    _Atomic int64_t live, peak_live;        /* usable bytes of live blocks, as pushed by the
                                               threads at their slow-path calls */
    _Atomic int64_t mapped, peak_mapped;    /* bytes the allocator holds from the kernel */
} pa_gstats;
extern pa_gstats pa_st PA_HIDDEN;

enum { OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_MEMALIGN };
enum { PA_KIND_SMALL = 1, PA_KIND_POOL = 2, PA_KIND_HUGE = 3 }; /* where a block came from */
/* Counting from the slow paths; the inline fast paths bump t->cnt themselves. */
PA_HIDDEN void pa_count_alloc(pa_tcache *t, int op, size_t request, size_t usable, int kind);
PA_HIDDEN void pa_count_free(pa_tcache *t, size_t usable);
PA_HIDDEN void pa_stats_register(pa_tcache *t);
PA_HIDDEN void pa_stats_unregister(pa_tcache *t);
/* Adds the thread's live-byte change since the last push to the global figure and raises
 * the peak, once the change passes 64 KiB: called on slow paths, so the peak is sampled
 * every few dozen requests and misses at most 64 KiB per thread. */
#define PA_PUSH_BYTES ((int64_t)64 << 10)
PA_HIDDEN void pa_stats_push_slow(pa_tcache *t, int64_t d);
static inline void pa_stats_push(pa_tcache *t)
{
    int64_t d = t->cnt.live - t->live_pushed;
    if (UNLIKELY(d > PA_PUSH_BYTES || d < -PA_PUSH_BYTES))
        pa_stats_push_slow(t, d);
}
PA_HIDDEN void pa_stats_mapped(int64_t delta);
PA_HIDDEN void pa_stats_report(void);
PA_HIDDEN void pa_stats_report_text_now(void);
PA_HIDDEN void pa_stats_fork_prepare(void);
PA_HIDDEN void pa_stats_fork_parent(void);
PA_HIDDEN void pa_stats_fork_child(void);

/* trace.c */
PA_HIDDEN void pa_trace_start(void);
PA_HIDDEN void pa_trace_lock(void);
PA_HIDDEN void pa_trace_unlock(void);
PA_HIDDEN void pa_trace_malloc(pa_tcache *t, size_t n, const void *r);
PA_HIDDEN void pa_trace_calloc(pa_tcache *t, size_t n, const void *r);
PA_HIDDEN void pa_trace_memalign(pa_tcache *t, size_t align, size_t n, const void *r);
PA_HIDDEN void pa_trace_free(pa_tcache *t, const void *p);
PA_HIDDEN void pa_trace_realloc(pa_tcache *t, const void *old, size_t n, const void *r);
PA_HIDDEN void pa_trace_finish(void);
PA_HIDDEN void pa_trace_fork_prepare(void);
PA_HIDDEN void pa_trace_fork_parent(void);
PA_HIDDEN void pa_trace_fork_child(void);

/* Small formatting helpers (no stdio: they run at exit and in odd states). */
typedef struct pa_buf {
    char *p;
    size_t len, cap;
} pa_buf;
PA_HIDDEN void pa_buf_str(pa_buf *b, const char *s);
PA_HIDDEN void pa_buf_u64(pa_buf *b, uint64_t v);
PA_HIDDEN void pa_buf_i64(pa_buf *b, int64_t v);
PA_HIDDEN void pa_buf_f(pa_buf *b, double v, int decimals);
PA_HIDDEN void pa_buf_hex(pa_buf *b, uint64_t v);
PA_HIDDEN int pa_write_all(int fd, const char *p, size_t n);
/* Copies `path` into out, replacing %p by the pid (and %% by %). */
PA_HIDDEN void pa_expand_path(const char *path, char *out, size_t cap);

#endif
