/* replay.c - replays a PYALLOC_TRACE file (format in trace.h) in one pa_pool under a policy.
 *
 * Every allocation of the trace becomes an allocation of its requested size in a fresh pool
 * (capacity reserved up front, committed as used), every free and realloc its counterpart,
 * in file order. Measured:
 *   peak_live   the highest sum of requested sizes of the trace's live blocks
 *   peak_heap   the highest end (payload offset + usable size) of any block the pool handed
 *               out: the heap size a brk-style allocator would have needed, Johnstone and
 *               Wilson's measure; peak_heap / peak_live is their fragmentation ratio
 *   time        wall time of the replay loop (parsing, hashing and the pool's work)
 * Linked into the cffi module pyalloc._native, not into libpyalloc.so.
 */
#define _GNU_SOURCE
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pyalloc.h"

#define REPLAY_CAPACITY ((size_t)1 << 40)

typedef struct {
    uint64_t key;   /* address in the trace; 0 empty, 1 deleted */
    void *ptr;      /* block in the replay pool */
    uint64_t size;  /* requested size */
} slot;

typedef struct {
    slot *s;
    size_t cap, used, live;
} map;

static inline size_t hpos(uint64_t k, size_t cap)
{
    return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static int map_grow(map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 4096;
    if (m->live * 4 < m->cap)
        ncap = m->cap;
    slot *ns = calloc(ncap, sizeof(slot));
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->s[i].key > 1) {
            size_t j = hpos(m->s[i].key, ncap);
            while (ns[j].key)
                j = (j + 1) & (ncap - 1);
            ns[j] = m->s[i];
        }
    free(m->s);
    m->s = ns;
    m->cap = ncap;
    m->used = m->live;
    return 0;
}

static slot *map_find(map *m, uint64_t k)
{
    if (!m->cap || k <= 1)
        return NULL;
    size_t j = hpos(k, m->cap);
    while (m->s[j].key) {
        if (m->s[j].key == k)
            return &m->s[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

static int map_put(map *m, uint64_t k, void *ptr, uint64_t size)
{
    if (k <= 1)
        return 0;
    slot *e = map_find(m, k);
    if (e) { /* the trace says this address is live again: replace (should not happen) */
        e->ptr = ptr;
        e->size = size;
        return 1;
    }
    if ((m->used + 1) * 4 > m->cap * 3 && map_grow(m) != 0)
        return -1;
    size_t j = hpos(k, m->cap);
    while (m->s[j].key > 1)
        j = (j + 1) & (m->cap - 1);
    if (!m->s[j].key)
        m->used++;
    m->s[j].key = k;
    m->s[j].ptr = ptr;
    m->s[j].size = size;
    m->live++;
    return 0;
}

static void map_del(map *m, slot *e)
{
    e->key = 1;
    e->ptr = NULL;
    m->live--;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Records a block the replay just obtained for trace address `addr` (n bytes requested):
 * the address map, live bytes and their peak, and the heap's peak extent. -1 on ENOMEM. */
static int track(map *m, pa_pool *pool, char *base, uint64_t addr, void *q, uint64_t n,
                 uint64_t *live, uint64_t *peak_live, uint64_t *peak_heap)
{
    if (map_put(m, addr, q, n) < 0)
        return -1;
    *live += n;
    if (*live > *peak_live)
        *peak_live = *live;
    uint64_t top = (uint64_t)((char *)q - base) + pa_pool_usable_size(pool, q);
    if (top > *peak_heap)
        *peak_heap = top;
    return 0;
}

static void sample(pa_pool *pool, uint64_t ops, uint64_t live, pa_replay_sample *samples,
                   size_t max, size_t *n)
{
    if (*n >= max)
        return;
    pa_stats st;
    pa_pool_stats(pool, &st);
    pa_replay_sample *x = &samples[(*n)++];
    x->ops = ops;
    x->live = live;
    x->top = st.top;
    x->used = st.used;
    /* the free top is one free block that starts at `top` and is not part of the heap */
    x->free = st.top < st.capacity ? st.free - (st.capacity - st.top - 2 * PA_HEADER) : st.free;
}

int pa_trace_replay(const char *path, int policy, pa_replay_result *out)
{
    return pa_trace_replay_series(path, policy, 0, NULL, 0, NULL, out);
}

int pa_trace_replay_series(const char *path, int policy, uint64_t every,
                           pa_replay_sample *samples, size_t max, size_t *nsamples,
                           pa_replay_result *out)
{
    size_t nsamp = 0;
    if (nsamples)
        *nsamples = 0;
    memset(out, 0, sizeof *out);
    out->policy = policy;
    if (!path || policy < 0 || policy >= PA_NPOLICIES) {
        out->error = EINVAL;
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        out->error = errno;
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < PA_TRACE_HEADER) {
        out->error = st.st_size < PA_TRACE_HEADER ? EINVAL : errno;
        close(fd);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    unsigned char *data = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED) {
        out->error = errno;
        return -1;
    }
    uint32_t version;
    memcpy(&version, data + 8, 4);
    if (memcmp(data, PA_TRACE_MAGIC, 8) != 0 || version != PA_TRACE_VERSION) {
        munmap(data, len);
        out->error = EINVAL;
        return -1;
    }
    pa_pool *pool = NULL;
    for (size_t cap = REPLAY_CAPACITY; !pool && cap >= ((size_t)1 << 28); cap /= 4)
        pool = pa_pool_create(cap, policy, PA_NOLOCK); /* smaller under valgrind, ulimit -v */
    if (!pool) {
        munmap(data, len);
        out->error = errno ? errno : ENOMEM;
        return -1;
    }
    char *base = pa_pool_base(pool);
    map m = {0};
    uint64_t prev = 0, live = 0, peak_live = 0, peak_heap = 0, max_tid = 0;
    const unsigned char *p = data + PA_TRACE_HEADER, *end = data + len;
    int err = 0;
    double t0 = now();
    uint64_t ops_seen = 0;
    while (p < end) {
        if (every && samples) {
            uint64_t ops = out->allocs + out->frees + out->reallocs;
            if (ops != ops_seen && ops % every == 0)
                sample(pool, ops, live, samples, max, &nsamp);
            ops_seen = ops;
        }
        unsigned op = *p++;
        unsigned failed = op & PA_TR_FAILED;
        op &= ~(unsigned)PA_TR_FAILED;
        uint64_t a = 0, n = 0, addr = 0, old = 0, tid;
        out->records++;
        switch (op) {
        case PA_TR_THREAD:
            if (!(p = pa_tr_get_uv(p, end, &tid)))
                goto bad;
            if (tid > max_tid)
                max_tid = tid;
            break;
        case PA_TR_MALLOC:
        case PA_TR_CALLOC:
        case PA_TR_MEMALIGN: {
            if (op == PA_TR_MEMALIGN && !(p = pa_tr_get_uv(p, end, &a)))
                goto bad;
            if (!(p = pa_tr_get_uv(p, end, &n)))
                goto bad;
            if (failed)
                break;
            if (!(p = pa_tr_get_ptr(p, end, &prev, &addr)))
                goto bad;
            void *q = op == PA_TR_MEMALIGN && a > PA_ALIGN
                          ? pa_pool_alloc_aligned(pool, (size_t)n,
                                                  a > PA_MAX_ALIGN ? PA_MAX_ALIGN : (size_t)a)
                          : pa_pool_alloc(pool, (size_t)n);
            out->allocs++;
            if (!q) {
                out->failed++;
                break;
            }
            if (track(&m, pool, base, addr, q, n, &live, &peak_live, &peak_heap) < 0) {
                err = ENOMEM;
                goto done;
            }
            break;
        }
        case PA_TR_FREE: {
            if (!(p = pa_tr_get_ptr(p, end, &prev, &addr)))
                goto bad;
            slot *e = map_find(&m, addr);
            if (!e) {
                out->unmatched++;
                break;
            }
            pa_pool_free(pool, e->ptr);
            live -= e->size;
            map_del(&m, e);
            out->frees++;
            break;
        }
        case PA_TR_REALLOC: {
            if (!(p = pa_tr_get_ptr(p, end, &prev, &old)) || !(p = pa_tr_get_uv(p, end, &n)))
                goto bad;
            if (failed)
                break;
            if (!(p = pa_tr_get_ptr(p, end, &prev, &addr)))
                goto bad;
            out->reallocs++;
            slot *e = map_find(&m, old);
            void *q;
            if (!e) {
                out->unmatched++;
                q = pa_pool_alloc(pool, (size_t)n);
            } else {
                q = pa_pool_realloc(pool, e->ptr, (size_t)n);
                if (!q) {
                    out->failed++;
                    break;
                }
                live -= e->size;
                map_del(&m, e);
            }
            if (!q) {
                out->failed++;
                break;
            }
            if (track(&m, pool, base, addr, q, n, &live, &peak_live, &peak_heap) < 0) {
                err = ENOMEM;
                goto done;
            }
            break;
        }
        default:
            goto bad;
        }
    }
    goto done;
bad:
    err = EINVAL;
done:
    out->seconds = now() - t0;
    {
        pa_stats s;
        pa_pool_stats(pool, &s);
        out->peak_committed = s.peak_committed;
    }
    out->threads = max_tid;
    out->peak_live = peak_live;
    out->peak_heap = peak_heap;
    out->final_live = live;
    out->ratio = peak_live ? (double)peak_heap / (double)peak_live : 0.0;
    out->error = err;
    if (nsamples)
        *nsamples = nsamp;
    free(m.s);
    pa_pool_destroy(pool);
    munmap(data, len);
    return err ? -1 : 0;
}
