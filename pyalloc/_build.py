"""cffi builder (out-of-line API mode) for pyalloc._native, compiled from csrc/core/ and the
trace replay of csrc/preload/."""

import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _sources import CORE_CFLAGS, CORE_SOURCES, INCLUDE_DIRS, TOOL_SOURCES  # noqa: E402

CDEF = """
#define PA_ALIGN 16
#define PA_HEADER 8
#define PA_MIN_BLOCK 64
#define PA_NOLOCK 1
#define PA_HUGEPAGE 2
#define PA_NPOLICIES 4
static const size_t PA_MAX_ALIGN_VALUE;
static const size_t PA_POOL_MAX_CAPACITY_VALUE;

int pa_policy_from_name(const char *name);
const char *pa_policy_name(int policy);

typedef struct pa_pool pa_pool;
pa_pool *pa_pool_create(size_t capacity, int policy, unsigned flags);
void pa_pool_destroy(pa_pool *pool);
void *pa_pool_alloc(pa_pool *pool, size_t n);
void *pa_pool_alloc_aligned(pa_pool *pool, size_t n, size_t align);
void *pa_pool_alloc_ex(pa_pool *pool, size_t n, size_t align, size_t *usable);
int pa_pool_free(pa_pool *pool, void *p);
void *pa_pool_realloc(pa_pool *pool, void *p, size_t n);
void *pa_pool_realloc_ex(pa_pool *pool, void *p, size_t n, size_t *usable);
size_t pa_pool_usable_size(pa_pool *pool, const void *p);
int pa_pool_is_live(pa_pool *pool, const void *p);
int pa_pool_contains(const pa_pool *pool, const void *p);
void *pa_pool_base(const pa_pool *pool);
size_t pa_pool_capacity(const pa_pool *pool);
int pa_pool_policy(const pa_pool *pool);
void pa_pool_set_trim_threshold(pa_pool *pool, size_t bytes);
size_t pa_pool_trim(pa_pool *pool);

typedef struct pa_stats {
    uint64_t capacity; uint64_t used; uint64_t free; uint64_t overhead;
    uint64_t largest_free; uint64_t free_blocks; uint64_t live_blocks; uint64_t peak_used;
    uint64_t committed; uint64_t peak_committed;
    uint64_t allocs; uint64_t frees; uint64_t reallocs; uint64_t failed_allocs;
    uint64_t invalid_frees; uint64_t trims;
    double fragmentation;
    uint64_t top;
} pa_stats;
void pa_pool_stats(pa_pool *pool, pa_stats *out);

typedef struct pa_block_info { uint64_t offset; uint64_t size; uint64_t seq; } pa_block_info;
size_t pa_pool_free_blocks(pa_pool *pool, pa_block_info *out, size_t max);
size_t pa_pool_live_blocks(pa_pool *pool, pa_block_info *out, size_t max);
int pa_pool_check(pa_pool *pool);
const char *pa_check_message(int code);

typedef struct pa_slab pa_slab;
pa_slab *pa_slab_create(size_t block_size, size_t capacity, unsigned flags);
void pa_slab_destroy(pa_slab *slab);
void *pa_slab_alloc(pa_slab *slab);
int pa_slab_free(pa_slab *slab, void *p);
int pa_slab_is_live(pa_slab *slab, const void *p);
void *pa_slab_base(const pa_slab *slab);
size_t pa_slab_block_size(const pa_slab *slab);
size_t pa_slab_capacity(const pa_slab *slab);
typedef struct pa_slab_stats {
    uint64_t capacity; uint64_t block_size; uint64_t blocks; uint64_t live_blocks;
    uint64_t peak_live_blocks; uint64_t used; uint64_t free; uint64_t allocs; uint64_t frees;
    uint64_t failed_allocs; uint64_t invalid_frees;
} pa_slab_stats;
void pa_slab_stats_get(pa_slab *slab, pa_slab_stats *out);

int pa_bench_fragment(pa_pool *pool, size_t nfree, size_t min_size, size_t max_size,
                      uint64_t seed);
int64_t pa_bench_alloc_free(pa_pool *pool, const size_t *sizes, size_t nsizes, size_t rounds);
int64_t pa_bench_slab_alloc_free(pa_slab *slab, size_t count);

typedef struct pa_replay_result {
    int policy; int error;
    uint64_t records; uint64_t allocs; uint64_t frees; uint64_t reallocs; uint64_t failed;
    uint64_t unmatched; uint64_t threads; uint64_t peak_live; uint64_t peak_heap;
    uint64_t peak_committed; uint64_t final_live;
    double ratio; double seconds;
} pa_replay_result;
int pa_trace_replay(const char *path, int policy, pa_replay_result *out);
typedef struct pa_replay_sample {
    uint64_t ops; uint64_t live; uint64_t top; uint64_t used; uint64_t free;
} pa_replay_sample;
int pa_trace_replay_series(const char *path, int policy, uint64_t every,
                           pa_replay_sample *samples, size_t max, size_t *nsamples,
                           pa_replay_result *out);
"""

SOURCE = """
#include "pyalloc.h"
#include "preload/trace.h"
static const size_t PA_MAX_ALIGN_VALUE = PA_MAX_ALIGN;
static const size_t PA_POOL_MAX_CAPACITY_VALUE = PA_POOL_MAX_CAPACITY;
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "pyalloc._native",
    SOURCE,
    sources=[os.path.relpath(os.path.join(ROOT, s)) for s in CORE_SOURCES + TOOL_SOURCES],
    include_dirs=[os.path.relpath(os.path.join(ROOT, d)) for d in INCLUDE_DIRS],
    extra_compile_args=[f for f in CORE_CFLAGS if f != "-Werror"] + ["-Werror"],
    libraries=["pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
