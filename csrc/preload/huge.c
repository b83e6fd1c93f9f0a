/* huge.c - huge blocks: one mmap each, munmap on free, mremap on realloc.
 *
 * The block starts at the mapping (page aligned, or more for big alignments) and carries no
 * header: a registry (open addressing hash table keyed by address, itself in mmap'd memory)
 * maps each live huge block to its length. So free() of a pointer that is neither small, in a
 * pool, nor in the registry is recognised as foreign without touching the memory it points to.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena.h"
#include "internal.h"

typedef struct { uintptr_t addr; size_t len; } hentry;   /* addr 0 empty, 1 tombstone */

static pthread_mutex_t hlock = PTHREAD_MUTEX_INITIALIZER;
static hentry *table;
static size_t tcap, tused, tlive; /* slots, used slots (live + tombstones), live */
static uint64_t hbytes;

static inline size_t hslot(uintptr_t a, size_t cap)
{
    uint64_t h = (uint64_t)a * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (cap - 1);
}

static int grow(void)
{
    size_t ncap = tcap ? tcap * 2 : 1024;
    if (tlive * 4 < tcap)
        ncap = tcap; /* mostly tombstones: rehash in place size */
    hentry *nt = mmap(NULL, ncap * sizeof(hentry), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (nt == MAP_FAILED)
        return -1;
    for (size_t i = 0; i < tcap; i++) {
        if (table[i].addr > 1) {
            size_t j = hslot(table[i].addr, ncap);
            while (nt[j].addr)
                j = (j + 1) & (ncap - 1);
            nt[j] = table[i];
        }
    }
    if (table)
        munmap(table, tcap * sizeof(hentry));
    table = nt;
    tcap = ncap;
    tused = tlive;
    return 0;
}

static int reg_add(uintptr_t a, size_t len)
{
    if ((tused + 1) * 4 > tcap * 3 && grow() != 0)
        return -1;
    size_t j = hslot(a, tcap);
    while (table[j].addr > 1)
        j = (j + 1) & (tcap - 1);
    if (table[j].addr == 0)
        tused++;
    table[j].addr = a;
    table[j].len = len;
    tlive++;
    hbytes += len;
    return 0;
}

static hentry *reg_find(uintptr_t a)
{
    if (!tcap || a <= 1)
        return NULL;
    size_t j = hslot(a, tcap);
    while (table[j].addr) {
        if (table[j].addr == a)
            return &table[j];
        j = (j + 1) & (tcap - 1);
    }
    return NULL;
}

static void reg_del(hentry *e)
{
    hbytes -= e->len;
    e->addr = 1;
    e->len = 0;
    tlive--;
}

static inline size_t page_round(size_t n, int *ovf)
{
    size_t page = pa_os_page_size();
    if (n > SIZE_MAX - page) {
        *ovf = 1;
        return 0;
    }
    return (n + page - 1) & ~(page - 1);
}

void *pa_huge_alloc(size_t n, size_t align)
{
    int ovf = 0;
    size_t len = page_round(n ? n : 1, &ovf);
    if (ovf || (align > pa_os_page_size() && len > SIZE_MAX - align)) {
        errno = ENOMEM;
        return NULL;
    }
    size_t span = align > pa_os_page_size() ? len + align : len;
    char *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        errno = ENOMEM;
        return NULL;
    }
    char *p = m;
    if (span != len) {
        p = (char *)(((uintptr_t)m + align - 1) & ~(uintptr_t)(align - 1));
        if (p > m)
            munmap(m, (size_t)(p - m));
        size_t tail = span - (size_t)(p - m) - len;
        if (tail)
            munmap(p + len, tail);
    }
    pthread_mutex_lock(&hlock);
    int rc = reg_add((uintptr_t)p, len);
    pthread_mutex_unlock(&hlock);
    if (rc != 0) {
        munmap(p, len);
        errno = ENOMEM;
        return NULL;
    }
    pa_stats_mapped((int64_t)len);
    return p;
}

size_t pa_huge_free(void *p)
{
    pthread_mutex_lock(&hlock);
    hentry *e = reg_find((uintptr_t)p);
    if (!e) {
        pthread_mutex_unlock(&hlock);
        return 0;
    }
    size_t len = e->len;
    reg_del(e);
    pthread_mutex_unlock(&hlock);
    munmap(p, len);
    pa_stats_mapped(-(int64_t)len);
    return len;
}

size_t pa_huge_usable(const void *p)
{
    pthread_mutex_lock(&hlock);
    hentry *e = reg_find((uintptr_t)p);
    size_t len = e ? e->len : 0;
    pthread_mutex_unlock(&hlock);
    return len;
}

void *pa_huge_realloc(void *p, size_t n)
{
    int ovf = 0;
    size_t len = page_round(n ? n : 1, &ovf);
    if (ovf) {
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_lock(&hlock);
    hentry *e = reg_find((uintptr_t)p);
    if (!e) {
        pthread_mutex_unlock(&hlock);
        errno = EINVAL;
        return NULL;
    }
    size_t old = e->len;
    if (len == old) {
        pthread_mutex_unlock(&hlock);
        return p;
    }
    /* Make room for the new entry first, so that recording the moved block cannot fail
     * once mremap has moved it. */
    if ((tused + 1) * 4 > tcap * 3) {
        if (grow() != 0) {
            pthread_mutex_unlock(&hlock);
            errno = ENOMEM;
            return NULL;
        }
        e = reg_find((uintptr_t)p);
    }
    void *q = mremap(p, old, len, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) {
        pthread_mutex_unlock(&hlock);
        errno = ENOMEM;
        return NULL;
    }
    if (q == p) {
        hbytes += len - old;
        e->len = len;
    } else {
        reg_del(e);
        reg_add((uintptr_t)q, len); /* room was made above */
    }
    pthread_mutex_unlock(&hlock);
    pa_stats_mapped((int64_t)len - (int64_t)old);
    return q;
}

void pa_huge_lock(void) { pthread_mutex_lock(&hlock); }

void pa_huge_unlock(int reinit)
{
    if (reinit)
        pthread_mutex_init(&hlock, NULL);
    else
        pthread_mutex_unlock(&hlock);
}

void pa_huge_counts(uint64_t *blocks, uint64_t *bytes)
{
    pthread_mutex_lock(&hlock);
    *blocks = tlive;
    *bytes = hbytes;
    pthread_mutex_unlock(&hlock);
}
