/* arena.c - the only place that talks to the kernel about memory. */
#define _GNU_SOURCE
#include "arena.h"

#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

size_t pa_os_page_size(void)
{
    static size_t page;
    if (page == 0) {
        long v = sysconf(_SC_PAGESIZE);
        page = v > 0 ? (size_t)v : 4096;
    }
    return page;
}

void *pa_os_reserve(size_t size, size_t align)
{
    size_t page = pa_os_page_size();
    if (align < page)
        align = page;
    if (size == 0 || size > SIZE_MAX - align) {
        errno = EINVAL;
        return NULL;
    }
    /* Over-reserve by `align`, then cut the unaligned ends off. */
    size_t span = align > page ? size + align : size;
    char *raw = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    if (span == size)
        return raw;
    uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = start - (uintptr_t)raw;
    size_t tail = span - head - size;
    if (head)
        munmap(raw, head);
    if (tail)
        munmap((char *)start + size, tail);
    return (void *)start;
}

void *pa_os_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int pa_os_commit(void *p, size_t size)
{
    return mprotect(p, size, PROT_READ | PROT_WRITE);
}

int pa_os_decommit(void *p, size_t size)
{
    /* MAP_FIXED over the range drops its pages and its commit charge in one call. */
    void *q = mmap(p, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
                   -1, 0);
    return q == MAP_FAILED ? -1 : 0;
}

int pa_os_purge(void *p, size_t size)
{
    return madvise(p, size, MADV_DONTNEED);
}

void pa_os_hugepage(void *p, size_t size)
{
#ifdef MADV_HUGEPAGE
    (void)madvise(p, size, MADV_HUGEPAGE);
#else
    (void)p;
    (void)size;
#endif
}

void pa_os_release(void *p, size_t size)
{
    if (p)
        munmap(p, size);
}
