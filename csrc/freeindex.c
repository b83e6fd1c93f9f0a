/* freeindex.c - augmented AVL tree over free blocks; see freeindex.h. */
#include "freeindex.h"

#include "block.h"
#include "pyalloc.h"

static inline uint64_t node_size(const pa_node *n) { return pa_bsize((const char *)n - PA_HEADER); }
static inline uint32_t height(const pa_node *n) { return n ? n->height : 0; }
static inline uint64_t maxof(const pa_node *n) { return n ? n->max : 0; }

/* <0, 0, >0 as a sorts before, equal to, after b in the policy's key order. */
static inline int cmp(int policy, const pa_node *a, const pa_node *b)
{
    uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b;
    switch (policy) {
    case PA_BEST: {
        uint64_t sa = node_size(a), sb = node_size(b);
        if (sa != sb)
            return sa < sb ? -1 : 1;
        break;
    }
    case PA_WORST: {
        uint64_t sa = node_size(a), sb = node_size(b);
        if (sa != sb)
            return sa > sb ? -1 : 1;
        break;
    }
    case PA_FIFO:
        if (a->seq != b->seq)
            return a->seq < b->seq ? -1 : 1;
        break;
    default:
        break;
    }
    return pa < pb ? -1 : (pa > pb ? 1 : 0);
}

static inline void update(pa_node *n)
{
    uint32_t hl = height(n->left), hr = height(n->right);
    n->height = 1 + (hl > hr ? hl : hr);
    uint64_t m = node_size(n), ml = maxof(n->left), mr = maxof(n->right);
    if (ml > m)
        m = ml;
    if (mr > m)
        m = mr;
    n->max = m;
}

static pa_node *rot_right(pa_node *n)
{
    pa_node *l = n->left;
    n->left = l->right;
    l->right = n;
    update(n);
    update(l);
    return l;
}

static pa_node *rot_left(pa_node *n)
{
    pa_node *r = n->right;
    n->right = r->left;
    r->left = n;
    update(n);
    update(r);
    return r;
}

static pa_node *balance(pa_node *n)
{
    update(n);
    int bf = (int)height(n->left) - (int)height(n->right);
    if (bf > 1) {
        if (height(n->left->left) < height(n->left->right))
            n->left = rot_left(n->left);
        return rot_right(n);
    }
    if (bf < -1) {
        if (height(n->right->right) < height(n->right->left))
            n->right = rot_right(n->right);
        return rot_left(n);
    }
    return n;
}

static pa_node *insert(int policy, pa_node *t, pa_node *x)
{
    if (!t) {
        x->left = x->right = NULL;
        x->height = 1;
        x->max = node_size(x);
        return x;
    }
    if (cmp(policy, x, t) < 0)
        t->left = insert(policy, t->left, x);
    else
        t->right = insert(policy, t->right, x);
    return balance(t);
}

static pa_node *remove_min(pa_node *t, pa_node **min)
{
    if (!t->left) {
        *min = t;
        return t->right;
    }
    t->left = remove_min(t->left, min);
    return balance(t);
}

static pa_node *remove_node(int policy, pa_node *t, pa_node *x)
{
    if (!t)
        return NULL; /* not found: cannot happen for a consistent pool */
    if (t == x) {
        if (!t->left)
            return t->right;
        if (!t->right)
            return t->left;
        pa_node *m;
        pa_node *r = remove_min(t->right, &m);
        m->left = t->left;
        m->right = r;
        return balance(m);
    }
    if (cmp(policy, x, t) < 0)
        t->left = remove_node(policy, t->left, x);
    else
        t->right = remove_node(policy, t->right, x);
    return balance(t);
}

void pa_index_init(pa_index *ix, int policy)
{
    ix->root = NULL;
    ix->count = 0;
    ix->policy = policy;
}

void pa_index_insert(pa_index *ix, pa_node *n)
{
    ix->root = insert(ix->policy, ix->root, n);
    ix->count++;
}

void pa_index_remove(pa_index *ix, pa_node *n)
{
    ix->root = remove_node(ix->policy, ix->root, n);
    ix->count--;
}

pa_node *pa_index_find(const pa_index *ix, uint64_t need)
{
    pa_node *n = ix->root;
    if (!n || n->max < need)
        return NULL;
    for (;;) {
        /* Invariant: the subtree of n holds a block of at least `need` bytes. */
        if (n->left && n->left->max >= need)
            n = n->left;
        else if (node_size(n) >= need)
            return n;
        else
            n = n->right;
    }
}

static int check(int policy, const pa_node *n, const pa_node *lo, const pa_node *hi,
                 size_t *count)
{
    if (!n)
        return 0;
    if (lo && cmp(policy, lo, n) >= 0)
        return 1;
    if (hi && cmp(policy, n, hi) >= 0)
        return 1;
    int rc = check(policy, n->left, lo, n, count);
    if (rc)
        return rc;
    rc = check(policy, n->right, n, hi, count);
    if (rc)
        return rc;
    uint32_t hl = height(n->left), hr = height(n->right);
    if (n->height != 1 + (hl > hr ? hl : hr))
        return 2;
    if (hl > hr + 1 || hr > hl + 1)
        return 3;
    uint64_t m = node_size(n);
    if (maxof(n->left) > m)
        m = maxof(n->left);
    if (maxof(n->right) > m)
        m = maxof(n->right);
    if (n->max != m)
        return 4;
    (*count)++;
    return 0;
}

int pa_index_check(const pa_index *ix)
{
    size_t count = 0;
    int rc = check(ix->policy, ix->root, NULL, NULL, &count);
    if (rc)
        return rc;
    return count == ix->count ? 0 : 5;
}
