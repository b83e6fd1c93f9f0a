/* slab.c - fixed-size block pools: bump allocation, then an intrusive LIFO free list.
 * A bitmap of live blocks makes double frees and foreign pointers detectable in O(1). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "pyalloc.h"

struct pa_slab {
    pthread_mutex_t lock;
    unsigned flags;
    char *map;
    size_t map_size;
    char *base;
    size_t block_size;
    size_t nblocks;
    size_t bump;          /* blocks below this index have been handed out at least once */
    void *free_list;      /* singly linked through the first word of each free block */
    uint64_t *live_bits;  /* one bit per block */
    uint64_t live, peak_live, allocs, frees, failed_allocs, invalid_frees;
};

static inline void lock(pa_slab *s)
{
    if (!(s->flags & PA_NOLOCK))
        pthread_mutex_lock(&s->lock);
}

static inline void unlock(pa_slab *s)
{
    if (!(s->flags & PA_NOLOCK))
        pthread_mutex_unlock(&s->lock);
}

pa_slab *pa_slab_create(size_t block_size, size_t capacity, unsigned flags)
{
    size_t page = pa_os_page_size();
    if (block_size == 0 || block_size > ((size_t)1 << 40) || capacity == 0 ||
        capacity > PA_POOL_MAX_CAPACITY) {
        errno = EINVAL;
        return NULL;
    }
    block_size = (block_size + 15) & ~(size_t)15;
    size_t nblocks = (capacity + block_size - 1) / block_size;
    size_t data = (nblocks * block_size + page - 1) & ~(page - 1);
    nblocks = data / block_size;
    size_t bits = ((nblocks + 63) / 64) * sizeof(uint64_t);
    size_t head = (sizeof(pa_slab) + bits + page - 1) & ~(page - 1);
    char *map = pa_os_map(head + data);
    if (!map)
        return NULL;
    pa_slab *s = (pa_slab *)map;
    memset(s, 0, sizeof *s);
    if (!(flags & PA_NOLOCK))
        pthread_mutex_init(&s->lock, NULL);
    s->flags = flags;
    s->map = map;
    s->map_size = head + data;
    s->base = map + head;
    s->block_size = block_size;
    s->nblocks = nblocks;
    s->live_bits = (uint64_t *)(map + sizeof(pa_slab));
    if (flags & PA_HUGEPAGE)
        pa_os_hugepage(s->base, data);
    return s;
}

void pa_slab_destroy(pa_slab *s)
{
    if (!s)
        return;
    if (!(s->flags & PA_NOLOCK))
        pthread_mutex_destroy(&s->lock);
    pa_os_release(s->map, s->map_size);
}

void *pa_slab_alloc(pa_slab *s)
{
    lock(s);
    char *b = s->free_list;
    if (b) {
        s->free_list = *(void **)b;
    } else if (s->bump < s->nblocks) {
        b = s->base + s->bump++ * s->block_size;
    } else {
        s->failed_allocs++;
        unlock(s);
        errno = ENOMEM;
        return NULL;
    }
    size_t i = (size_t)(b - s->base) / s->block_size;
    s->live_bits[i / 64] |= (uint64_t)1 << (i % 64);
    s->allocs++;
    if (++s->live > s->peak_live)
        s->peak_live = s->live;
    unlock(s);
    return b;
}

/* Index of the block at p, or (size_t)-1 if p is not a block start. */
static size_t index_of(const pa_slab *s, const void *p)
{
    const char *q = p;
    if (q < s->base || q >= s->base + s->nblocks * s->block_size)
        return (size_t)-1;
    size_t off = (size_t)(q - s->base);
    if (off % s->block_size)
        return (size_t)-1;
    return off / s->block_size;
}

static int is_live_locked(const pa_slab *s, size_t i)
{
    return i != (size_t)-1 && (s->live_bits[i / 64] >> (i % 64)) & 1;
}

int pa_slab_free(pa_slab *s, void *p)
{
    if (!p)
        return 0;
    lock(s);
    size_t i = index_of(s, p);
    if (!is_live_locked(s, i)) {
        s->invalid_frees++;
        unlock(s);
        errno = EINVAL;
        return -1;
    }
    s->live_bits[i / 64] &= ~((uint64_t)1 << (i % 64));
    *(void **)p = s->free_list;
    s->free_list = p;
    s->live--;
    s->frees++;
    unlock(s);
    return 0;
}

int pa_slab_is_live(pa_slab *s, const void *p)
{
    lock(s);
    int r = is_live_locked(s, index_of(s, p));
    unlock(s);
    return r;
}

void *pa_slab_base(const pa_slab *s) { return s->base; }
size_t pa_slab_block_size(const pa_slab *s) { return s->block_size; }
size_t pa_slab_capacity(const pa_slab *s) { return s->nblocks * s->block_size; }

void pa_slab_stats_get(pa_slab *s, pa_slab_stats *o)
{
    lock(s);
    memset(o, 0, sizeof *o);
    o->capacity = s->nblocks * s->block_size;
    o->block_size = s->block_size;
    o->blocks = s->nblocks;
    o->live_blocks = s->live;
    o->peak_live_blocks = s->peak_live;
    o->used = s->live * s->block_size;
    o->free = o->capacity - o->used;
    o->allocs = s->allocs;
    o->frees = s->frees;
    o->failed_allocs = s->failed_allocs;
    o->invalid_frees = s->invalid_frees;
    unlock(s);
}
