/* stats.c - statistics of libpyalloc.so (malloc_stats, PYALLOC_STATS) and small formatting
 * helpers.
 *
 * Counting is always on and costs a few plain additions per request: every thread counts its
 * own requests in its cache (pa_tcount), the fast paths included; the registry of live
 * thread caches lets a report add them up, and a thread that exits folds its counts into
 * `retired`. The readers' loads race benignly with the owners' stores (aligned 64-bit words).
 *   live         usable bytes of live blocks (size class size, pool block size, mapping size):
 *                exact at any report; its peak is sampled when a thread takes a slow path
 *                (a cache refill or flush, a medium or huge request: every few dozen
 *                requests at most) once the thread's change passes 64 KiB, so it can
 *                miss a short peak by up to 64 KiB per thread
 *   mapped       bytes taken from the kernel and not given back: spans in use or kept empty,
 *                committed pool bytes, huge mappings (exact, with its peak)
 * Output needs no malloc and no stdio: it runs at exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

pa_gstats pa_st;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pa_tcache *reg_head;
static pa_tcount retired; /* counts of exited threads (and of threads past their exit) */

#define RD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

void pa_stats_register(pa_tcache *t)
{
    pthread_mutex_lock(&reg_lock);
    t->reg_prev = NULL;
    t->reg_next = reg_head;
    if (reg_head)
        reg_head->reg_prev = t;
    reg_head = t;
    pthread_mutex_unlock(&reg_lock);
}

static void fold(pa_tcount *into, const pa_tcount *c)
{
    into->mallocs += RD(c->mallocs);
    into->callocs += RD(c->callocs);
    into->reallocs += RD(c->reallocs);
    into->memaligns += RD(c->memaligns);
    into->frees += RD(c->frees);
    into->bytes_requested += RD(c->bytes_requested);
    into->live += RD(c->live);
    for (int i = 0; i < PA_NCLASSES_MAX; i++)
        into->small_allocs[i] += RD(c->small_allocs[i]);
    into->medium_allocs += RD(c->medium_allocs);
    into->huge_allocs += RD(c->huge_allocs);
}

void pa_stats_unregister(pa_tcache *t)
{
    if (t->cnt.live != t->live_pushed)
        pa_stats_push_slow(t, t->cnt.live - t->live_pushed);
    pthread_mutex_lock(&reg_lock);
    if (t->reg_prev)
        t->reg_prev->reg_next = t->reg_next;
    else if (reg_head == t)
        reg_head = t->reg_next;
    if (t->reg_next)
        t->reg_next->reg_prev = t->reg_prev;
    t->reg_next = t->reg_prev = NULL;
    pa_tcount c = t->cnt;
    c.live = 0; /* already pushed */
    fold(&retired, &c);
    memset(&t->cnt, 0, sizeof t->cnt);
    t->live_pushed = 0;
    pthread_mutex_unlock(&reg_lock);
}

/* Every thread's counts added up; *unpushed gets the live bytes not yet pushed. */
static void sum_counts(pa_tcount *out, int64_t *unpushed)
{
    memset(out, 0, sizeof *out);
    int64_t u = 0;
    pthread_mutex_lock(&reg_lock);
    fold(out, &retired);
    for (pa_tcache *t = reg_head; t; t = t->reg_next) {
        fold(out, &t->cnt);
        u += RD(t->cnt.live) - RD(t->live_pushed);
    }
    pthread_mutex_unlock(&reg_lock);
    *unpushed = u;
}

/* ---------------------------------------------------------------------------------------- */

void pa_buf_str(pa_buf *b, const char *s)
{
    while (*s && b->len + 1 < b->cap)
        b->p[b->len++] = *s++;
    b->p[b->len] = 0;
}

void pa_buf_u64(pa_buf *b, uint64_t v)
{
    char tmp[24];
    int i = 23;
    tmp[i] = 0;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    pa_buf_str(b, tmp + i);
}

void pa_buf_i64(pa_buf *b, int64_t v)
{
    if (v < 0) {
        pa_buf_str(b, "-");
        pa_buf_u64(b, (uint64_t)(-(v + 1)) + 1);
    } else {
        pa_buf_u64(b, (uint64_t)v);
    }
}

void pa_buf_f(pa_buf *b, double v, int decimals)
{
    if (v != v) {
        pa_buf_str(b, "0");
        return;
    }
    if (v < 0) {
        pa_buf_str(b, "-");
        v = -v;
    }
    uint64_t scale = 1;
    for (int i = 0; i < decimals; i++)
        scale *= 10;
    if (v > 1e15)
        v = 1e15;
    uint64_t x = (uint64_t)(v * (double)scale + 0.5);
    pa_buf_u64(b, x / scale);
    if (decimals) {
        pa_buf_str(b, ".");
        char tmp[24];
        uint64_t frac = x % scale;
        for (int i = decimals - 1; i >= 0; i--) {
            tmp[i] = (char)('0' + frac % 10);
            frac /= 10;
        }
        tmp[decimals] = 0;
        pa_buf_str(b, tmp);
    }
}

void pa_buf_hex(pa_buf *b, uint64_t v)
{
    char tmp[20];
    int i = 19;
    tmp[i] = 0;
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    pa_buf_str(b, tmp + i);
}

int pa_write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

void pa_expand_path(const char *path, char *out, size_t cap)
{
    pa_buf b = {out, 0, cap};
    out[0] = 0;
    for (const char *s = path; *s; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            pa_buf_u64(&b, (uint64_t)getpid());
            s++;
        } else if (s[0] == '%' && s[1] == '%') {
            pa_buf_str(&b, "%");
            s++;
        } else {
            char c[2] = {*s, 0};
            pa_buf_str(&b, c);
        }
    }
}

/* ---------------------------------------------------------------------------------------- */

static inline void raise_peak(_Atomic int64_t *peak, int64_t v)
{
    int64_t cur = atomic_load_explicit(peak, memory_order_relaxed);
    while (v > cur && !atomic_compare_exchange_weak_explicit(peak, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

void pa_stats_push_slow(pa_tcache *t, int64_t d)
{
    t->live_pushed += d;
    int64_t live = atomic_fetch_add_explicit(&pa_st.live, d, memory_order_relaxed) + d;
    raise_peak(&pa_st.peak_live, live);
}

static void count_into(pa_tcount *c, int op, size_t request, size_t usable, int kind)
{
    switch (op) {
    case OP_MALLOC:
        c->mallocs++;
        break;
    case OP_CALLOC:
        c->callocs++;
        break;
    case OP_REALLOC:
        c->reallocs++;
        break;
    default:
        c->memaligns++;
        break;
    }
    c->bytes_requested += request;
    c->live += (int64_t)usable;
    if (op == OP_REALLOC)
        return; /* the size histogram counts new blocks only */
    if (request <= PA_SMALL_MAX)
        c->small_allocs[pa_class_of(request)]++;
    else if (kind == PA_KIND_HUGE)
        c->huge_allocs++;
    else
        c->medium_allocs++;
}

void pa_count_alloc(pa_tcache *t, int op, size_t request, size_t usable, int kind)
{
    if (LIKELY(t->state == TC_LIVE)) {
        count_into(&t->cnt, op, request, usable, kind);
        pa_stats_push(t);
        return;
    }
    pthread_mutex_lock(&reg_lock);
    count_into(&retired, op, request, 0, kind);
    pthread_mutex_unlock(&reg_lock);
    int64_t live = atomic_fetch_add_explicit(&pa_st.live, (int64_t)usable, memory_order_relaxed);
    raise_peak(&pa_st.peak_live, live + (int64_t)usable);
}

void pa_count_free(pa_tcache *t, size_t usable)
{
    if (LIKELY(t->state == TC_LIVE)) {
        t->cnt.frees++;
        t->cnt.live -= (int64_t)usable;
        pa_stats_push(t);
        return;
    }
    pthread_mutex_lock(&reg_lock);
    retired.frees++;
    pthread_mutex_unlock(&reg_lock);
    atomic_fetch_sub_explicit(&pa_st.live, (int64_t)usable, memory_order_relaxed);
}

void pa_stats_mapped(int64_t delta)
{
    int64_t m = atomic_fetch_add_explicit(&pa_st.mapped, delta, memory_order_relaxed) + delta;
    raise_peak(&pa_st.peak_mapped, m);
}

void pa_stats_fork_prepare(void) { pthread_mutex_lock(&reg_lock); }
void pa_stats_fork_parent(void) { pthread_mutex_unlock(&reg_lock); }

void pa_stats_fork_child(void)
{
    /* The child's report covers the child's own requests; live and mapped bytes carry over
     * (the child's heap is a copy of the parent's). Only the forking thread lives on. */
    pthread_mutex_init(&reg_lock, NULL);
    int64_t live = atomic_load(&pa_st.live);
    for (pa_tcache *t = reg_head; t; t = t->reg_next)
        live += t->cnt.live - t->live_pushed;
    memset(&retired, 0, sizeof retired);
    pa_tcache *me = &pa_tc;
    reg_head = NULL;
    if (me->state == TC_LIVE) {
        memset(&me->cnt, 0, sizeof me->cnt);
        me->live_pushed = 0;
        me->reg_next = me->reg_prev = NULL;
        reg_head = me;
    }
    atomic_store(&pa_st.live, live);
    atomic_store(&pa_st.invalid, 0);
    atomic_store(&pa_st.failed, 0);
    atomic_store(&pa_st.peak_live, live);
    atomic_store(&pa_st.peak_mapped, atomic_load(&pa_st.mapped));
}

/* Peak resident set size (VmHWM) in bytes, 0 if unknown. */
static uint64_t peak_rss(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *s = strstr(buf, "VmHWM:");
    if (!s)
        return 0;
    s += 6;
    while (*s == ' ' || *s == '\t')
        s++;
    uint64_t kb = 0;
    while (*s >= '0' && *s <= '9')
        kb = kb * 10 + (uint64_t)(*s++ - '0');
    return kb * 1024;
}

typedef struct {
    uint64_t used, free, committed, peak_committed, largest, nfree, nlive;
    double frag;
    int present;
} pool_snap;

static void snap_pools(pool_snap *out)
{
    for (int a = 0; a < pa_g.narenas; a++) {
        pa_arena *ar = &pa_g.arenas[a];
        memset(&out[a], 0, sizeof out[a]);
        pthread_mutex_lock(&ar->pool_lock);
        if (ar->pool) {
            pa_stats s;
            pa_pool_stats(ar->pool, &s);
            out[a].present = 1;
            out[a].used = s.used;
            /* The last free block spans the untouched arena: count only committed bytes. */
            out[a].free = s.committed > s.used ? s.committed - s.used : 0;
            out[a].committed = s.committed;
            out[a].peak_committed = s.peak_committed;
            out[a].largest = s.largest_free;
            out[a].nfree = s.free_blocks;
            out[a].nlive = s.live_blocks;
            out[a].frag = s.fragmentation;
        }
        pthread_mutex_unlock(&ar->pool_lock);
    }
}

#define U(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* The figures a report prints. */
typedef struct {
    pa_tcount c;
    int64_t live, peak_live;
} counts;

static void get_counts(counts *k)
{
    int64_t unpushed;
    sum_counts(&k->c, &unpushed);
    k->live = U(pa_st.live) + unpushed;
    k->peak_live = U(pa_st.peak_live);
    if (k->live > k->peak_live)
        k->peak_live = k->live;
}

static void report_text(int fd)
{
    static char mem[8192];
    pa_buf b = {mem, 0, sizeof mem};
    counts k;
    get_counts(&k);
    pool_snap pools[PA_MAX_ARENAS];
    snap_pools(pools);
    uint64_t hb, hbytes, spans, dirty;
    pa_huge_counts(&hb, &hbytes);
    pa_small_counts(&spans, &dirty);
    char pre[40];
    pa_buf pb = {pre, 0, sizeof pre};
    pa_buf_str(&pb, "pyalloc[");
    pa_buf_u64(&pb, (uint64_t)getpid());
    pa_buf_str(&pb, "]: ");

    pa_buf_str(&b, pre);
    pa_buf_str(&b, "policy ");
    pa_buf_str(&b, pa_policy_name(pa_g.policy));
    pa_buf_str(&b, ", thread caches ");
    pa_buf_str(&b, pa_g.tcache ? "on" : "off");
    pa_buf_str(&b, ", arenas ");
    pa_buf_u64(&b, (uint64_t)pa_g.narenas);
    pa_buf_str(&b, "\n");
    pa_buf_str(&b, pre);
    pa_buf_str(&b, "requests: malloc ");
    pa_buf_u64(&b, k.c.mallocs);
    pa_buf_str(&b, ", calloc ");
    pa_buf_u64(&b, k.c.callocs);
    pa_buf_str(&b, ", realloc ");
    pa_buf_u64(&b, k.c.reallocs);
    pa_buf_str(&b, ", memalign ");
    pa_buf_u64(&b, k.c.memaligns);
    pa_buf_str(&b, ", free ");
    pa_buf_u64(&b, k.c.frees);
    pa_buf_str(&b, ", failed ");
    pa_buf_u64(&b, U(pa_st.failed));
    pa_buf_str(&b, ", invalid ");
    pa_buf_u64(&b, U(pa_st.invalid));
    pa_buf_str(&b, "\n");
    pa_buf_str(&b, pre);
    pa_buf_str(&b, "bytes: requested ");
    pa_buf_u64(&b, k.c.bytes_requested);
    pa_buf_str(&b, ", live ");
    pa_buf_i64(&b, k.live);
    pa_buf_str(&b, ", peak live ");
    pa_buf_i64(&b, k.peak_live);
    pa_buf_str(&b, ", mapped ");
    pa_buf_i64(&b, U(pa_st.mapped));
    pa_buf_str(&b, ", peak mapped ");
    pa_buf_i64(&b, U(pa_st.peak_mapped));
    pa_buf_str(&b, ", peak rss ");
    pa_buf_u64(&b, peak_rss());
    int64_t pl = k.peak_live, pm = U(pa_st.peak_mapped);
    pa_buf_str(&b, ", peak mapped/peak live ");
    pa_buf_f(&b, pl > 0 ? (double)pm / (double)pl : 0.0, 3);
    pa_buf_str(&b, "\n");
    pa_buf_str(&b, pre);
    pa_buf_str(&b, "size classes (requests):");
    for (int c = 0; c < pa_g.nclasses; c++) {
        uint64_t n = k.c.small_allocs[c];
        if (!n)
            continue;
        pa_buf_str(&b, " ");
        pa_buf_u64(&b, pa_g.cls_size[c]);
        pa_buf_str(&b, ":");
        pa_buf_u64(&b, n);
    }
    pa_buf_str(&b, "; medium ");
    pa_buf_u64(&b, k.c.medium_allocs);
    pa_buf_str(&b, "; huge ");
    pa_buf_u64(&b, k.c.huge_allocs);
    pa_buf_str(&b, "\n");
    pa_buf_str(&b, pre);
    pa_buf_str(&b, "spans in use ");
    pa_buf_u64(&b, spans);
    pa_buf_str(&b, ", empty kept ");
    pa_buf_u64(&b, dirty);
    pa_buf_str(&b, "; huge blocks ");
    pa_buf_u64(&b, hb);
    pa_buf_str(&b, " (");
    pa_buf_u64(&b, hbytes);
    pa_buf_str(&b, " bytes)\n");
    for (int a = 0; a < pa_g.narenas; a++) {
        if (!pools[a].present)
            continue;
        pa_buf_str(&b, pre);
        pa_buf_str(&b, "pool ");
        pa_buf_u64(&b, (uint64_t)a);
        pa_buf_str(&b, ": used ");
        pa_buf_u64(&b, pools[a].used);
        pa_buf_str(&b, ", committed ");
        pa_buf_u64(&b, pools[a].committed);
        pa_buf_str(&b, " (peak ");
        pa_buf_u64(&b, pools[a].peak_committed);
        pa_buf_str(&b, "), free blocks ");
        pa_buf_u64(&b, pools[a].nfree);
        pa_buf_str(&b, ", fragmentation ");
        pa_buf_f(&b, pools[a].frag, 4);
        pa_buf_str(&b, "\n");
    }
    pa_write_all(fd, b.p, b.len);
}

static void json_kv(pa_buf *b, const char *k, uint64_t v, int comma)
{
    pa_buf_str(b, "\"");
    pa_buf_str(b, k);
    pa_buf_str(b, "\": ");
    pa_buf_u64(b, v);
    if (comma)
        pa_buf_str(b, ", ");
}

static void report_json(int fd)
{
    static char mem[16384];
    pa_buf b = {mem, 0, sizeof mem};
    counts k;
    get_counts(&k);
    pool_snap pools[PA_MAX_ARENAS];
    snap_pools(pools);
    uint64_t hb, hbytes, spans, dirty;
    pa_huge_counts(&hb, &hbytes);
    pa_small_counts(&spans, &dirty);
    int64_t live = k.live, pl = k.peak_live;
    int64_t mapped = U(pa_st.mapped), pm = U(pa_st.peak_mapped);
    pa_buf_str(&b, "{\"pyalloc\": 1, ");
    json_kv(&b, "pid", (uint64_t)getpid(), 1);
    pa_buf_str(&b, "\"policy\": \"");
    pa_buf_str(&b, pa_policy_name(pa_g.policy));
    pa_buf_str(&b, "\", \"tcache\": ");
    pa_buf_str(&b, pa_g.tcache ? "true" : "false");
    pa_buf_str(&b, ", ");
    json_kv(&b, "arenas", (uint64_t)pa_g.narenas, 1);
    json_kv(&b, "small_max", PA_SMALL_MAX, 1);
    json_kv(&b, "mmap_threshold", pa_g.huge_min == SIZE_MAX ? 0 : pa_g.huge_min, 1);
    pa_buf_str(&b, "\"requests\": {");
    json_kv(&b, "malloc", k.c.mallocs, 1);
    json_kv(&b, "calloc", k.c.callocs, 1);
    json_kv(&b, "realloc", k.c.reallocs, 1);
    json_kv(&b, "memalign", k.c.memaligns, 1);
    json_kv(&b, "free", k.c.frees, 1);
    json_kv(&b, "failed", U(pa_st.failed), 1);
    json_kv(&b, "invalid", U(pa_st.invalid), 0);
    pa_buf_str(&b, "}, ");
    json_kv(&b, "bytes_requested", k.c.bytes_requested, 1);
    json_kv(&b, "live_bytes", live > 0 ? (uint64_t)live : 0, 1);
    json_kv(&b, "peak_live_bytes", pl > 0 ? (uint64_t)pl : 0, 1);
    json_kv(&b, "mapped_bytes", mapped > 0 ? (uint64_t)mapped : 0, 1);
    json_kv(&b, "peak_mapped_bytes", pm > 0 ? (uint64_t)pm : 0, 1);
    json_kv(&b, "peak_rss_bytes", peak_rss(), 1);
    pa_buf_str(&b, "\"peak_mapped_over_peak_live\": ");
    pa_buf_f(&b, pl > 0 ? (double)pm / (double)pl : 0.0, 4);
    pa_buf_str(&b, ", \"size_classes\": [");
    for (int c = 0; c < pa_g.nclasses; c++) {
        pa_buf_str(&b, c ? ", {" : "{");
        json_kv(&b, "size", pa_g.cls_size[c], 1);
        json_kv(&b, "requests", k.c.small_allocs[c], 0);
        pa_buf_str(&b, "}");
    }
    pa_buf_str(&b, "], ");
    json_kv(&b, "medium_requests", k.c.medium_allocs, 1);
    json_kv(&b, "huge_requests", k.c.huge_allocs, 1);
    pa_buf_str(&b, "\"spans\": {");
    json_kv(&b, "in_use", spans, 1);
    json_kv(&b, "empty_kept", dirty, 1);
    json_kv(&b, "span_bytes", PA_SPAN_SIZE, 0);
    pa_buf_str(&b, "}, \"huge\": {");
    json_kv(&b, "blocks", hb, 1);
    json_kv(&b, "bytes", hbytes, 0);
    pa_buf_str(&b, "}, \"pools\": [");
    uint64_t tfree = 0, tlargest = 0;
    int first = 1;
    for (int a = 0; a < pa_g.narenas; a++) {
        if (!pools[a].present)
            continue;
        pa_buf_str(&b, first ? "{" : ", {");
        first = 0;
        json_kv(&b, "arena", (uint64_t)a, 1);
        json_kv(&b, "used", pools[a].used, 1);
        json_kv(&b, "free", pools[a].free, 1);
        json_kv(&b, "committed", pools[a].committed, 1);
        json_kv(&b, "peak_committed", pools[a].peak_committed, 1);
        json_kv(&b, "largest_free", pools[a].largest, 1);
        json_kv(&b, "free_blocks", pools[a].nfree, 1);
        json_kv(&b, "live_blocks", pools[a].nlive, 1);
        pa_buf_str(&b, "\"fragmentation\": ");
        pa_buf_f(&b, pools[a].frag, 4);
        pa_buf_str(&b, "}");
        tfree += pools[a].free;
        if (pools[a].largest > tlargest)
            tlargest = pools[a].largest;
    }
    pa_buf_str(&b, "], \"fragmentation\": ");
    double frag = tfree ? 1.0 - (double)(tlargest < tfree ? tlargest : tfree) / (double)tfree : 0.0;
    pa_buf_f(&b, frag, 4);
    pa_buf_str(&b, "}\n");
    pa_write_all(fd, b.p, b.len);
}

void pa_stats_report_text_now(void) { report_text(2); }

void pa_stats_report(void)
{
    int e = errno;
    if (pa_g.stats == 1) {
        report_text(pa_g.stats_fd);
    } else if (pa_g.stats == 3) {
        report_json(pa_g.stats_fd);
    } else if (pa_g.stats == 2) {
        char path[600];
        pa_expand_path(pa_g.stats_path, path, sizeof path);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            pa_write_err("pyalloc: warning: cannot write PYALLOC_STATS file ");
            pa_write_err(path);
            pa_write_err("; statistics follow on stderr\n");
            report_text(2);
        } else {
            report_json(fd);
            close(fd);
        }
    }
    errno = e;
}
