/* small.c - size classes, spans and per-thread caches of libpyalloc.so.
 *
 * A span is 16 KiB of one size class, owned by one arena. All spans of all arenas live in a
 * single reserved region (arena k owns the k-th slice), and their metadata lives in a side
 * table indexed by (address - region base) >> PA_SPAN_SHIFT, so the owner and class of a
 * small block come from its address alone, user memory never holds allocator metadata
 * except the two link words of a free block, and an empty span's pages can be given back
 * whole. 16 KiB rather than 64: every class in use holds one partly used span per arena,
 * which is most of the memory of a small program (docs/preload.md).
 *
 * Blocks reach a thread in batches (one lock round trip per batch) and go back to their
 * owning arena in batches when a cache bin overflows or the thread exits, whichever thread
 * frees them. A free block holds its next pointer in word 0, encoded (pa_enc), and g.key in
 * word 1; word 1 is cleared when the block is handed out, so a free of a block whose word 1
 * is g.key is a probable double free and gets checked (same scheme as glibc's tcache), and a
 * decoded link must point at a block that carries the key (pa_small_link_ok) or the heap is
 * corrupt and the program stops.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#ifndef DIRTY_MAX
#define DIRTY_MAX 16 /* empty spans per arena kept mapped for reuse (256 KiB) */
#endif

/* ---------------------------------------------------------------------------------------- */

void pa_small_setup(void)
{
    /* Classes: 16-byte steps to 128, then four per doubling. */
    int n = 0;
    for (uint32_t sz = 16; sz <= 128 && sz <= PA_SMALL_MAX; sz += 16)
        pa_g.cls_size[n++] = sz;
    for (uint32_t base = 128; base < PA_SMALL_MAX && n < PA_NCLASSES_MAX; base *= 2)
        for (int k = 1; k <= 4 && n < PA_NCLASSES_MAX; k++) {
            uint32_t sz = base + k * (base / 4);
            if (sz > PA_SMALL_MAX)
                break;
            pa_g.cls_size[n++] = sz;
        }
    pa_g.nclasses = n;
    int c = 0;
    for (size_t i = 0; i <= PA_SMALL_MAX / 16; i++) {
        size_t sz = i * 16;
        while (pa_g.cls_size[c] < sz)
            c++;
        pa_g.lut[i] = (uint8_t)c;
    }
    for (int i = 0; i < n; i++) {
        uint32_t sz = pa_g.cls_size[i];
        pa_g.cls_magic[i] = (uint32_t)((((uint64_t)1 << 32) + sz - 1) / sz);
        uint32_t batch = 8192 / sz;
        if (batch < 4)
            batch = 4;
        if (batch > 32)
            batch = 32;
        pa_g.cls_batch[i] = batch;
        pa_g.cls_max[i] = 2 * batch;
        pa_g.cls_cap[i] = PA_BIN_BYTES / sz > 2 * batch ? PA_BIN_BYTES / sz : 2 * batch;
    }
    for (int a = 0; a < pa_g.narenas; a++) {
        for (int i = 0; i < PA_NCLASSES_MAX; i++)
            pthread_mutex_init(&pa_g.arenas[a].cls[i].lock, NULL);
        pthread_mutex_init(&pa_g.arenas[a].span_lock, NULL);
    }
    if (!pa_g.tcache)
        return;
    /* Reserve the region: inaccessible (PROT_NONE, MAP_NORESERVE), made read/write in 256 KiB
     * steps as spans are first taken, with a guard below it, so that a wild write past the
     * spans in use (or a long overflow of a small block) faults instead of landing in memory
     * nobody owns. If the kernel refuses, try smaller slices; without a region small
     * requests use the pools. */
    for (size_t slice = PA_REGION_SLICE; slice >= ((size_t)64 << 20); slice /= 4) {
        size_t size = slice * (size_t)pa_g.narenas;
        size_t nspans = size >> PA_SPAN_SHIFT;
        size_t meta = (nspans * sizeof(pa_span) + 4095) & ~(size_t)4095;
        size_t total = size + PA_SPAN_SIZE + PA_REGION_GUARD;
        void *region = mmap(NULL, total, PROT_NONE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (region == MAP_FAILED)
            continue;
        void *spans = mmap(NULL, meta, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (spans == MAP_FAILED) {
            munmap(region, total);
            continue;
        }
        uintptr_t base = ((uintptr_t)region + PA_REGION_GUARD + PA_SPAN_SIZE - 1) &
                         ~(uintptr_t)(PA_SPAN_SIZE - 1);
        pa_g.spans = spans;
        for (int a = 0; a < pa_g.narenas; a++) {
            pa_arena *ar = &pa_g.arenas[a];
            ar->region_lo = ar->region_bump = ar->region_commit = base + (size_t)a * slice;
            ar->region_hi = ar->region_lo + slice;
        }
        pa_g.small_base = base;
        pa_g.small_size = size;
        return;
    }
}

/* ---------------------------------------------------------------------------------------- */

static inline char *span_base(const pa_span *s)
{
    return (char *)(pa_g.small_base + ((size_t)(s - pa_g.spans) << PA_SPAN_SHIFT));
}

static inline void list_add_tail(pa_aclass *ac, pa_span *s)
{
    pa_span *h = ac->partial;
    if (!h) {
        s->next = s->prev = s;
        ac->partial = s;
    } else {
        s->prev = h->prev;
        s->next = h;
        h->prev->next = s;
        h->prev = s;
    }
    s->listed = 1;
}

static inline void list_remove(pa_aclass *ac, pa_span *s)
{
    if (s->next == s) {
        ac->partial = NULL;
    } else {
        s->prev->next = s->next;
        s->next->prev = s->prev;
        if (ac->partial == s)
            ac->partial = s->next;
    }
    s->next = s->prev = NULL;
    s->listed = 0;
}

/* A fresh span of class c for arena a, or NULL. Class lock held. */
static pa_span *span_new(pa_arena *ar, int a, unsigned c)
{
    pa_span *s = NULL;
    pthread_mutex_lock(&ar->span_lock);
    if (ar->dirty) {
        s = ar->dirty;
        ar->dirty = s->next;
        ar->ndirty--;
    } else if (ar->clean) {
        s = ar->clean;
        ar->clean = s->next;
        pa_stats_mapped((int64_t)PA_SPAN_SIZE);
    } else if (ar->region_bump + PA_SPAN_SIZE <= ar->region_hi) {
        if (ar->region_bump + PA_SPAN_SIZE > ar->region_commit) {
            size_t len = ar->region_hi - ar->region_commit < PA_REGION_CHUNK
                             ? ar->region_hi - ar->region_commit
                             : PA_REGION_CHUNK;
            int e = errno;
            int rc = mprotect((void *)ar->region_commit, len, PROT_READ | PROT_WRITE);
            errno = e;
            if (rc != 0) {
                pthread_mutex_unlock(&ar->span_lock);
                return NULL;
            }
            ar->region_commit += len;
        }
        s = pa_span_of((void *)ar->region_bump);
        ar->region_bump += PA_SPAN_SIZE;
        pa_stats_mapped((int64_t)PA_SPAN_SIZE);
    }
    pthread_mutex_unlock(&ar->span_lock);
    if (!s)
        return NULL;
    uint32_t size = pa_g.cls_size[c];
    s->free = NULL;
    s->next = s->prev = NULL;
    s->nblocks = (uint32_t)(PA_SPAN_SIZE / size);
    s->nfree = s->nblocks;
    s->bump = 0;
    s->arena = (uint8_t)a;
    s->listed = 0;
    s->dirty = 0;
    __atomic_store_n(&s->cls, (uint8_t)c, __ATOMIC_RELEASE);
    pa_g.arenas[a].cls[c].spans++;
    return s;
}

/* Span s became empty: hand it back to its arena. Class lock held, s not listed. */
static void span_release(pa_arena *ar, pa_aclass *ac, pa_span *s)
{
    __atomic_store_n(&s->cls, (uint8_t)PA_CLS_NONE, __ATOMIC_RELEASE);
    ac->spans--;
    pthread_mutex_lock(&ar->span_lock);
    if (ar->ndirty < DIRTY_MAX) {
        s->next = ar->dirty;
        ar->dirty = s;
        ar->ndirty++;
        s->dirty = 1;
    } else {
        int e = errno;
        madvise(span_base(s), PA_SPAN_SIZE, MADV_DONTNEED);
        errno = e;
        s->dirty = 0;
        s->next = ar->clean;
        ar->clean = s;
        pa_stats_mapped(-(int64_t)PA_SPAN_SIZE);
    }
    pthread_mutex_unlock(&ar->span_lock);
}

/* Returns block q to span s. Class lock held. */
static inline void span_push(pa_arena *ar, pa_aclass *ac, pa_span *s, void **q)
{
    q[0] = pa_enc(q, s->free);
    q[1] = (void *)pa_g.key;
    s->free = q;
    s->nfree++;
    if (s->nfree == s->nblocks) {
        /* Entirely free: keep it if it is the class's only span, else give it back. */
        if (s->listed && s->next == s)
            return;
        if (s->listed)
            list_remove(ac, s);
        span_release(ar, ac, s);
    } else if (!s->listed) {
        list_add_tail(ac, s);
    }
}

/* Takes up to `want` blocks of class c from arena a, linked through word 0 with word 1 set
 * to the key. Returns the number taken (0: no memory), the list in *head. */
static uint32_t refill(int a, unsigned c, uint32_t want, void **head)
{
    pa_arena *ar = &pa_g.arenas[a];
    pa_aclass *ac = &ar->cls[c];
    uint32_t size = pa_g.cls_size[c];
    void *list = NULL;
    uint32_t got = 0;
    void *key = (void *)pa_g.key;
    if (want > 1 && atomic_load_explicit(&ac->remote, memory_order_relaxed)) {
        /* Blocks other threads gave back: take them all, lock-free. */
        list = atomic_exchange_explicit(&ac->remote, NULL, memory_order_acquire);
        for (void **q = list; q; q = pa_dec(q)) {
            if (UNLIKELY(!pa_small_link_ok(q) || pa_span_of(q)->arena != (uint8_t)a))
                pa_corrupt("malloc", "corrupted free list", q);
            got++;
        }
        if (got) {
            atomic_fetch_sub_explicit(&ac->nremote, got, memory_order_relaxed);
            *head = list;
            return got;
        }
    }
    pthread_mutex_lock(&ac->lock);
    while (got < want) {
        pa_span *s = ac->partial;
        if (!s) {
            if (got)
                break;
            s = span_new(ar, a, c);
            if (!s)
                break;
            list_add_tail(ac, s);
        }
        while (got < want && s->free) {
            void **q = s->free;
            void **nx = pa_dec(q);
            uint32_t off = (uint32_t)((uintptr_t)nx & (PA_SPAN_SIZE - 1));
            if (UNLIKELY(nx && (pa_span_of(nx) != s || !pa_small_link_ok(nx) ||
                                (uint32_t)(((uint64_t)off * pa_g.cls_magic[c]) >> 32) * size !=
                                    off)))
                pa_corrupt("malloc", "corrupted free list", q);
            s->free = nx;
            q[0] = pa_enc(q, list);
            q[1] = key;
            list = q;
            got++;
            s->nfree--;
        }
        if (got < want && s->bump < s->nblocks) {
            char *b = span_base(s) + (size_t)s->bump * size;
            uint32_t take = s->nblocks - s->bump;
            if (take > want - got)
                take = want - got;
            __atomic_store_n(&s->bump, s->bump + take, __ATOMIC_RELAXED);
            s->nfree -= take;
            got += take;
            /* Linked from the top down so that they are handed out in address order. */
            b += (size_t)(take - 1) * size;
            for (uint32_t i = 0; i < take; i++, b -= size) {
                void **q = (void **)b;
                q[0] = pa_enc(q, list);
                q[1] = key;
                list = q;
            }
        }
        if (s->nfree == 0)
            list_remove(ac, s);
    }
    pthread_mutex_unlock(&ac->lock);
    *head = list;
    return got;
}

/* Pushes the chain first..last (n blocks, linked, last's link to be set) onto the remote list
 * of ac; 0 if that list is full. */
static int remote_push(pa_aclass *ac, void **first, void **last, uint32_t n)
{
    if (atomic_load_explicit(&ac->nremote, memory_order_relaxed) + n > PA_REMOTE_MAX)
        return 0;
    atomic_fetch_add_explicit(&ac->nremote, n, memory_order_relaxed);
    void *old = atomic_load_explicit(&ac->remote, memory_order_relaxed);
    do
        last[0] = pa_enc(last, old);
    while (!atomic_compare_exchange_weak_explicit(&ac->remote, &old, first, memory_order_release,
                                                  memory_order_relaxed));
    return 1;
}

/* Returns a list of class-c blocks (linked through word 0) to their owning arenas: runs of
 * blocks of an arena other than `mine` go to its remote list in one push, the rest (and
 * everything when mine < 0, or when a remote list is full) to their spans, under the lock. */
static void return_blocks(unsigned c, void **list, int mine)
{
    pa_aclass *locked = NULL;
    while (list) {
        void **next = pa_dec(list);
        if (UNLIKELY(!pa_small_link_ok(next)))
            pa_corrupt("free", "corrupted free list", list);
        pa_span *s = pa_span_of(list);
        if (mine >= 0 && s->arena != (uint8_t)mine) {
            /* The run of blocks of the same foreign arena that starts here. */
            uint8_t owner = s->arena;
            void **last = list;
            uint32_t n = 1;
            while (next && pa_span_of(next)->arena == owner) {
                void **nn = pa_dec(next);
                if (UNLIKELY(!pa_small_link_ok(nn)))
                    pa_corrupt("free", "corrupted free list", next);
                last = next;
                next = nn;
                n++;
            }
            if (remote_push(&pa_g.arenas[owner].cls[c], list, last, n)) {
                list = next;
                continue;
            }
            last[0] = pa_enc(last, next); /* full: the locked path takes the run */
            next = pa_dec(list);
        }
        pa_arena *ar = &pa_g.arenas[s->arena];
        pa_aclass *ac = &ar->cls[c];
        if (ac != locked) {
            if (locked)
                pthread_mutex_unlock(&locked->lock);
            pthread_mutex_lock(&ac->lock);
            locked = ac;
        }
        span_push(ar, ac, s, list);
        list = next;
    }
    if (locked)
        pthread_mutex_unlock(&locked->lock);
}

/* Keeps the `keep` most recently freed blocks of bin c, returns the rest. */
static void bin_flush(pa_tcache *t, unsigned c, uint32_t keep)
{
    pa_bin *b = &t->bins[c];
    if (b->count <= keep)
        return;
    void **cut;
    if (keep == 0) {
        cut = b->head;
        b->head = NULL;
    } else {
        void **q = b->head;
        for (uint32_t i = 1; i < keep; i++) {
            q = pa_dec(q);
            if (UNLIKELY(!q || !pa_small_link_ok(q)))
                pa_corrupt("free", "corrupted free list", q);
        }
        cut = pa_dec(q);
        q[0] = pa_enc(q, NULL);
    }
    b->count = keep;
    return_blocks(c, cut, t->state == TC_LIVE ? t->arena : -1);
}

void pa_tcache_flush_all(pa_tcache *t)
{
    for (int c = 0; c < pa_g.nclasses; c++)
        bin_flush(t, (unsigned)c, 0);
}

/* ---------------------------------------------------------------------------------------- */

void *pa_small_alloc(pa_tcache *t, unsigned c)
{
    pa_bin *b = &t->bins[c];
    void **p = b->head;
    if (p) {
        void **nx = pa_dec(p);
        if (UNLIKELY(!pa_small_link_ok(nx)))
            pa_corrupt("malloc", "corrupted free list", p);
        b->head = nx;
        b->count--;
        p[1] = NULL;
        return p;
    }
    void *list;
    uint32_t want = 1;
    if (t->state == TC_LIVE) {
        want = b->max / 2 > pa_g.cls_batch[c] ? b->max / 2 : pa_g.cls_batch[c];
        t->refilled |= (uint64_t)1 << c;
    }
    uint32_t got = refill(t->arena, c, want, &list);
    if (!got)
        return NULL;
    p = list;
    b->head = pa_dec(p);
    b->count = got - 1;
    p[1] = NULL;
    return p;
}

/* Checks that p is the start of a block of the class of its span; returns the class or -1. */
static inline int block_class(const void *p)
{
    pa_span *s = pa_span_of(p);
    unsigned c = __atomic_load_n(&s->cls, __ATOMIC_ACQUIRE);
    if (c >= (unsigned)pa_g.nclasses)
        return -1;
    uint32_t off = (uint32_t)((uintptr_t)p & (PA_SPAN_SIZE - 1));
    uint32_t idx = (uint32_t)(((uint64_t)off * pa_g.cls_magic[c]) >> 32);
    if (idx * pa_g.cls_size[c] != off || idx >= __atomic_load_n(&s->bump, __ATOMIC_RELAXED))
        return -1; /* not a block boundary, or a block never handed out */
    return (int)c;
}

/* A block that carries the free key: is it really free (in this thread's cache or on its
 * span's list)? Blocks in other threads' caches cannot be seen; those frees go through, like
 * glibc's tcache does. */
static int is_known_free(pa_tcache *t, unsigned c, void **q)
{
    if (t->state == TC_LIVE) {
        uint32_t n = 0;
        for (void **e = t->bins[c].head; e && pa_small_link_ok(e) && n <= t->bins[c].count;
             e = pa_dec(e), n++)
            if (e == q)
                return 1;
    }
    pa_span *s = pa_span_of(q);
    pa_aclass *ac = &pa_g.arenas[s->arena].cls[c];
    int found = 0;
    pthread_mutex_lock(&ac->lock);
    if (s->cls == c) {
        uint32_t n = 0;
        for (void **e = s->free; e && pa_small_link_ok(e) && n <= s->nblocks; e = pa_dec(e), n++)
            if (e == q) {
                found = 1;
                break;
            }
    }
    pthread_mutex_unlock(&ac->lock);
    return found;
}

int pa_small_free(pa_tcache *t, void *p)
{
    int c = block_class(p);
    if (c < 0)
        return PA_FREE_INVALID;
    void **q = p;
    if (UNLIKELY(q[1] == (void *)pa_g.key) && is_known_free(t, (unsigned)c, q))
        return PA_FREE_DOUBLE;
    if (t->state == TC_LIVE) {
        pa_bin *b = &t->bins[c];
        q[0] = pa_enc(q, b->head);
        q[1] = (void *)pa_g.key;
        b->head = q;
        if (++b->count > b->max) {
            uint64_t bit = (uint64_t)1 << c;
            if (t->refilled & bit) {
                t->refilled &= ~bit;
                b->dry = 0;
                if (b->max < pa_g.cls_cap[c]) {
                    uint32_t m = 2u * b->max;
                    b->max = (uint16_t)(m < pa_g.cls_cap[c] ? m : pa_g.cls_cap[c]);
                    return PA_FREE_OK;
                }
            } else if (++b->dry >= PA_BIN_DRY && b->max > pa_g.cls_max[c]) {
                b->dry = 0;
                b->max = (uint16_t)(b->max / 2 > pa_g.cls_max[c] ? b->max / 2 : pa_g.cls_max[c]);
            }
            bin_flush(t, (unsigned)c, b->max / 2);
        }
        return PA_FREE_OK;
    }
    q[0] = pa_enc(q, NULL);
    q[1] = (void *)pa_g.key;
    return_blocks((unsigned)c, q, -1);
    return PA_FREE_OK;
}

size_t pa_small_usable(const void *p)
{
    int c = block_class(p);
    return c < 0 ? 0 : pa_g.cls_size[c];
}

/* ---------------------------------------------------------------------------------------- */

void pa_small_lock_all(void)
{
    for (int a = 0; a < pa_g.narenas; a++) {
        for (int c = 0; c < pa_g.nclasses; c++)
            pthread_mutex_lock(&pa_g.arenas[a].cls[c].lock);
        pthread_mutex_lock(&pa_g.arenas[a].span_lock);
    }
}

void pa_small_unlock_all(int reinit)
{
    for (int a = pa_g.narenas - 1; a >= 0; a--) {
        if (reinit) {
            pthread_mutex_init(&pa_g.arenas[a].span_lock, NULL);
            for (int c = 0; c < pa_g.nclasses; c++)
                pthread_mutex_init(&pa_g.arenas[a].cls[c].lock, NULL);
        } else {
            pthread_mutex_unlock(&pa_g.arenas[a].span_lock);
            for (int c = pa_g.nclasses - 1; c >= 0; c--)
                pthread_mutex_unlock(&pa_g.arenas[a].cls[c].lock);
        }
    }
}

/* Returns the pages of every empty span to the kernel; bytes released. */
size_t pa_small_trim(void)
{
    size_t released = 0;
    for (int a = 0; a < pa_g.narenas; a++)
        for (int c = 0; c < pa_g.nclasses; c++) {
            pa_aclass *ac = &pa_g.arenas[a].cls[c];
            void **list = atomic_exchange_explicit(&ac->remote, NULL, memory_order_acquire);
            uint32_t n = 0;
            for (void **q = list; q && n <= PA_REMOTE_MAX * 2u; q = pa_dec(q))
                n++;
            atomic_fetch_sub_explicit(&ac->nremote, n, memory_order_relaxed);
            if (list)
                return_blocks((unsigned)c, list, -1);
        }
    for (int a = 0; a < pa_g.narenas; a++) {
        pa_arena *ar = &pa_g.arenas[a];
        pthread_mutex_lock(&ar->span_lock);
        while (ar->dirty) {
            pa_span *s = ar->dirty;
            ar->dirty = s->next;
            ar->ndirty--;
            madvise(span_base(s), PA_SPAN_SIZE, MADV_DONTNEED);
            s->dirty = 0;
            s->next = ar->clean;
            ar->clean = s;
            released += PA_SPAN_SIZE;
            pa_stats_mapped(-(int64_t)PA_SPAN_SIZE);
        }
        pthread_mutex_unlock(&ar->span_lock);
    }
    return released;
}

void pa_small_counts(uint64_t *in_use, uint64_t *dirty)
{
    uint64_t u = 0, d = 0;
    for (int a = 0; a < pa_g.narenas; a++) {
        pa_arena *ar = &pa_g.arenas[a];
        for (int c = 0; c < pa_g.nclasses; c++)
            u += __atomic_load_n(&ar->cls[c].spans, __ATOMIC_RELAXED);
        d += ar->ndirty;
    }
    *in_use = u;
    *dirty = d;
}
