/* trace.h - the allocation trace format (PYALLOC_TRACE) and its replay. The preload front end
 * owns the format: trace.c writes it from inside libpyalloc.so, replay.c (linked into the cffi
 * module pyalloc._native, not into the library) reads it back into a pool.
 *
 * A trace is a 32-byte header followed by variable-length records, all little endian:
 *
 *   header   "PYATRACE"  u32 version (1)  u32 header size (32)  u64 pid  u64 reserved (0)
 *   record   u8 opcode, then fields; sizes are unsigned LEB128 varints; a pointer is the
 *            zigzag LEB128 varint of (address - previous address in the file), the previous
 *            address starting at 0 and updated by every pointer field.
 *
 *     0x01 MALLOC    size ptr
 *     0x02 CALLOC    size ptr          (size = nmemb * size, the product)
 *     0x03 MEMALIGN  align size ptr    (posix_memalign, aligned_alloc, memalign, valloc, ...)
 *     0x04 FREE      ptr
 *     0x05 REALLOC   old size new      (realloc(old, size) returned new, old != NULL, size > 0)
 *     0x06 THREAD    tid               following records come from thread tid (1, 2, ...)
 *   Opcode | 0x80 on MALLOC, CALLOC, MEMALIGN, REALLOC: the call failed (returned NULL); the
 *   result pointer field is then absent.
 *
 * realloc(NULL, n) is recorded as MALLOC and realloc(p, 0) as FREE (that is what they do).
 * Invalid frees (foreign pointers, double frees) are not recorded. Records are written in
 * the order the operations took effect: the writer holds one lock around each operation and
 * its record, so a trace of a multi-threaded program replays consistently in file order.
 */
#ifndef PA_TRACE_H
#define PA_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define PA_TRACE_MAGIC "PYATRACE"
#define PA_TRACE_VERSION 1
#define PA_TRACE_HEADER 32

enum {
    PA_TR_MALLOC = 1,
    PA_TR_CALLOC = 2,
    PA_TR_MEMALIGN = 3,
    PA_TR_FREE = 4,
    PA_TR_REALLOC = 5,
    PA_TR_THREAD = 6,
    PA_TR_FAILED = 0x80,
};

static inline unsigned char *pa_tr_put_uv(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

static inline unsigned char *pa_tr_put_ptr(unsigned char *p, uint64_t *prev, uint64_t addr)
{
    int64_t d = (int64_t)(addr - *prev);
    *prev = addr;
    return pa_tr_put_uv(p, ((uint64_t)d << 1) ^ (uint64_t)(d >> 63));
}

/* Reads a varint; NULL if it runs past `end` or is too long. */
static inline const unsigned char *pa_tr_get_uv(const unsigned char *p, const unsigned char *end,
                                                uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64 && p < end; shift += 7) {
        unsigned char c = *p++;
        r |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *v = r;
            return p;
        }
    }
    return NULL;
}

static inline const unsigned char *pa_tr_get_ptr(const unsigned char *p, const unsigned char *end,
                                                 uint64_t *prev, uint64_t *addr)
{
    uint64_t z;
    p = pa_tr_get_uv(p, end, &z);
    if (!p)
        return NULL;
    int64_t d = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    *addr = *prev + (uint64_t)d;
    *prev = *addr;
    return p;
}

/* Result of replaying a trace under one policy. */
typedef struct pa_replay_result {
    int policy;
    int error;               /* 0, or an errno value (ENOENT, EINVAL for a malformed file) */
    uint64_t records;        /* records read */
    uint64_t allocs;         /* MALLOC + CALLOC + MEMALIGN records replayed */
    uint64_t frees;
    uint64_t reallocs;
    uint64_t failed;         /* allocations the replay pool refused */
    uint64_t unmatched;      /* frees/reallocs of addresses not live in the trace */
    uint64_t threads;        /* distinct thread ids */
    uint64_t peak_live;      /* highest sum of requested bytes of live blocks */
    uint64_t peak_heap;      /* highest payload end offset reached in the pool */
    uint64_t peak_committed; /* highest committed bytes of the pool */
    uint64_t final_live;     /* requested bytes still live at the end of the trace */
    double ratio;            /* peak_heap / peak_live (Johnstone & Wilson) */
    double seconds;          /* wall time of the replay loop */
} pa_replay_result;

/* Replays the trace at `path` in a fresh pa_pool with `policy`. 0, or -1 with out->error. */
int pa_trace_replay(const char *path, int policy, pa_replay_result *out);

/* One point of a replay's time series, taken every `every` allocation-side operations. */
typedef struct pa_replay_sample {
    uint64_t ops;   /* allocs + frees + reallocs replayed so far */
    uint64_t live;  /* requested bytes of live blocks */
    uint64_t top;   /* heap extent (pa_stats.top): bytes below the pool's free top */
    uint64_t used;  /* usable bytes of live blocks */
    uint64_t free;  /* usable bytes of free blocks below the top */
} pa_replay_sample;

/* pa_trace_replay that also records up to `max` samples into `samples`, one every `every`
 * operations (every >= 1); *nsamples gets how many were written. */
int pa_trace_replay_series(const char *path, int policy, uint64_t every,
                           pa_replay_sample *samples, size_t max, size_t *nsamples,
                           pa_replay_result *out);

#endif
