/* freeindex.h - the policy-ordered index of free blocks (internal).
 *
 * One AVL tree per pool. Nodes are intrusive: a free block's payload is its node, and the
 * block header just before the node gives its size. The tree is ordered by a key that
 * depends on the policy, and every node carries the largest block size of its subtree, so
 * "the first block in key order that is at least `need` bytes" is found in O(log n) for all
 * four policies:
 *   best   (size, address)      smallest fitting size, lowest address on ties
 *   worst  (-size, address)     largest size, lowest address on ties
 *   first  (address)            lowest address
 *   fifo   (seq, address)       longest free
 *
 * Under best and worst fit, blocks under PA_INDEX_BINS * PA_ALIGN bytes (1 KiB) are not in
 * that tree but in one small tree per exact size, ordered by address, with a bitmap of the
 * sizes present: all blocks of one bin tie on size, so the lowest address in the first
 * non-empty bin at or above the request is exactly the block the (size, address) order puts
 * first, found with one bit scan and a walk down a tree that holds only blocks of that size.
 * The big tree keeps the larger blocks; a request under 1 KiB looks there only when no bin
 * can serve it. Same answers as one tree, less work: most free blocks of a busy pool are
 * small, and their updates no longer rebalance a tree of every free block.
 */
#ifndef PA_FREEINDEX_H
#define PA_FREEINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "pyalloc.h"

/* The first two words are plain numbers, not links: a use-after-free write into the start
 * of a free block (the usual place, a struct's first fields) cannot make the tree lead an
 * allocation to an address of the writer's choosing. */
typedef struct pa_node {
    uint64_t seq;     /* free-sequence number of the block */
    uint64_t max;     /* largest total block size in this subtree */
    struct pa_node *left;
    struct pa_node *right;
    uint32_t height;  /* AVL height, leaves are 1 */
    uint32_t dlo, dhi; /* pool.c: the block's dirty hull, in 64 KiB units from the arena base */
} pa_node;
/* The node lives in the payload of the smallest free block, before its footer. */
_Static_assert(sizeof(pa_node) <= 48, "pa_node must fit a 64-byte block before its footer");

typedef struct pa_tree {
    pa_node *root;
} pa_tree;

#define PA_INDEX_BINS 64 /* exact-size bins: total sizes k * PA_ALIGN for k < 64 */

typedef struct pa_index {
    pa_tree main;     /* every block, or under best/worst fit those of 1 KiB and more */
    size_t count;     /* blocks in the index, trees and bins together */
    int policy;
    int binned;       /* best and worst fit: small blocks in the bins */
    int corrupt;      /* an inconsistency was met (see pa_index_find) */
    uint64_t bits;    /* bit k: bin k is not empty */
    pa_tree bin[PA_INDEX_BINS];
} pa_index;

void pa_index_init(pa_index *ix, int policy);
void pa_index_insert(pa_index *ix, pa_node *n);
void pa_index_remove(pa_index *ix, pa_node *n);
/* Puts `nw` (not in the tree) where `old` is and takes `old` out, when `nw` is `old`'s block
 * carved from its low end (same seq, smaller size, higher address) and still sorts where
 * `old` did: always under first fit and fifo; under best and worst fit only while it stays
 * between its neighbours. 0 if done; -1 (tree unchanged) if it would sort elsewhere. `old`'s
 * key must still be readable and `nw`'s block header must hold its size. O(depth), no
 * rebalancing. */
int pa_index_replace(pa_index *ix, pa_node *old, pa_node *nw);
/* First node in key order whose block is at least `need` bytes (total size), or NULL.
 * Sets ix->corrupt when the subtree maxima contradict the tree. */
pa_node *pa_index_find(pa_index *ix, uint64_t need);
/* Largest total block size in the index (0 if empty). */
static inline uint64_t pa_index_max(const pa_index *ix)
{
    if (ix->main.root)
        return ix->main.root->max;
    return ix->bits ? (uint64_t)(63 - __builtin_clzll(ix->bits)) * PA_ALIGN : 0;
}
/* Some node of the index, for a corruption report (NULL if empty). */
pa_node *pa_index_any(const pa_index *ix);
/* Verifies order, heights, balance and the max augmentation; 0 if all hold, else a code. */
int pa_index_check(const pa_index *ix);

#endif
