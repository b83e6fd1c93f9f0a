/* trace.c - PYALLOC_TRACE: records every malloc/free/realloc of the host program in
 * the format of trace.h. One lock covers each operation and its record (see trace.h), the
 * records go through a static buffer to the file. After fork, a child gets its own file when
 * the path contains %p, otherwise it stops recording (the parent keeps the file). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "trace.h"

#define TBUF (256 << 10)

static pthread_mutex_t tlock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char tbuf[TBUF];
static size_t tlen;
static int tfd = -1;
static uint64_t tprev;
static uint32_t tcur, tnext;

static void flush(void)
{
    if (tfd >= 0 && tlen) {
        int e = errno;
        if (pa_write_all(tfd, (const char *)tbuf, tlen) != 0) {
            pa_write_err("pyalloc: warning: trace write failed; trace stopped\n");
            close(tfd);
            tfd = -1;
        }
        errno = e;
    }
    tlen = 0;
}

static int open_trace(void)
{
    char path[600];
    pa_expand_path(pa_g.trace_path, path, sizeof path);
    int e = errno;
    tfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (tfd < 0) {
        pa_write_err("pyalloc: warning: cannot open PYALLOC_TRACE file ");
        pa_write_err(path);
        pa_write_err("; not tracing\n");
        errno = e;
        return -1;
    }
    unsigned char h[PA_TRACE_HEADER];
    memset(h, 0, sizeof h);
    memcpy(h, PA_TRACE_MAGIC, 8);
    uint32_t v = PA_TRACE_VERSION, hs = PA_TRACE_HEADER;
    uint64_t pid = (uint64_t)getpid();
    memcpy(h + 8, &v, 4);
    memcpy(h + 12, &hs, 4);
    memcpy(h + 16, &pid, 8);
    pa_write_all(tfd, (const char *)h, sizeof h);
    tlen = 0;
    tprev = 0;
    tcur = 0;
    errno = e;
    return 0;
}

void pa_trace_start(void)
{
    if (open_trace() != 0)
        pa_g.trace = 0;
}

void pa_trace_lock(void) { pthread_mutex_lock(&tlock); }
void pa_trace_unlock(void) { pthread_mutex_unlock(&tlock); }

/* Room for one record, with the thread switch if needed. Lock held. */
static unsigned char *begin(pa_tcache *t)
{
    if (tlen > TBUF - 64)
        flush();
    unsigned char *p = tbuf + tlen;
    if (!t->trace_tid)
        t->trace_tid = ++tnext;
    if (t->trace_tid != tcur) {
        tcur = t->trace_tid;
        *p++ = PA_TR_THREAD;
        p = pa_tr_put_uv(p, tcur);
    }
    return p;
}

static inline void end(unsigned char *p) { tlen = (size_t)(p - tbuf); }

static void put_alloc(pa_tcache *t, int op, size_t align, size_t n, const void *r)
{
    if (tfd < 0)
        return;
    unsigned char *p = begin(t);
    *p++ = (unsigned char)(op | (r ? 0 : PA_TR_FAILED));
    if (op == PA_TR_MEMALIGN)
        p = pa_tr_put_uv(p, align);
    p = pa_tr_put_uv(p, n);
    if (r)
        p = pa_tr_put_ptr(p, &tprev, (uint64_t)(uintptr_t)r);
    end(p);
}

void pa_trace_malloc(pa_tcache *t, size_t n, const void *r) { put_alloc(t, PA_TR_MALLOC, 0, n, r); }
void pa_trace_calloc(pa_tcache *t, size_t n, const void *r) { put_alloc(t, PA_TR_CALLOC, 0, n, r); }
void pa_trace_memalign(pa_tcache *t, size_t align, size_t n, const void *r)
{
    put_alloc(t, PA_TR_MEMALIGN, align, n, r);
}

void pa_trace_free(pa_tcache *t, const void *ptr)
{
    if (tfd < 0)
        return;
    unsigned char *p = begin(t);
    *p++ = PA_TR_FREE;
    p = pa_tr_put_ptr(p, &tprev, (uint64_t)(uintptr_t)ptr);
    end(p);
}

void pa_trace_realloc(pa_tcache *t, const void *old, size_t n, const void *r)
{
    if (tfd < 0)
        return;
    unsigned char *p = begin(t);
    *p++ = (unsigned char)(PA_TR_REALLOC | (r ? 0 : PA_TR_FAILED));
    p = pa_tr_put_ptr(p, &tprev, (uint64_t)(uintptr_t)old);
    p = pa_tr_put_uv(p, n);
    if (r)
        p = pa_tr_put_ptr(p, &tprev, (uint64_t)(uintptr_t)r);
    end(p);
}

void pa_trace_finish(void)
{
    pthread_mutex_lock(&tlock);
    flush();
    pthread_mutex_unlock(&tlock);
}

void pa_trace_fork_prepare(void) { pthread_mutex_lock(&tlock); }
void pa_trace_fork_parent(void) { pthread_mutex_unlock(&tlock); }

void pa_trace_fork_child(void)
{
    pthread_mutex_init(&tlock, NULL);
    tlen = 0; /* the parent writes its own buffered records */
    if (tfd >= 0)
        close(tfd);
    tfd = -1;
    if (strstr(pa_g.trace_path, "%p")) {
        tnext = 0;
        if (open_trace() != 0)
            pa_g.trace = 0;
    } else {
        pa_g.trace = 0;
    }
}
