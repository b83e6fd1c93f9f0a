/* arena.h - address space from the kernel: reserve, commit, purge, release (internal). */
#ifndef PA_ARENA_H
#define PA_ARENA_H

#include <stddef.h>

/* Page size of the machine (cached). */
size_t pa_os_page_size(void);
/* Reserves `size` bytes of address space, aligned to `align` (a power of two >= page size),
 * inaccessible until committed. NULL on failure (errno set). */
void *pa_os_reserve(size_t size, size_t align);
/* Maps `size` bytes read/write at once (lazily backed by the kernel). NULL on failure. */
void *pa_os_map(size_t size);
/* Makes [p, p+size) readable and writable. 0 or -1 (errno set). */
int pa_os_commit(void *p, size_t size);
/* Returns the pages of [p, p+size) to the kernel and makes the range inaccessible again. */
int pa_os_decommit(void *p, size_t size);
/* Returns the pages of [p, p+size) to the kernel; the range stays accessible and reads as
 * zero afterwards. */
int pa_os_purge(void *p, size_t size);
/* Asks for transparent huge pages on [p, p+size) (advice only). */
void pa_os_hugepage(void *p, size_t size);
/* Unmaps [p, p+size). */
void pa_os_release(void *p, size_t size);

#endif
