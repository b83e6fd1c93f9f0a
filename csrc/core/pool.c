/* pool.c - variable-size pools: boundary tags, split, coalesce, policies, stats.
 *
 * Arena: one address range reserved at creation (PROT_NONE, so it costs nothing) and
 * committed from low to high addresses in chunks as blocks reach it. Invariant: the
 * committed frontier lies at or beyond the header and index node of the last block, and
 * every other block lies wholly below it, so only carving the last block ever commits.
 * Free spans are given back to the kernel past the trim threshold (see trim_after_free).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "block.h"
#include "freeindex.h"
#include "pyalloc.h"

#define COMMIT_CHUNK ((size_t)256 << 10)      /* commit granularity */
#define DEFAULT_TRIM ((size_t)1 << 20)        /* default trim threshold */
#define PURGE_MIN ((size_t)64 << 10)          /* smallest span worth an madvise */
#define DIRTY_SHARE 2 /* dirty free memory beyond DIRTY_SHARE x used is purged on free... */
#define DIRTY_HULL_MIN ((size_t)256 << 10) /* ...a block at a time, from this size up */
#define FIRST_BLOCK (PA_ALIGN - PA_HEADER)    /* offset of the first block's header */
/* Largest request: leaves room for rounding and alignment slack without overflow. */
#define MAX_REQUEST (PA_POOL_MAX_CAPACITY)

struct pa_pool {
    pthread_mutex_t lock;
    unsigned flags;
    int policy;
    char *map;             /* the whole mapping: this struct's pages, then the arena */
    size_t map_size;
    char *base;            /* arena base: offsets count from here */
    char *end;             /* end of the last block (base + capacity - PA_HEADER) */
    char *tail;            /* the last block of the arena (the free top when it is free) */
    size_t capacity;
    size_t committed;      /* bytes from base that are read/write */
    size_t trim_threshold;
    uint64_t secret;       /* salt of the header check tags */
    uint64_t dirty;        /* bytes in the dirty hulls of the free blocks (the top aside) */
    uint64_t next_seq;
    pa_index index;
    /* statistics */
    uint64_t used, free_bytes, live_blocks, peak_used, peak_committed;
    uint64_t allocs, frees, reallocs, failed_allocs, invalid_frees, trims;
};

static const char *const policy_names[PA_NPOLICIES] = {"best", "worst", "first", "fifo"};

int pa_policy_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < PA_NPOLICIES; i++)
        if (strcmp(name, policy_names[i]) == 0)
            return i;
    return -1;
}

const char *pa_policy_name(int policy)
{
    return policy >= 0 && policy < PA_NPOLICIES ? policy_names[policy] : NULL;
}

/* ---------------------------------------------------------------------------------------- */

static inline void lock(pa_pool *p)
{
    if (!(p->flags & PA_NOLOCK))
        pthread_mutex_lock(&p->lock);
}

static inline void unlock(pa_pool *p)
{
    if (!(p->flags & PA_NOLOCK))
        pthread_mutex_unlock(&p->lock);
}

static inline pa_node *node_of(char *b) { return (pa_node *)(b + PA_HEADER); }
static inline char *block_of(pa_node *n) { return (char *)n - PA_HEADER; }

/* Total block size for a request of n bytes. n must be <= MAX_REQUEST. */
static inline uint64_t need_for(size_t n)
{
    uint64_t need = ((uint64_t)n + PA_HEADER + PA_ALIGN - 1) & ~(uint64_t)(PA_ALIGN - 1);
    return need < PA_MIN_BLOCK ? PA_MIN_BLOCK : need;
}

static inline void note_used(pa_pool *p)
{
    if (p->used > p->peak_used)
        p->peak_used = p->used;
}

/* Makes the arena read/write up to base + upto (rounded up to a chunk, clamped to the
 * arena). 0, or -1 if the kernel refused. */
static int commit_to(pa_pool *p, char *upto)
{
    size_t want = (size_t)(upto - p->base);
    if (want <= p->committed)
        return 0;
    want = (want + COMMIT_CHUNK - 1) & ~(COMMIT_CHUNK - 1);
    if (want > p->capacity)
        want = p->capacity;
    if (pa_os_commit(p->base + p->committed, want - p->committed) != 0)
        return -1;
    p->committed = want;
    if (want > p->peak_committed)
        p->peak_committed = want;
    return 0;
}

/* The free top. The last block of the arena, when free, is the wilderness: the untouched
 * rest of the reservation. It is kept out of the index and used only when no indexed block
 * fits (wilderness preservation), so every policy reuses the holes left by frees before it
 * grows the heap; worst fit and fifo would otherwise always pick it and never reuse a hole. */
static inline int top_free(const pa_pool *p) { return !(pa_hdr(p->tail) & PA_CINUSE); }

/* The dirty hull of a free block: the address range that may hold pages the kernel still
 * backs (written since they were last purged). Outside it, the block's pages, except the
 * first (header and node) and the last (footer), are purged or were never touched. It is
 * kept in the node in 64 KiB units from the arena base, rounded outwards. The free top's hull
 * is everything up to the committed frontier. */
#define HULL_SHIFT 16
static inline void hull_get(const pa_pool *p, char *b, char **lo, char **hi)
{
    if (b == p->tail) {
        *lo = b;
        *hi = p->base + p->committed;
        return;
    }
    const pa_node *n = node_of(b);
    *lo = p->base + ((uint64_t)n->dlo << HULL_SHIFT);
    *hi = p->base + ((uint64_t)n->dhi << HULL_SHIFT);
}

/* Units count from the arena base, so clipping and storing a hull again does not move it. */
static inline uint64_t hull_bytes(const char *b)
{
    const pa_node *n = node_of((char *)b);
    return (uint64_t)(n->dhi - n->dlo) << HULL_SHIFT;
}

/* After a purge of indexed free block b: its hull is empty. */
static inline void hull_clear(pa_pool *p, char *b)
{
    p->dirty -= hull_bytes(b);
    node_of(b)->dlo = node_of(b)->dhi = 0;
}

static inline void hull_set(const pa_pool *p, char *b, uint64_t size, char *lo, char *hi)
{
    pa_node *n = node_of(b);
    if (lo < b)
        lo = b;
    if (hi > b + size)
        hi = b + size;
    if (hi <= lo) {
        n->dlo = n->dhi = 0;
        return;
    }
    n->dlo = (uint32_t)((uint64_t)(lo - p->base) >> HULL_SHIFT);
    n->dhi = (uint32_t)(((uint64_t)(hi - p->base) + ((uint64_t)1 << HULL_SHIFT) - 1) >> HULL_SHIFT);
}

/* Inserts b (size bytes, not in the index) as a free block with the given seq and the dirty
 * range [dlo, dhi) (clipped to the block). The caller has set nothing; this writes header,
 * footer, and the next block's PINUSE bit. `pflag` is PA_PINUSE if the block before b is in
 * use (always, once coalescing is done). The last block becomes the free top, not indexed. */
static void make_free(pa_pool *p, char *b, uint64_t size, uint64_t pflag, uint64_t seq,
                      char *dlo, char *dhi)
{
    pa_set_hdr(b, size, pflag, p->secret);
    char *next = b + size;
    pa_node *n = node_of(b);
    n->seq = seq;
    hull_set(p, b, size, dlo, dhi);
    if (next == p->end) {
        p->tail = b;
    } else {
        pa_set_footer(b, size);
        pa_set_hdr(next, pa_bsize(next), (pa_hdr(next) & PA_CINUSE), p->secret);
        pa_index_insert(&p->index, n);
        p->dirty += hull_bytes(b);
    }
    p->free_bytes += size - PA_HEADER;
}

static pa_corruption_handler corruption_handler;

void pa_set_corruption_handler(pa_corruption_handler h) { corruption_handler = h; }

static void corrupted(const char *what, const void *where)
{
    if (corruption_handler)
        corruption_handler(what, where);
    errno = EFAULT;
}

/* The block the policy picks for `need` bytes: the first fit in the index, else the free top
 * if it is large enough. The block is checked before it is trusted: inside the arena, a free
 * block's header with the right tag, large enough. */
static inline pa_node *find_fit(pa_pool *p, uint64_t need)
{
    pa_node *n = pa_index_find(&p->index, need);
    if (n) {
        char *b = block_of(n);
        uint64_t h;
        if (b < p->base || b >= p->end || ((uintptr_t)n & (PA_ALIGN - 1)) ||
            ((h = pa_hdr(b)) & PA_CINUSE) || (h >> PA_TAG_SHIFT) != pa_tag(b, p->secret) ||
            (h & PA_SIZE_MASK) < need || (h & PA_SIZE_MASK) > (uint64_t)(p->end - b)) {
            corrupted("corrupted free index", n);
            return NULL;
        }
    } else if (p->index.corrupt) {
        p->index.corrupt = 0;
        corrupted("corrupted free index", pa_index_any(&p->index));
        return NULL;
    }
    if (!n && top_free(p) && pa_bsize(p->tail) >= need)
        n = node_of(p->tail);
    return n;
}

/* Commit target for carving `need` bytes out of block b of `size` bytes: the remainder's
 * header and node, or the whole block. */
static inline char *carve_reach(char *b, uint64_t size, uint64_t need)
{
    return size - need >= PA_MIN_BLOCK ? b + need + PA_MIN_BLOCK : b + size;
}

/* Hands out the low `need` bytes of block b (size bytes, already out of the index and out of
 * the free byte count); the rest, if big enough, becomes a free block keeping `seq` and the
 * part of the dirty range [dlo, dhi) that falls in it. */
static char *carve(pa_pool *p, char *b, uint64_t size, uint64_t need, uint64_t pflag,
                   uint64_t seq, char *dlo, char *dhi)
{
    uint64_t rest = size - need;
    if (rest >= PA_MIN_BLOCK) {
        pa_set_hdr(b, need, PA_CINUSE | pflag, p->secret);
        make_free(p, b + need, rest, PA_PINUSE, seq, dlo, dhi);
    } else {
        need = size;
        pa_set_hdr(b, size, PA_CINUSE | pflag, p->secret);
        char *next = b + size;
        if (next == p->end)
            p->tail = b;
        if (next < p->end)
            pa_set_hdr(next, pa_bsize(next), (pa_hdr(next) & PA_CINUSE) | PA_PINUSE, p->secret);
    }
    p->used += need - PA_HEADER;
    p->live_blocks++;
    note_used(p);
    return b + PA_HEADER;
}

/* Takes free block n out of the index (the free top is not in it) and the free byte count. */
static inline void unlink_free(pa_pool *p, pa_node *n)
{
    if (block_of(n) != p->tail) {
        pa_index_remove(&p->index, n);
        p->dirty -= hull_bytes(block_of(n));
    }
    p->free_bytes -= pa_bsize(block_of(n)) - PA_HEADER;
}

/* Purges the whole pages of [lo, hi) with MADV_DONTNEED if they add up to PURGE_MIN. */
static uint64_t purge_range(pa_pool *p, char *lo, char *hi)
{
    size_t page = pa_os_page_size();
    uintptr_t a = ((uintptr_t)lo + page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t z = (uintptr_t)hi & ~(uintptr_t)(page - 1);
    if (z <= a || z - a < PURGE_MIN || pa_os_purge((void *)a, z - a) != 0)
        return 0;
    p->trims++;
    return z - a;
}

/* Decommits the committed part of the last block b beyond `slack` bytes past its node. */
static uint64_t decommit_tail(pa_pool *p, char *b, size_t slack)
{
    char *frontier = p->base + p->committed;
    uintptr_t cut = ((uintptr_t)b + PA_MIN_BLOCK + slack + COMMIT_CHUNK - 1) &
                    ~(uintptr_t)(COMMIT_CHUNK - 1);
    if ((char *)cut >= frontier || pa_os_decommit((char *)cut, (size_t)(frontier - (char *)cut)))
        return 0;
    p->committed = (size_t)((char *)cut - p->base);
    p->trims++;
    return (uint64_t)(frontier - (char *)cut);
}

/* Gives memory back to the kernel after block b (size bytes) became free. Hysteresis keeps
 * alloc/free cycles from paying a page fault per page every time:
 *   - the last block (the arena's unused top) is decommitted only when more than twice the
 *     threshold is committed past its start, and then down to one threshold of slack;
 *   - inside the arena, a free block is purged when its dirty hull reaches the threshold,
 *     however many frees it took to get there, provided the pool's dirty free memory is at
 *     least its bytes in use (a big heap that recycles big blocks keeps them: purging each
 *     one made malloc-large fault 4x as often as tcmalloc). A block carved and freed again in
 *     a cycle leaves the hull where it was, so the cycle does not purge;
 *   - and when the dirty free memory of the whole pool passes both the threshold and twice
 *     the bytes in use (a heap that is mostly holes), every free purges its block's hull
 *     from DIRTY_HULL_MIN up: free memory stays a bounded part of the footprint whatever the
 *     policy does to the holes (worst fit chops every large hole). */
static void trim_after_free(pa_pool *p, char *b, uint64_t size)
{
    if (p->trim_threshold == 0)
        return;
    if (b + size == p->end) {
        if (size >= p->trim_threshold &&
            (size_t)(p->base + p->committed - (b + PA_MIN_BLOCK)) > 2 * p->trim_threshold)
            decommit_tail(p, b, p->trim_threshold);
        return;
    }
    char *lo, *hi;
    hull_get(p, b, &lo, &hi);
    uint64_t hb = hi > lo ? (uint64_t)(hi - lo) : 0;
    if ((hb >= p->trim_threshold && p->dirty >= p->used) ||
        (hb >= DIRTY_HULL_MIN && p->dirty > p->trim_threshold &&
         p->dirty > DIRTY_SHARE * p->used)) {
        purge_range(p, lo > b + PA_MIN_BLOCK ? lo : b + PA_MIN_BLOCK,
                    hi < b + size - PA_HEADER ? hi : b + size - PA_HEADER);
        hull_clear(p, b);
    }
}

size_t pa_pool_trim(pa_pool *p)
{
    uint64_t released = 0;
    lock(p);
    for (char *b = p->base + FIRST_BLOCK; b < p->end; b += pa_bsize(b)) {
        if (pa_hdr(b) & PA_CINUSE)
            continue;
        uint64_t size = pa_bsize(b);
        if (b + size == p->end) {
            released += decommit_tail(p, b, 0);
            break;
        }
        released += purge_range(p, b + PA_MIN_BLOCK, b + size - PA_HEADER);
        hull_clear(p, b);
    }
    unlock(p);
    return (size_t)released;
}

/* Frees block b (in use, size bytes): coalesces with free neighbours and indexes the result
 * under a new seq. Its dirty hull covers the freed block and the hulls of the neighbours. */
static void release_block(pa_pool *p, char *b, uint64_t size)
{
    char *dlo = b, *dhi = b + size, *lo, *hi;
    uint64_t h = pa_hdr(b);
    if (!(h & PA_PINUSE)) {
        uint64_t psize = pa_prev_footer(b);
        char *prev = b - psize;
        hull_get(p, prev, &lo, &hi);
        if (hi > lo)
            dlo = lo;
        unlink_free(p, node_of(prev));
        pa_set_hdr(b, 0, 0, p->secret); /* the stale header now says "freed": a second free */
        b = prev;                        /* of this pointer is seen as a double free */
        size += psize;
    }
    char *next = b + size;
    if (next < p->end && !(pa_hdr(next) & PA_CINUSE)) {
        uint64_t nsize = pa_bsize(next);
        hull_get(p, next, &lo, &hi);
        if (hi > lo)
            dhi = hi;
        unlink_free(p, node_of(next));
        pa_set_hdr(next, 0, 0, p->secret);
        size += nsize;
    }
    make_free(p, b, size, PA_PINUSE, p->next_seq++, dlo, dhi);
    trim_after_free(p, b, size);
}

/* Checks that p is a live block of this pool; returns its block or NULL. Lock held. */
static char *live_block(const pa_pool *p, const void *ptr)
{
    const char *q = ptr;
    if (q < p->base + PA_ALIGN || q >= p->end || ((uintptr_t)q & (PA_ALIGN - 1)))
        return NULL;
    char *b = (char *)q - PA_HEADER;
    if ((size_t)(b + PA_HEADER - p->base) > p->committed)
        return NULL;
    uint64_t h = pa_hdr(b);
    if (!(h & PA_CINUSE) || (h >> PA_TAG_SHIFT) != pa_tag(b, p->secret))
        return NULL;
    uint64_t size = h & PA_SIZE_MASK;
    if (size < PA_MIN_BLOCK || size > (uint64_t)(p->end - b))
        return NULL;
    char *next = b + size;
    if (next < p->end) {
        if ((size_t)(next + PA_HEADER - p->base) > p->committed)
            return NULL;
        uint64_t nh = pa_hdr(next);
        if (!(nh & PA_PINUSE) || (nh >> PA_TAG_SHIFT) != pa_tag(next, p->secret))
            return NULL;
    }
    return b;
}

/* ---------------------------------------------------------------------------------------- */

pa_pool *pa_pool_create(size_t capacity, int policy, unsigned flags)
{
    size_t page = pa_os_page_size();
    if (policy < 0 || policy >= PA_NPOLICIES || capacity == 0 ||
        capacity > PA_POOL_MAX_CAPACITY) {
        errno = EINVAL;
        return NULL;
    }
    capacity = (capacity + page - 1) & ~(page - 1);
    size_t head = (sizeof(pa_pool) + page - 1) & ~(page - 1);
    size_t map_size = head + capacity;
    char *map = pa_os_reserve(map_size, page);
    if (!map)
        return NULL;
    if (pa_os_commit(map, head) != 0) {
        pa_os_release(map, map_size);
        return NULL;
    }
    pa_pool *p = (pa_pool *)map;
    memset(p, 0, sizeof *p);
    if (!(flags & PA_NOLOCK))
        pthread_mutex_init(&p->lock, NULL);
    p->flags = flags;
    p->policy = policy;
    p->map = map;
    p->map_size = map_size;
    p->base = map + head;
    p->capacity = capacity;
    p->end = p->base + capacity - PA_HEADER;
    p->trim_threshold = DEFAULT_TRIM;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    p->secret = ((uint64_t)(uintptr_t)p * 0xD6E8FEB86659FD93ull) ^
                ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec;
    p->next_seq = 1;
    pa_index_init(&p->index, policy);
    if (flags & PA_HUGEPAGE)
        pa_os_hugepage(p->base, capacity);
    char *first = p->base + FIRST_BLOCK;
    if (commit_to(p, first + PA_MIN_BLOCK) != 0) {
        pa_os_release(map, map_size);
        return NULL;
    }
    p->tail = first;
    make_free(p, first, (uint64_t)(p->end - first), PA_PINUSE, 0, first, first);
    return p;
}

void pa_pool_destroy(pa_pool *p)
{
    if (!p)
        return;
    if (!(p->flags & PA_NOLOCK))
        pthread_mutex_destroy(&p->lock);
    pa_os_release(p->map, p->map_size);
}

/* Finds, unlinks and commits a free block of at least `search` bytes; NULL if none. */
static char *take_fit(pa_pool *p, uint64_t search, uint64_t reach_need)
{
    pa_node *n = find_fit(p, search);
    if (!n)
        return NULL;
    char *b = block_of(n);
    uint64_t size = pa_bsize(b);
    if (commit_to(p, carve_reach(b, size, reach_need > size ? size : reach_need)) != 0)
        return NULL;
    unlink_free(p, n);
    return b;
}

/* carve() for a free block b still in the index (or the free top), with a remainder
 * (rest >= PA_MIN_BLOCK): when the remainder sorts where b did (always under first fit and
 * fifo, often under worst fit, whose chosen block tends to stay the largest), its node takes
 * over b's node in the tree instead of a remove and an insert with their rebalancing. */
static char *carve_in_place(pa_pool *p, char *b, uint64_t size, uint64_t need)
{
    uint64_t rest = size - need, pflag = pa_hdr(b) & PA_PINUSE;
    char *r = b + need, *next = b + size, *lo, *hi;
    pa_node *old = node_of(b), *nw = node_of(r);
    hull_get(p, b, &lo, &hi);
    pa_set_hdr(r, rest, PA_PINUSE, p->secret);
    nw->seq = old->seq;
    hull_set(p, r, rest, lo, hi);
    if (next == p->end) {
        p->tail = r; /* the free top stays out of the index */
    } else {
        p->dirty += hull_bytes(r) - hull_bytes(b);
        pa_set_footer(r, rest);
        if (pa_index_replace(&p->index, old, nw) != 0) {
            pa_index_remove(&p->index, old); /* reads old's key: its header is intact */
            pa_index_insert(&p->index, nw);
        }
    }
    pa_set_hdr(b, need, PA_CINUSE | pflag, p->secret);
    p->free_bytes -= need;
    p->used += need - PA_HEADER;
    p->live_blocks++;
    note_used(p);
    return b + PA_HEADER;
}

static void *do_alloc(pa_pool *p, size_t n, size_t *usable)
{
    if (n > MAX_REQUEST) {
        errno = ENOMEM;
        lock(p);
        p->failed_allocs++;
        unlock(p);
        return NULL;
    }
    uint64_t need = need_for(n ? n : 1);
    lock(p);
    pa_node *nd = find_fit(p, need);
    char *b = nd ? block_of(nd) : NULL;
    uint64_t size = b ? pa_bsize(b) : 0;
    if (!b || commit_to(p, carve_reach(b, size, need)) != 0) {
        p->failed_allocs++;
        unlock(p);
        errno = ENOMEM;
        return NULL;
    }
    void *r;
    if (size - need >= PA_MIN_BLOCK) {
        r = carve_in_place(p, b, size, need);
    } else {
        unlink_free(p, nd);
        r = carve(p, b, size, need, pa_hdr(b) & PA_PINUSE, nd->seq, b, b);
    }
    p->allocs++;
    if (usable)
        *usable = pa_bsize((char *)r - PA_HEADER) - PA_HEADER;
    unlock(p);
    return r;
}

static void *do_alloc_aligned(pa_pool *p, size_t n, size_t align, size_t *usable)
{
    if (align == 0 || (align & (align - 1)) || align > PA_MAX_ALIGN) {
        errno = EINVAL;
        return NULL;
    }
    if (align <= PA_ALIGN)
        return do_alloc(p, n, usable);
    if (n > MAX_REQUEST) {
        errno = ENOMEM;
        lock(p);
        p->failed_allocs++;
        unlock(p);
        return NULL;
    }
    uint64_t need = need_for(n ? n : 1);
    uint64_t search = need + align + PA_MIN_BLOCK - PA_ALIGN;
    lock(p);
    pa_node *nd = find_fit(p, search);
    char *b = nd ? block_of(nd) : NULL;
    uint64_t size = b ? pa_bsize(b) : 0;
    uintptr_t pay = (uintptr_t)b + PA_HEADER;
    uintptr_t at = (pay + align - 1) & ~(uintptr_t)(align - 1);
    while (at != pay && at - pay < PA_MIN_BLOCK)
        at += align;
    uint64_t gap = at - pay;
    if (!b || commit_to(p, carve_reach(b + gap, size - gap, need)) != 0) {
        p->failed_allocs++;
        unlock(p);
        errno = ENOMEM;
        return NULL;
    }
    uint64_t seq = nd->seq;
    uint64_t pflag = pa_hdr(b) & PA_PINUSE;
    char *dlo, *dhi;
    hull_get(p, b, &dlo, &dhi);
    unlink_free(p, nd);
    if (gap) {
        /* The leading gap stays free with the chosen block's seq. The allocated block's
         * header must say "previous free" before make_free clears it... make_free writes
         * the next header from the current one, so give b+gap a provisional header. */
        char *ab = b + gap;
        pa_set_hdr(ab, size - gap, PA_CINUSE, p->secret);
        make_free(p, b, gap, pflag, seq, dlo, dhi);
        b = ab;
        size -= gap;
        pflag = 0;
    }
    void *r = carve(p, b, size, need, pflag, seq, dlo, dhi);
    p->allocs++;
    if (usable)
        *usable = pa_bsize((char *)r - PA_HEADER) - PA_HEADER;
    unlock(p);
    return r;
}

int pa_pool_alloc_batch(pa_pool *p, const uint64_t *sizes, size_t n, uint64_t *offsets)
{
    if (n == 0)
        return 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (sizes[i] > MAX_REQUEST || total > MAX_REQUEST) {
            total = UINT64_MAX;
            break;
        }
        total += need_for(sizes[i] ? sizes[i] : 1);
    }
    lock(p);
    pa_node *nd = total <= MAX_REQUEST ? find_fit(p, total) : NULL;
    char *b = nd ? block_of(nd) : NULL;
    uint64_t size = b ? pa_bsize(b) : 0;
    if (!b || commit_to(p, carve_reach(b, size, total)) != 0) {
        p->failed_allocs++;
        unlock(p);
        errno = ENOMEM;
        return -1;
    }
    uint64_t seq = nd->seq, pflag = pa_hdr(b) & PA_PINUSE;
    char *dlo, *dhi;
    hull_get(p, b, &dlo, &dhi);
    unlink_free(p, nd);
    /* All but the last block: a header each (the block before is always in use). */
    char *c = b;
    for (size_t i = 0; i + 1 < n; i++) {
        uint64_t need = need_for(sizes[i] ? sizes[i] : 1);
        pa_set_hdr(c, need, PA_CINUSE | (i == 0 ? pflag : PA_PINUSE), p->secret);
        offsets[i] = (uint64_t)(c + PA_HEADER - p->base);
        p->used += need - PA_HEADER;
        p->live_blocks++;
        c += need;
    }
    /* The last one as a single allocation would be: with the remainder made free. */
    char *r = carve(p, c, size - (uint64_t)(c - b), need_for(sizes[n - 1] ? sizes[n - 1] : 1),
                    n == 1 ? pflag : PA_PINUSE, seq, dlo, dhi);
    offsets[n - 1] = (uint64_t)(r - p->base);
    p->allocs += n;
    unlock(p);
    return 0;
}

size_t pa_pool_reset(pa_pool *p)
{
    lock(p);
    size_t live = (size_t)p->live_blocks;
    pa_index_init(&p->index, p->policy);
    p->used = 0;
    p->live_blocks = 0;
    p->free_bytes = 0;
    p->dirty = 0;
    p->frees += live;
    /* New check tags: the headers of the blocks that were live stay in memory, and must not
     * pass for live blocks (a stale pointer freed after the reset is refused, not trusted). */
    p->secret = (p->secret ^ 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull + 0x94D049BB133111EBull;
    char *first = p->base + FIRST_BLOCK;
    p->tail = first;
    make_free(p, first, (uint64_t)(p->end - first), PA_PINUSE, p->next_seq++, first, first);
    trim_after_free(p, first, (uint64_t)(p->end - first));
    unlock(p);
    return live;
}

int pa_pool_free(pa_pool *p, void *ptr) { return pa_pool_free_ex(p, ptr, NULL); }

int pa_pool_free_ex(pa_pool *p, void *ptr, size_t *usable)
{
    if (!ptr)
        return 0;
    lock(p);
    char *b = live_block(p, ptr);
    if (!b) {
        p->invalid_frees++;
        unlock(p);
        errno = EINVAL;
        return -1;
    }
    uint64_t size = pa_bsize(b);
    if (usable)
        *usable = size - PA_HEADER;
    p->used -= size - PA_HEADER;
    p->live_blocks--;
    p->frees++;
    release_block(p, b, size);
    unlock(p);
    return 0;
}

static void *do_realloc(pa_pool *p, void *ptr, size_t n, size_t *usable)
{
    if (!ptr)
        return do_alloc(p, n, usable);
    if (n > MAX_REQUEST) {
        lock(p);
        p->failed_allocs++;
        unlock(p);
        errno = ENOMEM;
        return NULL;
    }
    uint64_t need = need_for(n ? n : 1);
    lock(p);
    char *b = live_block(p, ptr);
    if (!b) {
        p->invalid_frees++;
        unlock(p);
        errno = EINVAL;
        return NULL;
    }
    uint64_t size = pa_bsize(b);
    uint64_t pflag = pa_hdr(b) & PA_PINUSE;
    if (need <= size) {
        /* Shrink in place; a tail big enough to be a block is freed (new seq). */
        if (size - need >= PA_MIN_BLOCK) {
            pa_set_hdr(b, need, PA_CINUSE | pflag, p->secret);
            char *tail = b + need;
            pa_set_hdr(tail, size - need, PA_CINUSE | PA_PINUSE, p->secret);
            p->used -= size - need;
            release_block(p, tail, size - need);
        }
        p->reallocs++;
        if (usable)
            *usable = pa_bsize(b) - PA_HEADER;
        unlock(p);
        return ptr;
    }
    char *next = b + size;
    if (next < p->end && !(pa_hdr(next) & PA_CINUSE) && size + pa_bsize(next) >= need) {
        /* Grow in place into the free block after it; its remainder keeps its seq. */
        uint64_t nsize = pa_bsize(next);
        uint64_t total = size + nsize;
        if (commit_to(p, carve_reach(b, total, need)) == 0) {
            pa_node *nd = node_of(next);
            uint64_t seq = nd->seq;
            char *dlo, *dhi;
            hull_get(p, next, &dlo, &dhi);
            unlink_free(p, nd);
            *(uint64_t *)next = 0; /* now inside the grown block: no header */
            p->used -= size - PA_HEADER;
            p->live_blocks--;
            carve(p, b, total, need, pflag, seq, dlo, dhi);
            p->reallocs++;
            if (usable)
                *usable = pa_bsize(b) - PA_HEADER;
            unlock(p);
            return ptr;
        }
    }
    /* Move: a new block by the policy, copy, free the old one. */
    char *nb = take_fit(p, need, need);
    if (!nb) {
        p->failed_allocs++;
        unlock(p);
        errno = ENOMEM;
        return NULL;
    }
    char *dlo, *dhi;
    hull_get(p, nb, &dlo, &dhi);
    void *q = carve(p, nb, pa_bsize(nb), need, pa_hdr(nb) & PA_PINUSE, node_of(nb)->seq, dlo,
                    dhi);
    memcpy(q, ptr, size - PA_HEADER);
    p->used -= size - PA_HEADER;
    p->live_blocks--;
    release_block(p, b, size);
    p->allocs++;
    p->frees++;
    p->reallocs++;
    if (usable)
        *usable = pa_bsize((char *)q - PA_HEADER) - PA_HEADER;
    unlock(p);
    return q;
}

void *pa_pool_alloc(pa_pool *p, size_t n) { return do_alloc(p, n, NULL); }

void *pa_pool_alloc_aligned(pa_pool *p, size_t n, size_t align)
{
    return do_alloc_aligned(p, n, align, NULL);
}

void *pa_pool_alloc_ex(pa_pool *p, size_t n, size_t align, size_t *usable)
{
    return align ? do_alloc_aligned(p, n, align, usable) : do_alloc(p, n, usable);
}

void *pa_pool_realloc(pa_pool *p, void *ptr, size_t n) { return do_realloc(p, ptr, n, NULL); }

void *pa_pool_realloc_ex(pa_pool *p, void *ptr, size_t n, size_t *usable)
{
    return do_realloc(p, ptr, n, usable);
}

int pa_pool_ptr_state(pa_pool *p, const void *ptr)
{
    lock(p);
    int r = PA_PTR_NONE;
    const char *q = ptr;
    if (live_block(p, ptr)) {
        r = PA_PTR_LIVE;
    } else if (q >= p->base + PA_ALIGN && q < p->end && !((uintptr_t)q & (PA_ALIGN - 1)) &&
               (size_t)(q - p->base) <= p->committed) {
        char *b = (char *)q - PA_HEADER;
        uint64_t h = pa_hdr(b);
        if (!(h & PA_CINUSE) && (h >> PA_TAG_SHIFT) == pa_tag(b, p->secret))
            r = PA_PTR_FREE;
    }
    unlock(p);
    return r;
}

size_t pa_pool_usable_size(pa_pool *p, const void *ptr)
{
    lock(p);
    char *b = live_block(p, ptr);
    size_t r = b ? pa_bsize(b) - PA_HEADER : 0;
    unlock(p);
    return r;
}

int pa_pool_is_live(pa_pool *p, const void *ptr)
{
    lock(p);
    int r = live_block(p, ptr) != NULL;
    unlock(p);
    return r;
}

int pa_pool_contains(const pa_pool *p, const void *ptr)
{
    const char *q = ptr;
    return q >= p->base && q < p->base + p->capacity;
}

void *pa_pool_base(const pa_pool *p) { return p->base; }
size_t pa_pool_committed(const pa_pool *p) { return p->committed; }
size_t pa_pool_capacity(const pa_pool *p) { return p->capacity; }
int pa_pool_policy(const pa_pool *p) { return p->policy; }

void pa_pool_set_trim_threshold(pa_pool *p, size_t bytes)
{
    lock(p);
    p->trim_threshold = bytes;
    unlock(p);
}

void pa_pool_stats(pa_pool *p, pa_stats *o)
{
    lock(p);
    memset(o, 0, sizeof *o);
    o->capacity = p->capacity;
    o->used = p->used;
    o->free = p->free_bytes;
    o->overhead = p->capacity - p->used - p->free_bytes;
    uint64_t mx = pa_index_max(&p->index);
    if (top_free(p) && pa_bsize(p->tail) > mx)
        mx = pa_bsize(p->tail);
    o->largest_free = mx ? mx - PA_HEADER : 0;
    o->free_blocks = p->index.count + (size_t)top_free(p);
    o->live_blocks = p->live_blocks;
    o->peak_used = p->peak_used;
    o->committed = p->committed;
    o->peak_committed = p->peak_committed;
    o->allocs = p->allocs;
    o->frees = p->frees;
    o->reallocs = p->reallocs;
    o->failed_allocs = p->failed_allocs;
    o->invalid_frees = p->invalid_frees;
    o->trims = p->trims;
    o->fragmentation = o->free ? 1.0 - (double)o->largest_free / (double)o->free : 0.0;
    o->top = (pa_hdr(p->tail) & PA_CINUSE) ? p->capacity : (uint64_t)(p->tail - p->base);
    unlock(p);
}

/* Walks every block in address order, collecting free (want_free) or live ones. */
static size_t walk(pa_pool *p, int want_free, pa_block_info *out, size_t max)
{
    size_t count = 0;
    for (char *b = p->base + FIRST_BLOCK; b < p->end; b += pa_bsize(b)) {
        int is_free = !(pa_hdr(b) & PA_CINUSE);
        if (is_free != want_free)
            continue;
        if (count < max) {
            out[count].offset = (uint64_t)(b + PA_HEADER - p->base);
            out[count].size = pa_bsize(b) - PA_HEADER;
            out[count].seq = is_free ? node_of(b)->seq : 0;
        }
        count++;
    }
    return count;
}

size_t pa_pool_free_blocks(pa_pool *p, pa_block_info *out, size_t max)
{
    lock(p);
    size_t r = walk(p, 1, out, max);
    unlock(p);
    return r;
}

size_t pa_pool_live_blocks(pa_pool *p, pa_block_info *out, size_t max)
{
    lock(p);
    size_t r = walk(p, 0, out, max);
    unlock(p);
    return r;
}

enum {
    CHK_OK,
    CHK_TAG,
    CHK_SIZE,
    CHK_PINUSE,
    CHK_ADJACENT_FREE,
    CHK_FOOTER,
    CHK_END,
    CHK_COUNTS,
    CHK_BYTES,
    CHK_COMMIT,
    CHK_INDEX, /* + index code */
};

static const char *const check_messages[] = {
    "consistent",
    "a block header has a wrong check tag",
    "a block has an impossible size",
    "a PINUSE bit disagrees with the previous block",
    "two free blocks are adjacent (coalescing incomplete)",
    "a free block's footer disagrees with its header",
    "the blocks do not end exactly at the arena end, or the tail pointer is stale",
    "free/live block counts disagree with the index or statistics",
    "byte accounting: used + free + overhead != capacity, or the dirty total is off",
    "a block lies beyond the committed frontier",
    "free index: keys out of order",
    "free index: wrong height",
    "free index: unbalanced",
    "free index: wrong subtree max",
    "free index: node count differs",
    "free index: a block in the wrong size bin or tree",
    "free index: the size-bin bitmap disagrees with the bins",
};

const char *pa_check_message(int code)
{
    if (code < 0 || code >= (int)(sizeof check_messages / sizeof *check_messages))
        return "unknown check code";
    return check_messages[code];
}

int pa_pool_check(pa_pool *p)
{
    lock(p);
    int rc = CHK_OK;
    uint64_t nfree = 0, nlive = 0, free_bytes = 0, used = 0, blocks_total = 0, dirty = 0;
    int prev_free = 0;
    char *b = p->base + FIRST_BLOCK;
    while (b < p->end) {
        uint64_t h = pa_hdr(b);
        uint64_t size = h & PA_SIZE_MASK;
        if ((h >> PA_TAG_SHIFT) != pa_tag(b, p->secret)) {
            rc = CHK_TAG;
            break;
        }
        if (size < PA_MIN_BLOCK || size > (uint64_t)(p->end - b)) {
            rc = CHK_SIZE;
            break;
        }
        if (!!(h & PA_PINUSE) == prev_free) {
            rc = CHK_PINUSE;
            break;
        }
        int is_free = !(h & PA_CINUSE);
        if (is_free) {
            if (prev_free) {
                rc = CHK_ADJACENT_FREE;
                break;
            }
            if (b + size < p->end && pa_prev_footer(b + size) != size) {
                rc = CHK_FOOTER;
                break;
            }
            nfree++;
            free_bytes += size - PA_HEADER;
            if (b != p->tail)
                dirty += hull_bytes(b);
        } else {
            nlive++;
            used += size - PA_HEADER;
        }
        char *reach = b + size < p->end ? b + size : b + PA_MIN_BLOCK;
        if ((size_t)(reach - p->base) > p->committed) {
            rc = CHK_COMMIT;
            break;
        }
        blocks_total += size;
        prev_free = is_free;
        b += size;
    }
    if (rc == CHK_OK && (b != p->end || b - pa_bsize(p->tail) != p->tail))
        rc = CHK_END;
    if (rc == CHK_OK && (nfree != p->index.count + (size_t)top_free(p) || nlive != p->live_blocks))
        rc = CHK_COUNTS;
    if (rc == CHK_OK && (free_bytes != p->free_bytes || used != p->used ||
                         blocks_total + FIRST_BLOCK + PA_HEADER != p->capacity ||
                         dirty != p->dirty))
        rc = CHK_BYTES;
    if (rc == CHK_OK) {
        int ic = pa_index_check(&p->index);
        if (ic)
            rc = CHK_INDEX + ic - 1;
    }
    unlock(p);
    return rc;
}
