/* freeindex.c - augmented AVL tree over free blocks; see freeindex.h. */
#include "freeindex.h"

#include "block.h"
#include "pyalloc.h"

#define PA_MAX_DEPTH 128 /* an AVL tree of 2^64 nodes is under 93 levels deep */

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

/* The largest block size in n's subtree, from n and its children's figures. */
static inline uint64_t subtree_max(const pa_node *n)
{
    uint64_t m = node_size(n), ml = maxof(n->left), mr = maxof(n->right);
    if (ml > m)
        m = ml;
    return mr > m ? mr : m;
}

static inline void update(pa_node *n)
{
    uint32_t hl = height(n->left), hr = height(n->right);
    n->height = 1 + (hl > hr ? hl : hr);
    n->max = subtree_max(n);
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

/* Insert and remove walk down once, keeping the path, then repair heights, balance and maxima
 * bottom-up and stop at the first node whose height and maximum come out unchanged: nothing
 * above it can change. A recursive version rebalanced every node of the path, reading both
 * children of each; on a tree of 10^6 free blocks the siblings of a deep path are cold, and
 * those reads were most of the cost of a fifo alloc+free pair. */
/* Repairs path[floor..depth) (path[0] is the root) bottom-up after a change below
 * path[depth - 1], stopping at the first node that comes out unchanged. */
static void fix_path(pa_tree *ix, pa_node **path, int depth, int floor)
{
    while (depth > floor) {
        pa_node *t = path[--depth];
        uint32_t oh = t->height;
        uint64_t om = t->max;
        pa_node *sub = balance(t);
        if (sub != t) {
            if (depth == 0)
                ix->root = sub;
            else if (path[depth - 1]->left == t)
                path[depth - 1]->left = sub;
            else
                path[depth - 1]->right = sub;
        } else if (t->height == oh && t->max == om) {
            return;
        }
    }
}

static void tree_insert(pa_tree *ix, int policy, pa_node *x)
{
    pa_node *path[PA_MAX_DEPTH];
    int depth = 0;
    x->left = x->right = NULL;
    x->height = 1;
    x->max = node_size(x);
    pa_node **link = &ix->root;
    while (*link) {
        pa_node *t = *link;
        path[depth++] = t;
        link = cmp(policy, x, t) < 0 ? &t->left : &t->right;
    }
    *link = x;
    fix_path(ix, path, depth, 0);
}

static void tree_remove(pa_tree *ix, int policy, pa_node *x)
{
    pa_node *path[PA_MAX_DEPTH];
    int depth = 0;
    pa_node **link = &ix->root;
    while (*link && *link != x) {
        pa_node *t = *link;
        path[depth++] = t;
        link = cmp(policy, x, t) < 0 ? &t->left : &t->right;
    }
    if (!*link)
        return; /* not in the tree: cannot happen for a consistent pool */
    if (!x->left || !x->right) {
        *link = x->left ? x->left : x->right;
        fix_path(ix, path, depth, 0);
        return;
    }
    /* Two children: x's successor m (the leftmost node of its right subtree) takes x's
     * place, and m's old spot is repaired from the bottom. */
    int xpos = depth++;
    pa_node **mlink = &x->right;
    while ((*mlink)->left) {
        path[depth++] = *mlink;
        mlink = &(*mlink)->left;
    }
    pa_node *m = *mlink;
    *mlink = m->right; /* when m is x's right child, this sets x->right */
    m->left = x->left;
    m->right = x->right;
    m->height = x->height; /* x's old figures: the comparison in fix_path then tells */
    m->max = x->max;       /* whether the subtree changed */
    *link = m;
    path[xpos] = m;
    /* Below m the repair may stop early; m and above must still be looked at, since the
     * subtree lost x. */
    fix_path(ix, path, depth, xpos + 1);
    fix_path(ix, path, xpos + 1, 0);
}

static int tree_replace(pa_tree *ix, int policy, pa_node *old, pa_node *nw)
{
    pa_node *path[PA_MAX_DEPTH];
    int depth = 0;
    pa_node **link = &ix->root;
    pa_node *pred = NULL, *succ = NULL; /* nearest ancestors before and after old */
    while (*link != old) {
        pa_node *t = *link;
        path[depth++] = t;
        if (cmp(policy, old, t) < 0) {
            succ = t;
            link = &t->left;
        } else {
            pred = t;
            link = &t->right;
        }
    }
    /* A block that shrank keeps its place under first fit and fifo; under best fit it sorts
     * earlier (check the node before it), under worst fit later (check the node after it). */
    if (policy == PA_BEST) {
        if (old->left)
            for (pred = old->left; pred->right; pred = pred->right)
                ;
        if (pred && cmp(policy, pred, nw) >= 0)
            return -1;
    } else if (policy == PA_WORST) {
        if (old->right)
            for (succ = old->right; succ->left; succ = succ->left)
                ;
        if (succ && cmp(policy, nw, succ) >= 0)
            return -1;
    }
    nw->left = old->left;
    nw->right = old->right;
    nw->height = old->height;
    nw->max = subtree_max(nw);
    *link = nw;
    /* The block shrank: the maxima above it can only go down, and stop changing at the first
     * ancestor whose maximum comes from elsewhere. */
    while (depth > 0) {
        pa_node *t = path[--depth];
        uint64_t v = subtree_max(t);
        if (v == t->max)
            break;
        t->max = v;
    }
    return 0;
}

/* First node of t in its order whose block is at least `need` bytes, or NULL; *corrupt set
 * when the subtree maxima contradict the tree. */
static pa_node *tree_find(const pa_tree *t, uint64_t need, int *corrupt)
{
    pa_node *n = t->root;
    if (!n || n->max < need)
        return NULL;
    for (;;) {
        /* Invariant: the subtree of n holds a block of at least `need` bytes. */
        __builtin_prefetch(n->right);
        if (n->left && n->left->max >= need)
            n = n->left;
        else if (node_size(n) >= need)
            return n;
        else if (!(n = n->right)) {
            *corrupt = 1; /* a maximum promised a block that is not there */
            return NULL;
        }
    }
}

/* ---------------------------------------------------------------------------------------- */

#define BIN_LIMIT ((uint64_t)PA_INDEX_BINS * PA_ALIGN)

void pa_index_init(pa_index *ix, int policy)
{
    ix->main.root = NULL;
    ix->count = 0;
    ix->policy = policy;
    ix->binned = policy == PA_BEST || policy == PA_WORST;
    ix->corrupt = 0;
    ix->bits = 0;
    for (int k = 0; k < PA_INDEX_BINS; k++)
        ix->bin[k].root = NULL;
}

/* The bin of a block of `size` bytes, or -1 for the main tree. */
static inline int bin_of(const pa_index *ix, uint64_t size)
{
    return ix->binned && size < BIN_LIMIT ? (int)(size / PA_ALIGN) : -1;
}

void pa_index_insert(pa_index *ix, pa_node *x)
{
    int k = bin_of(ix, node_size(x));
    ix->count++;
    if (k < 0) {
        tree_insert(&ix->main, ix->policy, x);
        return;
    }
    tree_insert(&ix->bin[k], PA_FIRST, x);
    ix->bits |= (uint64_t)1 << k;
}

void pa_index_remove(pa_index *ix, pa_node *x)
{
    int k = bin_of(ix, node_size(x));
    ix->count--;
    if (k < 0) {
        tree_remove(&ix->main, ix->policy, x);
        return;
    }
    tree_remove(&ix->bin[k], PA_FIRST, x);
    if (!ix->bin[k].root)
        ix->bits &= ~((uint64_t)1 << k);
}

int pa_index_replace(pa_index *ix, pa_node *old, pa_node *nw)
{
    if (bin_of(ix, node_size(old)) >= 0 || bin_of(ix, node_size(nw)) >= 0)
        return -1; /* a bin holds one size: a block that shrank moves */
    return tree_replace(&ix->main, ix->policy, old, nw);
}

/* The lowest-address block of bin k (its bit is set). */
static pa_node *bin_first(pa_index *ix, int k)
{
    pa_node *n = ix->bin[k].root;
    if (!n) {
        ix->corrupt = 1; /* the bitmap promised a block */
        return NULL;
    }
    while (n->left)
        n = n->left;
    return n;
}

pa_node *pa_index_find(pa_index *ix, uint64_t need)
{
    if (!ix->binned)
        return tree_find(&ix->main, need, &ix->corrupt);
    uint64_t k = (need + PA_ALIGN - 1) / PA_ALIGN;
    if (ix->policy == PA_BEST) {
        uint64_t m = k < PA_INDEX_BINS ? ix->bits & (~(uint64_t)0 << k) : 0;
        if (m)
            return bin_first(ix, __builtin_ctzll(m));
        return tree_find(&ix->main, need, &ix->corrupt);
    }
    /* Worst fit: the main tree's blocks are all larger than any bin's. */
    if (ix->main.root)
        return tree_find(&ix->main, need, &ix->corrupt);
    if (ix->bits) {
        int top = 63 - __builtin_clzll(ix->bits);
        if ((uint64_t)top >= k)
            return bin_first(ix, top);
    }
    return NULL;
}

pa_node *pa_index_any(const pa_index *ix)
{
    if (ix->main.root)
        return ix->main.root;
    return ix->bits ? ix->bin[__builtin_ctzll(ix->bits)].root : NULL;
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

/* Every block of n's subtree is lo <= size < hi bytes. */
static int sizes_in(const pa_node *n, uint64_t lo, uint64_t hi)
{
    for (; n; n = n->right) {
        uint64_t sz = node_size(n);
        if (sz < lo || sz >= hi || !sizes_in(n->left, lo, hi))
            return 0;
    }
    return 1;
}

int pa_index_check(const pa_index *ix)
{
    size_t count = 0;
    int rc = check(ix->policy, ix->main.root, NULL, NULL, &count);
    if (rc)
        return rc;
    if (ix->binned && !sizes_in(ix->main.root, BIN_LIMIT, UINT64_MAX))
        return 6; /* a small block in the main tree */
    for (int k = 0; k < PA_INDEX_BINS; k++) {
        const pa_node *r = ix->bin[k].root;
        if (!!r != !!(ix->bits & ((uint64_t)1 << k)))
            return 7;
        if (r && (!ix->binned || !sizes_in(r, (uint64_t)k * PA_ALIGN, (uint64_t)(k + 1) * PA_ALIGN)))
            return 6; /* a block in the wrong bin */
        rc = check(PA_FIRST, r, NULL, NULL, &count);
        if (rc)
            return rc;
    }
    return count == ix->count ? 0 : 5;
}
