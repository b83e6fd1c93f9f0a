/* poolmodule.c - pyalloc._pool: Pool, Slab and Block as CPython types over the C core.
 *
 * The Python API (pyalloc/pool.py re-exports these types) with every check in C and one
 * Python object per block. Safety rules (none of them may be broken by any call sequence):
 *
 * - A Block is live from its allocation until it is freed, moved by realloc, or its pool is
 *   closed or reset. A dead block's memory is never reachable through it: its buffer, view()
 *   and address raise AllocError. "Live" is block->live and block->epoch == pool->epoch (close
 *   and reset bump the pool's epoch, which kills every block at once without a table).
 * - Block implements the buffer protocol: memoryview(block), block.view(), numpy.frombuffer
 *   (block) are zero-copy. Every export is counted on the block and on its pool: freeing or
 *   resizing a block with exports, and closing or resetting a pool with any, raise BufferError.
 *   An export holds the block, the block holds its pool, so memory is never unmapped under a
 *   view.
 * - Pointers given to the core come from live blocks of that very pool, or (free_many) are
 *   checked first: inside the arena, aligned, an offset alloc_many handed out and that is not
 *   freed yet (a bitmap), and a live block by the core's header tags.
 * - The GIL serialises everything: the core runs without its own lock (PA_NOLOCK) and no
 *   method calls back into Python while the pool is in an intermediate state (arguments are
 *   converted to C values before the pool is touched).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "pyalloc.h"

#define KIND_POOL 0
#define KIND_SLAB 1

static PyObject *AllocError;
static PyObject *array_Q_template; /* array.array('Q', [0]) for results */

typedef struct {
    PyObject_HEAD
    int kind;
    int closed;
    int policy;
    pa_pool *pool;
    pa_slab *slab;
    char *base;
    size_t capacity;
    size_t block_size;
    uint64_t epoch;       /* bumped by close and reset: blocks of an older epoch are dead */
    Py_ssize_t exports;   /* buffer exports of all its blocks */
    Py_ssize_t handles;   /* live Block objects */
    uint64_t *owned;      /* pools: one bit per 16 bytes, set for offsets Block objects hold */
    uint64_t *anon;       /* ... and for the offsets of alloc_many's blocks, until freed */
    size_t owned_bytes;
    PyObject *weakreflist;
} PoolObject;

typedef struct {
    PyObject_HEAD
    PoolObject *owner;
    char *ptr;
    Py_ssize_t offset;
    Py_ssize_t size;
    Py_ssize_t requested;
    uint64_t epoch;
    int live;
    Py_ssize_t exports;
    PyObject *weakreflist;
} BlockObject;

static PyTypeObject PoolType;
static PyTypeObject SlabType;
static PyTypeObject BlockType;

static const char *kind_name(const PoolObject *p) { return p->kind == KIND_POOL ? "pool" : "slab"; }

static int block_is_live(const BlockObject *b)
{
    return b->live && b->epoch == b->owner->epoch && !b->owner->closed;
}

/* ---- arguments -------------------------------------------------------------------------- */

/* An int argument in [min, max]; 0, or -1 with TypeError/ValueError naming it. */
static int int_arg(PyObject *o, const char *name, long long min, unsigned long long max,
                   unsigned long long *out)
{
    if (PyBool_Check(o) || !PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", name, Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow < 0 || (!overflow && v < min)) {
        PyErr_Format(PyExc_ValueError, "%s must be >= %lld, got %R", name, min, o);
        return -1;
    }
    if (overflow > 0 || (unsigned long long)v > max) {
        PyErr_Format(PyExc_ValueError, "%s must be <= %llu, got %R", name, max, o);
        return -1;
    }
    *out = (unsigned long long)v;
    return 0;
}

static int require_open(PoolObject *p)
{
    if (p->closed) {
        PyErr_Format(AllocError, "%s is closed", kind_name(p));
        return -1;
    }
    return 0;
}

/* ---- the owned-offset bitmap (pools) ------------------------------------------------------ */

/* Both bitmaps in one lazily committed mapping: pages are touched only where blocks are. */
static int owned_init(PoolObject *p)
{
    size_t bits = p->capacity / PA_ALIGN + 1;
    size_t bytes = ((bits + 63) / 64) * 8;
    void *m = mmap(NULL, 2 * bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    p->owned = m;
    p->anon = (uint64_t *)((char *)m + bytes);
    p->owned_bytes = bytes;
    return 0;
}

static inline void bit_set(uint64_t *map, size_t offset)
{
    size_t i = offset / PA_ALIGN;
    map[i / 64] |= (uint64_t)1 << (i % 64);
}

static inline void bit_clear(uint64_t *map, size_t offset)
{
    size_t i = offset / PA_ALIGN;
    map[i / 64] &= ~((uint64_t)1 << (i % 64));
}

static inline int bit_test(const uint64_t *map, size_t offset)
{
    size_t i = offset / PA_ALIGN;
    return (int)((map[i / 64] >> (i % 64)) & 1);
}

#define owned_set(p, off) bit_set((p)->owned, (size_t)(off))
#define owned_clear(p, off) bit_clear((p)->owned, (size_t)(off))

static void owned_reset(PoolObject *p)
{
    if (p->owned) /* private anonymous memory reads as zeros again */
        madvise(p->owned, 2 * p->owned_bytes, MADV_DONTNEED);
}

/* ---- Block -------------------------------------------------------------------------------- */

static BlockObject *new_block(PoolObject *p, char *ptr, size_t usable, size_t requested)
{
    BlockObject *b = PyObject_New(BlockObject, &BlockType);
    if (!b)
        return NULL;
    Py_INCREF(p);
    b->owner = p;
    b->ptr = ptr;
    b->offset = (Py_ssize_t)(ptr - p->base);
    b->size = (Py_ssize_t)usable;
    b->requested = (Py_ssize_t)requested;
    b->epoch = p->epoch;
    b->live = 1;
    b->exports = 0;
    b->weakreflist = NULL;
    p->handles++;
    if (p->owned)
        owned_set(p, b->offset);
    return b;
}

static void block_dealloc(BlockObject *b)
{
    if (b->weakreflist)
        PyObject_ClearWeakRefs((PyObject *)b);
    /* A live block dropped without free stays allocated (as before): the pool keeps it until
     * it is closed or reset, and free_many cannot take it (its owned bit stays set). */
    if (block_is_live(b))
        b->owner->handles--;
    Py_DECREF(b->owner);
    PyObject_Free(b);
}

static int dead_error(const BlockObject *b)
{
    PyErr_Format(AllocError, "block at offset %zd is no longer live", b->offset);
    return -1;
}

static int block_getbuffer(BlockObject *b, Py_buffer *view, int flags)
{
    if (!block_is_live(b))
        return dead_error(b);
    if (PyBuffer_FillInfo(view, (PyObject *)b, b->ptr, b->size, 0, flags) < 0)
        return -1;
    b->exports++;
    b->owner->exports++;
    return 0;
}

static void block_releasebuffer(BlockObject *b, Py_buffer *view)
{
    (void)view;
    b->exports--;
    b->owner->exports--;
}

static PyBufferProcs block_as_buffer = {
    (getbufferproc)block_getbuffer,
    (releasebufferproc)block_releasebuffer,
};

static PyObject *block_view(BlockObject *b, PyObject *Py_UNUSED(ignored))
{
    return PyMemoryView_FromObject((PyObject *)b);
}

static PyObject *pool_free(PoolObject *p, PyObject *arg);

static PyObject *block_free(BlockObject *b, PyObject *Py_UNUSED(ignored))
{
    return pool_free(b->owner, (PyObject *)b);
}

static PyObject *block_get_live(BlockObject *b, void *c)
{
    (void)c;
    return PyBool_FromLong(block_is_live(b));
}

static PyObject *block_get_address(BlockObject *b, void *c)
{
    (void)c;
    if (!block_is_live(b)) {
        dead_error(b);
        return NULL;
    }
    return PyLong_FromVoidPtr(b->ptr);
}

static PyObject *block_get_pool(BlockObject *b, void *c)
{
    (void)c;
    Py_INCREF(b->owner);
    return (PyObject *)b->owner;
}

static Py_ssize_t block_len(BlockObject *b) { return b->size; }

static PyObject *block_repr(BlockObject *b)
{
    return PyUnicode_FromFormat("<pyalloc.Block offset=%zd size=%zd %s>", b->offset, b->size,
                                block_is_live(b) ? "live" : "dead");
}

static PyMethodDef block_methods[] = {
    {"view", (PyCFunction)block_view, METH_NOARGS,
     "A writable zero-copy memoryview of the block's size bytes."},
    {"free", (PyCFunction)block_free, METH_NOARGS, "Same as pool.free(block)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef block_members[] = {
    {"offset", T_PYSSIZET, offsetof(BlockObject, offset), READONLY,
     "payload offset from the pool's base address"},
    {"size", T_PYSSIZET, offsetof(BlockObject, size), READONLY, "usable size in bytes"},
    {"requested", T_PYSSIZET, offsetof(BlockObject, requested), READONLY,
     "the size asked for"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef block_getset[] = {
    {"live", (getter)block_get_live, NULL,
     "True until the block is freed, moved by realloc, or its pool is closed or reset", NULL},
    {"address", (getter)block_get_address, NULL,
     "the payload's address (AllocError once the block is dead)", NULL},
    {"pool", (getter)block_get_pool, NULL, "the Pool or Slab the block belongs to", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods block_as_sequence = {
    .sq_length = (lenfunc)block_len,
};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyalloc.Block",
    .tp_basicsize = sizeof(BlockObject),
    .tp_dealloc = (destructor)block_dealloc,
    .tp_repr = (reprfunc)block_repr,
    .tp_as_sequence = &block_as_sequence,
    .tp_as_buffer = &block_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A live allocation: offset from the pool's base, usable size, and its memory "
              "(the buffer protocol: memoryview(block), numpy.frombuffer(block)).",
    .tp_weaklistoffset = offsetof(BlockObject, weakreflist),
    .tp_methods = block_methods,
    .tp_members = block_members,
    .tp_getset = block_getset,
};

/* ---- checks shared by free and realloc ------------------------------------------------------ */

/* `arg` is a live block of `p` without exports; returns it, or NULL with the error. */
static BlockObject *retire_check(PoolObject *p, PyObject *arg, const char *action)
{
    if (Py_TYPE(arg) != &BlockType) {
        PyErr_Format(PyExc_TypeError, "block must be a pyalloc.Block, not %.200s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    BlockObject *b = (BlockObject *)arg;
    if (b->owner != p) {
        PyErr_Format(AllocError, "cannot %s a block of another %s", action, kind_name(b->owner));
        return NULL;
    }
    if (require_open(p) < 0)
        return NULL;
    if (!block_is_live(b)) {
        PyErr_Format(AllocError, "cannot %s block at offset %zd: not live (double free?)",
                     action, b->offset);
        return NULL;
    }
    if (b->exports) {
        PyErr_Format(PyExc_BufferError, "cannot %s block at offset %zd: %zd view(s) still "
                     "exported", action, b->offset, b->exports);
        return NULL;
    }
    return b;
}

static void kill_block(PoolObject *p, BlockObject *b)
{
    b->live = 0;
    p->handles--;
    if (p->owned)
        owned_clear(p, b->offset);
}

/* ---- Pool / Slab --------------------------------------------------------------------------- */

static PyObject *pool_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"capacity", "policy", "trim_threshold", "hugepages", NULL};
    PyObject *cap_o = NULL, *policy_o = NULL, *trim_o = Py_None;
    int hugepages = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO$Op:Pool", kwlist, &cap_o, &policy_o,
                                     &trim_o, &hugepages))
        return NULL;
    unsigned long long capacity = 64ull << 20, trim = 0;
    if (cap_o && int_arg(cap_o, "capacity", 1, PA_POOL_MAX_CAPACITY, &capacity) < 0)
        return NULL;
    int policy = PA_BEST;
    if (policy_o) {
        if (!PyUnicode_Check(policy_o)) {
            PyErr_Format(PyExc_TypeError, "policy must be a str, not %.200s",
                         Py_TYPE(policy_o)->tp_name);
            return NULL;
        }
        const char *name = PyUnicode_AsUTF8(policy_o);
        if (!name)
            return NULL;
        policy = pa_policy_from_name(name);
        if (policy < 0) {
            PyErr_Format(PyExc_ValueError,
                         "policy must be one of best, worst, first, fifo; got %R", policy_o);
            return NULL;
        }
    }
    if (trim_o != Py_None && int_arg(trim_o, "trim_threshold", 0, PA_POOL_MAX_CAPACITY, &trim) < 0)
        return NULL;
    PoolObject *p = (PoolObject *)type->tp_alloc(type, 0);
    if (!p)
        return NULL;
    p->kind = KIND_POOL;
    p->policy = policy;
    p->pool = pa_pool_create((size_t)capacity, policy, PA_NOLOCK | (hugepages ? PA_HUGEPAGE : 0));
    if (!p->pool) {
        int e = errno;
        Py_DECREF(p);
        PyErr_Format(PyExc_MemoryError, "cannot reserve a pool of %llu bytes (errno %d)",
                     capacity, e);
        return NULL;
    }
    p->base = pa_pool_base(p->pool);
    p->capacity = pa_pool_capacity(p->pool);
    if (trim_o != Py_None)
        pa_pool_set_trim_threshold(p->pool, (size_t)trim);
    if (owned_init(p) < 0) {
        Py_DECREF(p);
        return PyErr_NoMemory();
    }
    return (PyObject *)p;
}

static PyObject *slab_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"block_size", "capacity", NULL};
    PyObject *bs_o = NULL, *cap_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:Slab", kwlist, &bs_o, &cap_o))
        return NULL;
    unsigned long long bs = 64, capacity = 1 << 20;
    if (bs_o && int_arg(bs_o, "block_size", 1, 1ull << 40, &bs) < 0)
        return NULL;
    if (cap_o && int_arg(cap_o, "capacity", 1, PA_POOL_MAX_CAPACITY, &capacity) < 0)
        return NULL;
    if (capacity < bs) {
        PyErr_Format(PyExc_ValueError, "capacity (%llu) must be >= block_size (%llu)", capacity,
                     bs);
        return NULL;
    }
    PoolObject *p = (PoolObject *)type->tp_alloc(type, 0);
    if (!p)
        return NULL;
    p->kind = KIND_SLAB;
    p->slab = pa_slab_create((size_t)bs, (size_t)capacity, PA_NOLOCK);
    if (!p->slab) {
        int e = errno;
        Py_DECREF(p);
        PyErr_Format(PyExc_MemoryError, "cannot map a slab of %llu bytes (errno %d)", capacity, e);
        return NULL;
    }
    p->base = pa_slab_base(p->slab);
    p->capacity = pa_slab_capacity(p->slab);
    p->block_size = pa_slab_block_size(p->slab);
    return (PyObject *)p;
}

static void release_memory(PoolObject *p)
{
    if (p->pool)
        pa_pool_destroy(p->pool);
    if (p->slab)
        pa_slab_destroy(p->slab);
    p->pool = NULL;
    p->slab = NULL;
    if (p->owned)
        munmap(p->owned, 2 * p->owned_bytes);
    p->owned = NULL;
    p->anon = NULL;
}

static void pool_dealloc(PoolObject *p)
{
    if (p->weakreflist)
        PyObject_ClearWeakRefs((PyObject *)p);
    release_memory(p); /* no block and no view can exist: each holds a reference */
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyObject *largest_free_error(PoolObject *p, size_t size)
{
    pa_stats st;
    pa_pool_stats(p->pool, &st);
    return PyErr_Format(PyExc_MemoryError, "pool exhausted: no free block for %zu bytes "
                        "(largest free block: %llu bytes)", size,
                        (unsigned long long)st.largest_free);
}

static PyObject *pool_alloc(PoolObject *p, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    unsigned long long size, align = 0;
    if (nargs == 1 && !kwnames && PyLong_CheckExact(args[0])) { /* the common call */
        Py_ssize_t n = PyLong_AsSsize_t(args[0]);
        if (n < 0 || (size_t)n > PA_POOL_MAX_CAPACITY) {
            if (n == -1 && PyErr_Occurred())
                PyErr_Clear();
            if (int_arg(args[0], "size", 0, PA_POOL_MAX_CAPACITY, &size) < 0)
                return NULL;
        }
        size = (unsigned long long)n;
    } else {
        static const char *const names[] = {"size", "align"};
        PyObject *vals[2] = {NULL, NULL};
        Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
        if (nargs > 1) {
            PyErr_Format(PyExc_TypeError, "alloc() takes 1 positional argument (%zd given)", nargs);
            return NULL;
        }
        if (nargs == 1)
            vals[0] = args[0];
        for (Py_ssize_t i = 0; i < nkw; i++) {
            const char *k = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, i));
            if (!k)
                return NULL;
            int slot = strcmp(k, names[0]) == 0 ? 0 : strcmp(k, names[1]) == 0 ? 1 : -1;
            if (slot < 0 || vals[slot]) {
                PyErr_Format(PyExc_TypeError, "alloc() got an unexpected or repeated keyword "
                             "argument '%s'", k);
                return NULL;
            }
            vals[slot] = args[nargs + i];
        }
        if (!vals[0]) {
            PyErr_SetString(PyExc_TypeError, "alloc() missing required argument 'size'");
            return NULL;
        }
        if (int_arg(vals[0], "size", 0, PA_POOL_MAX_CAPACITY, &size) < 0)
            return NULL;
        if (vals[1] && vals[1] != Py_None) {
            if (int_arg(vals[1], "align", 1, PA_MAX_ALIGN, &align) < 0)
                return NULL;
            if (align & (align - 1)) {
                PyErr_Format(PyExc_ValueError, "align must be a power of two, got %llu", align);
                return NULL;
            }
        }
    }
    if (require_open(p) < 0)
        return NULL;
    size_t usable;
    char *ptr = pa_pool_alloc_ex(p->pool, (size_t)size, (size_t)align, &usable);
    if (!ptr)
        return largest_free_error(p, (size_t)size);
    BlockObject *b = new_block(p, ptr, usable, (size_t)size);
    if (!b)
        pa_pool_free(p->pool, ptr);
    return (PyObject *)b;
}

static PyObject *pool_free(PoolObject *p, PyObject *arg)
{
    BlockObject *b = retire_check(p, arg, "free");
    if (!b)
        return NULL;
    int rc = p->kind == KIND_POOL ? pa_pool_free(p->pool, b->ptr) : pa_slab_free(p->slab, b->ptr);
    kill_block(p, b);
    if (rc != 0)
        return PyErr_Format(AllocError, "the C %s refused to free offset %zd", kind_name(p),
                            b->offset);
    Py_RETURN_NONE;
}

static PyObject *pool_realloc(PoolObject *p, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "realloc() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    unsigned long long size;
    if (int_arg(args[1], "size", 0, PA_POOL_MAX_CAPACITY, &size) < 0)
        return NULL;
    BlockObject *b = retire_check(p, args[0], "resize");
    if (!b)
        return NULL;
    size_t usable;
    char *ptr = pa_pool_realloc_ex(p->pool, b->ptr, (size_t)size, &usable);
    if (!ptr)
        return PyErr_Format(PyExc_MemoryError, "pool exhausted: cannot resize block at offset "
                            "%zd to %llu bytes", b->offset, size);
    kill_block(p, b);
    BlockObject *nb = new_block(p, ptr, usable, (size_t)size);
    if (!nb) /* the data is in ptr: keep it reachable rather than lose it */
        pa_pool_free(p->pool, ptr);
    return (PyObject *)nb;
}

static PyObject *slab_alloc(PoolObject *p, PyObject *Py_UNUSED(ignored))
{
    if (require_open(p) < 0)
        return NULL;
    char *ptr = pa_slab_alloc(p->slab);
    if (!ptr)
        return PyErr_Format(PyExc_MemoryError, "slab exhausted: all %zu blocks are live",
                            p->capacity / p->block_size);
    BlockObject *b = new_block(p, ptr, p->block_size, p->block_size);
    if (!b)
        pa_slab_free(p->slab, ptr);
    return (PyObject *)b;
}

/* ---- batches -------------------------------------------------------------------------------- */

/* The integers of `obj` (a buffer of integers, or any iterable of ints) as a new C array;
 * NULL with the error. */
static uint64_t *int_vector(PyObject *obj, const char *name, Py_ssize_t *n_out)
{
    if (PyObject_CheckBuffer(obj)) {
        Py_buffer v;
        if (PyObject_GetBuffer(obj, &v, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
            return NULL;
        const char *f = v.format ? v.format : "B";
        if (*f == '@' || *f == '=')
            f++;
        char c = f[0];
        int ok = f[0] && !f[1] && strchr("bBhHiIlLqQnN", c) != NULL;
        if (!ok || v.itemsize <= 0) {
            PyErr_Format(PyExc_TypeError, "%s: a buffer of integers is needed, not format '%s'",
                         name, v.format ? v.format : "B");
            PyBuffer_Release(&v);
            return NULL;
        }
        Py_ssize_t n = v.len / v.itemsize;
        uint64_t *out = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(uint64_t));
        if (!out) {
            PyBuffer_Release(&v);
            PyErr_NoMemory();
            return NULL;
        }
        int is_signed = strchr("bhilqn", c) != NULL;
        for (Py_ssize_t i = 0; i < n; i++) {
            const char *e = (const char *)v.buf + i * v.itemsize;
            long long s = 0;
            unsigned long long u = 0;
            switch (v.itemsize) {
            case 1: s = *(const signed char *)e; u = *(const unsigned char *)e; break;
            case 2: { int16_t a; uint16_t b; memcpy(&a, e, 2); memcpy(&b, e, 2); s = a; u = b; break; }
            case 4: { int32_t a; uint32_t b; memcpy(&a, e, 4); memcpy(&b, e, 4); s = a; u = b; break; }
            default: { int64_t a; uint64_t b; memcpy(&a, e, 8); memcpy(&b, e, 8); s = a; u = b; break; }
            }
            if (is_signed && s < 0) {
                PyErr_Format(PyExc_ValueError, "%s[%zd] must be >= 0, got %lld", name, i, s);
                PyMem_Free(out);
                PyBuffer_Release(&v);
                return NULL;
            }
            out[i] = is_signed ? (uint64_t)s : u;
            if (out[i] > PA_POOL_MAX_CAPACITY) {
                PyErr_Format(PyExc_ValueError, "%s[%zd] must be <= %llu, got %llu", name, i,
                             (unsigned long long)PA_POOL_MAX_CAPACITY,
                             (unsigned long long)out[i]);
                PyMem_Free(out);
                PyBuffer_Release(&v);
                return NULL;
            }
        }
        PyBuffer_Release(&v);
        *n_out = n;
        return out;
    }
    PyObject *seq = PySequence_Fast(obj, "a sequence or a buffer of integers is needed");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    uint64_t *out = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(uint64_t));
    if (!out) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long u;
        if (PyLong_CheckExact(items[i])) { /* the common case, without building a label */
            int overflow;
            long long v = PyLong_AsLongLongAndOverflow(items[i], &overflow);
            if (!overflow && v >= 0 && (unsigned long long)v <= PA_POOL_MAX_CAPACITY) {
                out[i] = (uint64_t)v;
                continue;
            }
            PyErr_Clear();
        }
        char label[64];
        snprintf(label, sizeof label, "%s[%zd]", name, i);
        if (int_arg(items[i], label, 0, PA_POOL_MAX_CAPACITY, &u) < 0) {
            PyMem_Free(out);
            Py_DECREF(seq);
            return NULL;
        }
        out[i] = u;
    }
    Py_DECREF(seq);
    *n_out = n;
    return out;
}

/* A new array.array('Q') of n zeros and a pointer to its items. */
static PyObject *new_offsets(Py_ssize_t n, uint64_t **items)
{
    PyObject *count = PyLong_FromSsize_t(n);
    if (!count)
        return NULL;
    PyObject *arr = PyNumber_Multiply(array_Q_template, count);
    Py_DECREF(count);
    if (!arr)
        return NULL;
    Py_buffer v;
    if (PyObject_GetBuffer(arr, &v, PyBUF_WRITABLE) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    *items = v.buf;
    PyBuffer_Release(&v); /* the array is ours alone: its storage does not move */
    return arr;
}

static PyObject *pool_alloc_many(PoolObject *p, PyObject *sizes)
{
    Py_ssize_t n;
    uint64_t *want = int_vector(sizes, "sizes", &n);
    if (!want)
        return NULL;
    uint64_t *offs;
    PyObject *arr = new_offsets(n, &offs);
    if (!arr || require_open(p) < 0) {
        PyMem_Free(want);
        Py_XDECREF(arr);
        return NULL;
    }
    if (pa_pool_alloc_batch(p->pool, want, (size_t)n, offs) != 0) {
        size_t total = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            total += (size_t)want[i];
        PyObject *err = largest_free_error(p, total);
        PyMem_Free(want);
        Py_DECREF(arr);
        return err;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        bit_set(p->anon, (size_t)offs[i]);
    PyMem_Free(want);
    return arr;
}

static PyObject *pool_free_many(PoolObject *p, PyObject *offsets)
{
    Py_ssize_t n;
    uint64_t *offs = int_vector(offsets, "offsets", &n);
    if (!offs)
        return NULL;
    if (require_open(p) < 0) {
        PyMem_Free(offs);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t o = offs[i];
        const char *why = NULL;
        if (o >= p->capacity || o % PA_ALIGN)
            why = "not a block offset of this pool";
        else if (bit_test(p->owned, (size_t)o))
            why = "held by a Block object (free it with pool.free)";
        else if (!bit_test(p->anon, (size_t)o) || pa_pool_free(p->pool, p->base + o) != 0)
            why = "not a live block of alloc_many (double free?)";
        else
            bit_clear(p->anon, (size_t)o);
        if (why) {
            PyMem_Free(offs);
            return PyErr_Format(AllocError, "free_many: offsets[%zd] = %llu is %s; the %zd "
                                "before it were freed", i, (unsigned long long)o, why, i);
        }
    }
    PyMem_Free(offs);
    Py_RETURN_NONE;
}

static PyObject *pool_reset(PoolObject *p, PyObject *Py_UNUSED(ignored))
{
    if (require_open(p) < 0)
        return NULL;
    if (p->exports)
        return PyErr_Format(PyExc_BufferError, "cannot reset %s: %zd view(s) still exported",
                            kind_name(p), p->exports);
    size_t n = pa_pool_reset(p->pool);
    p->epoch++;
    p->handles = 0;
    owned_reset(p);
    return PyLong_FromSize_t(n);
}

/* ---- introspection --------------------------------------------------------------------------- */

static int set_u64(PyObject *d, const char *k, uint64_t v)
{
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    if (!o)
        return -1;
    int rc = PyDict_SetItemString(d, k, o);
    Py_DECREF(o);
    return rc;
}

static PyObject *pool_stats(PoolObject *p, PyObject *Py_UNUSED(ignored))
{
    if (require_open(p) < 0)
        return NULL;
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    if (p->kind == KIND_SLAB) {
        pa_slab_stats s;
        pa_slab_stats_get(p->slab, &s);
        if (set_u64(d, "capacity", s.capacity) || set_u64(d, "block_size", s.block_size) ||
            set_u64(d, "blocks", s.blocks) || set_u64(d, "live_blocks", s.live_blocks) ||
            set_u64(d, "peak_live_blocks", s.peak_live_blocks) || set_u64(d, "used", s.used) ||
            set_u64(d, "free", s.free) || set_u64(d, "allocs", s.allocs) ||
            set_u64(d, "frees", s.frees) || set_u64(d, "failed_allocs", s.failed_allocs) ||
            set_u64(d, "invalid_frees", s.invalid_frees))
            goto fail;
        return d;
    }
    pa_stats s;
    pa_pool_stats(p->pool, &s);
    if (set_u64(d, "capacity", s.capacity) || set_u64(d, "used", s.used) ||
        set_u64(d, "free", s.free) || set_u64(d, "overhead", s.overhead) ||
        set_u64(d, "largest_free", s.largest_free) || set_u64(d, "free_blocks", s.free_blocks) ||
        set_u64(d, "live_blocks", s.live_blocks) || set_u64(d, "peak_used", s.peak_used) ||
        set_u64(d, "committed", s.committed) || set_u64(d, "peak_committed", s.peak_committed) ||
        set_u64(d, "allocs", s.allocs) || set_u64(d, "frees", s.frees) ||
        set_u64(d, "reallocs", s.reallocs) || set_u64(d, "failed_allocs", s.failed_allocs) ||
        set_u64(d, "invalid_frees", s.invalid_frees) || set_u64(d, "trims", s.trims) ||
        set_u64(d, "top", s.top))
        goto fail;
    PyObject *f = PyFloat_FromDouble(s.fragmentation);
    if (!f || PyDict_SetItemString(d, "fragmentation", f) < 0) {
        Py_XDECREF(f);
        goto fail;
    }
    Py_DECREF(f);
    PyObject *name = PyUnicode_FromString(pa_policy_name(p->policy));
    if (!name || PyDict_SetItemString(d, "policy", name) < 0) {
        Py_XDECREF(name);
        goto fail;
    }
    Py_DECREF(name);
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

static PyObject *block_list(PoolObject *p, int free_set)
{
    if (require_open(p) < 0)
        return NULL;
    size_t (*fn)(pa_pool *, pa_block_info *, size_t) =
        free_set ? pa_pool_free_blocks : pa_pool_live_blocks;
    size_t n = fn(p->pool, NULL, 0);
    pa_block_info *all = PyMem_Malloc((n ? n : 1) * sizeof *all);
    if (!all)
        return PyErr_NoMemory();
    n = fn(p->pool, all, n);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *t = free_set ? Py_BuildValue("(KKK)", (unsigned long long)all[i].offset,
                                               (unsigned long long)all[i].size,
                                               (unsigned long long)all[i].seq)
                               : Py_BuildValue("(KK)", (unsigned long long)all[i].offset,
                                               (unsigned long long)all[i].size);
        if (!t) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    PyMem_Free(all);
    return list;
}

static PyObject *pool_free_blocks(PoolObject *p, PyObject *Py_UNUSED(x)) { return block_list(p, 1); }
static PyObject *pool_live_blocks(PoolObject *p, PyObject *Py_UNUSED(x)) { return block_list(p, 0); }

static PyObject *pool_trim(PoolObject *p, PyObject *Py_UNUSED(ignored))
{
    if (require_open(p) < 0)
        return NULL;
    return PyLong_FromSize_t(pa_pool_trim(p->pool));
}

static PyObject *pool_check(PoolObject *p, PyObject *Py_UNUSED(ignored))
{
    if (require_open(p) < 0)
        return NULL;
    int rc = pa_pool_check(p->pool);
    if (rc)
        return PyErr_Format(AllocError, "pool is inconsistent: %s", pa_check_message(rc));
    Py_RETURN_NONE;
}

static PyObject *pool_close(PoolObject *p, PyObject *Py_UNUSED(ignored))
{
    if (p->closed)
        Py_RETURN_NONE;
    if (p->exports)
        return PyErr_Format(PyExc_BufferError, "cannot close %s: %zd view(s) still exported",
                            kind_name(p), p->exports);
    p->closed = 1;
    p->epoch++;
    p->handles = 0;
    release_memory(p);
    Py_RETURN_NONE;
}

static PyObject *pool_enter(PyObject *p, PyObject *Py_UNUSED(ignored))
{
    Py_INCREF(p);
    return p;
}

static PyObject *pool_exit(PoolObject *p, PyObject *Py_UNUSED(args))
{
    return pool_close(p, NULL);
}

static PyObject *pool_live_count(PoolObject *p, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(p->handles);
}

static PyObject *pool_repr(PoolObject *p)
{
    if (p->kind == KIND_SLAB) {
        if (p->closed)
            return PyUnicode_FromFormat("<pyalloc.Slab block_size=%zu capacity=%zu closed>",
                                        p->block_size, p->capacity);
        return PyUnicode_FromFormat("<pyalloc.Slab block_size=%zu capacity=%zu %zd live blocks>",
                                    p->block_size, p->capacity, p->handles);
    }
    if (p->closed)
        return PyUnicode_FromFormat("<pyalloc.Pool policy=%s capacity=%zu closed>",
                                    pa_policy_name(p->policy), p->capacity);
    return PyUnicode_FromFormat("<pyalloc.Pool policy=%s capacity=%zu %zd live blocks>",
                                pa_policy_name(p->policy), p->capacity, p->handles);
}

static PyObject *pool_get_closed(PoolObject *p, void *c)
{
    (void)c;
    return PyBool_FromLong(p->closed);
}

static PyObject *pool_get_base(PoolObject *p, void *c)
{
    (void)c;
    return PyLong_FromVoidPtr(p->base);
}

static PyObject *pool_get_policy(PoolObject *p, void *c)
{
    (void)c;
    return PyUnicode_FromString(pa_policy_name(p->policy));
}

static PyObject *pool_get_capacity(PoolObject *p, void *c)
{
    (void)c;
    return PyLong_FromSize_t(p->capacity);
}

static PyObject *pool_get_block_size(PoolObject *p, void *c)
{
    (void)c;
    return PyLong_FromSize_t(p->block_size);
}

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f)

static PyMethodDef pool_methods[] = {
    {"alloc", FASTCALL(pool_alloc), METH_FASTCALL | METH_KEYWORDS,
     "alloc(size, *, align=None) -> Block: at least size bytes (aligned to align, a power "
     "of two). MemoryError when no free block fits."},
    {"free", (PyCFunction)pool_free, METH_O,
     "free(block): returns the block. AllocError for a dead or foreign block, BufferError "
     "while views of it exist."},
    {"realloc", FASTCALL(pool_realloc), METH_FASTCALL,
     "realloc(block, size) -> Block: resized (in place where possible); the argument is dead "
     "afterwards unless returned again; on MemoryError it stays live and unchanged."},
    {"alloc_many", (PyCFunction)pool_alloc_many, METH_O,
     "alloc_many(sizes) -> array('Q') of offsets: one block per size (sizes: a sequence or a "
     "buffer of integers), placed as one request (the block the policy picks for their sum, "
     "carved in order from its low end); all or none. The blocks have no Block objects: free "
     "them with free_many or reset."},
    {"free_many", (PyCFunction)pool_free_many, METH_O,
     "free_many(offsets): frees, in order, blocks that alloc_many returned; stops with "
     "AllocError at the first offset that is not such a live block."},
    {"reset", (PyCFunction)pool_reset, METH_NOARGS,
     "reset() -> int: frees every block at once (Block objects become dead); BufferError "
     "while views exist. Returns how many blocks were freed."},
    {"free_blocks", (PyCFunction)pool_free_blocks, METH_NOARGS,
     "The free set as (offset, size, seq) tuples in address order."},
    {"live_blocks", (PyCFunction)pool_live_blocks, METH_NOARGS,
     "The live blocks as (offset, size) tuples in address order."},
    {"stats", (PyCFunction)pool_stats, METH_NOARGS,
     "capacity, used, free, largest_free, free_blocks, fragmentation, peak_used, counts."},
    {"trim", (PyCFunction)pool_trim, METH_NOARGS,
     "Returns every whole free page to the kernel now; the number of bytes released."},
    {"check", (PyCFunction)pool_check, METH_NOARGS,
     "Walks the whole pool checking every invariant; AllocError naming a broken one."},
    {"close", (PyCFunction)pool_close, METH_NOARGS,
     "Releases the memory; live blocks become dead. BufferError while views exist."},
    {"live_count", (PyCFunction)pool_live_count, METH_NOARGS, "Live Block objects."},
    {"__enter__", (PyCFunction)pool_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)pool_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef slab_methods[] = {
    {"alloc", (PyCFunction)slab_alloc, METH_NOARGS, "alloc() -> Block of block_size bytes."},
    {"free", (PyCFunction)pool_free, METH_O, "free(block)."},
    {"stats", (PyCFunction)pool_stats, METH_NOARGS, "The slab's counters."},
    {"close", (PyCFunction)pool_close, METH_NOARGS,
     "Releases the memory; live blocks become dead. BufferError while views exist."},
    {"live_count", (PyCFunction)pool_live_count, METH_NOARGS, "Live Block objects."},
    {"__enter__", (PyCFunction)pool_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)pool_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pool_getset[] = {
    {"closed", (getter)pool_get_closed, NULL, "True once closed", NULL},
    {"base_address", (getter)pool_get_base, NULL, "address that block offsets count from", NULL},
    {"policy", (getter)pool_get_policy, NULL, "the placement policy", NULL},
    {"capacity", (getter)pool_get_capacity, NULL, "bytes of the arena", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyGetSetDef slab_getset[] = {
    {"closed", (getter)pool_get_closed, NULL, "True once closed", NULL},
    {"base_address", (getter)pool_get_base, NULL, "address that block offsets count from", NULL},
    {"capacity", (getter)pool_get_capacity, NULL, "bytes of blocks", NULL},
    {"block_size", (getter)pool_get_block_size, NULL, "bytes per block", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PoolType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyalloc.Pool",
    .tp_basicsize = sizeof(PoolObject),
    .tp_dealloc = (destructor)pool_dealloc,
    .tp_repr = (reprfunc)pool_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Pool(capacity=64 MiB, policy='best', *, trim_threshold=None, hugepages=False): "
              "a variable-size pool in one mmap'd arena, placing blocks by an exact policy "
              "(best, worst, first, fifo).",
    .tp_weaklistoffset = offsetof(PoolObject, weakreflist),
    .tp_methods = pool_methods,
    .tp_getset = pool_getset,
    .tp_new = pool_new,
};

static PyTypeObject SlabType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyalloc.Slab",
    .tp_basicsize = sizeof(PoolObject),
    .tp_dealloc = (destructor)pool_dealloc,
    .tp_repr = (reprfunc)pool_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Slab(block_size=64, capacity=1 MiB): fixed-size blocks with O(1) alloc and free.",
    .tp_weaklistoffset = offsetof(PoolObject, weakreflist),
    .tp_methods = slab_methods,
    .tp_getset = slab_getset,
    .tp_new = slab_new,
};

/* ---- module ---------------------------------------------------------------------------------- */

static struct PyModuleDef pool_module = {
    PyModuleDef_HEAD_INIT, "pyalloc._pool",
    "Pool, Slab and Block over the C core (see pyalloc.pool).", -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pool(void)
{
    if (PyType_Ready(&BlockType) < 0 || PyType_Ready(&PoolType) < 0 ||
        PyType_Ready(&SlabType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&pool_module);
    if (!m)
        return NULL;
    AllocError = PyErr_NewExceptionWithDoc(
        "pyalloc.AllocError",
        "A block was used wrongly: double free, a block of another pool, use after "
        "free/close.", PyExc_ValueError, NULL);
    PyObject *array = PyImport_ImportModule("array");
    if (!AllocError || !array)
        goto fail;
    array_Q_template = PyObject_CallMethod(array, "array", "s[i]", "Q", 0);
    Py_DECREF(array);
    if (!array_Q_template)
        goto fail;
    Py_INCREF(AllocError);
    if (PyModule_AddObject(m, "AllocError", AllocError) < 0)
        goto fail;
    Py_INCREF(&PoolType);
    Py_INCREF(&SlabType);
    Py_INCREF(&BlockType);
    if (PyModule_AddObject(m, "Pool", (PyObject *)&PoolType) < 0 ||
        PyModule_AddObject(m, "Slab", (PyObject *)&SlabType) < 0 ||
        PyModule_AddObject(m, "Block", (PyObject *)&BlockType) < 0 ||
        PyModule_AddIntConstant(m, "ALIGNMENT", PA_ALIGN) < 0 ||
        PyModule_AddIntConstant(m, "HEADER", PA_HEADER) < 0 ||
        PyModule_AddIntConstant(m, "MIN_BLOCK", PA_MIN_BLOCK) < 0 ||
        PyModule_AddObject(m, "MAX_ALIGN", PyLong_FromSize_t(PA_MAX_ALIGN)) < 0 ||
        PyModule_AddObject(m, "MAX_CAPACITY", PyLong_FromSize_t(PA_POOL_MAX_CAPACITY)) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
