/* misuse.c - a catalogue of heap misuse, one case per run.
 *
 *   misuse CASE      runs one case; prints "survived CASE" if the allocator let it pass
 *   misuse list      prints the case names
 *
 * Each case misuses the heap once (double free, free of something that is no block, a write
 * through a dangling pointer or past the end of a block into a free neighbour) and then
 * calls malloc a few times, as a program would go on. The test (tests/preload/
 * test_hardening.py) expects libpyalloc.so to stop every one with a line naming the error.
 * Allocation sizes: 16 and 48 bytes (size classes), 5000 and 20000 bytes (the medium cache
 * and the pools), 100000 bytes (the pools), 8 MiB (mmap).
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static long global_word[8];

/* Opaque to the compiler, so that it keeps every misuse as written. */
static void *volatile sink;
static void *launder(void *p)
{
    sink = p;
    return sink;
}

static void churn(size_t n)
{
    for (int i = 0; i < 8; i++)
        sink = malloc(n);
}

static void double_free(size_t n)
{
    char *p = malloc(n);
    free(p);
    free(launder(p));
    churn(n);
}

static void double_free_not_head(size_t n)
{
    char *a = malloc(n), *b = malloc(n);
    free(a);
    free(b);
    free(launder(a));
    churn(n);
}

static void double_free_after_flush(size_t n)
{
    /* The block leaves the thread cache (pushed out by 200 later frees) before the second
     * free. */
    char *p = malloc(n), *more[200];
    for (int i = 0; i < 200; i++)
        more[i] = malloc(n);
    free(p);
    for (int i = 0; i < 200; i++)
        free(more[i]);
    free(launder(p));
    churn(n);
}

static void free_offset(size_t n, size_t off)
{
    char *p = malloc(n);
    free(launder(p + off));
    churn(n);
}

static void free_stack(void)
{
    long x[4] = {0};
    free(launder(&x[2]));
    churn(16);
}

static void free_global(void)
{
    free(launder(&global_word[2]));
    churn(16);
}

static void free_foreign_mapping(void)
{
    char *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    free(launder(m + 4096 + 16));
    churn(16);
}

static void realloc_foreign(void)
{
    long x[4] = {0};
    sink = realloc(launder(&x[2]), 100);
}

/* A write through a dangling pointer: the address of a global into the first word of a
 * freed block, then allocations of that size. */
static void uaf_write(size_t n)
{
    void **p = malloc(n);
    free(p);
    void **q = launder(p);
    q[0] = &global_word[0];
    for (int i = 0; i < 4; i++) {
        void *r = malloc(n);
        if ((char *)r >= (char *)global_word && (char *)r < (char *)(global_word + 8)) {
            printf("malloc returned the global %p\n", r);
            return;
        }
    }
}

/* The same with a zero written (a cleared pointer field). */
static void uaf_zero(size_t n)
{
    void **p = malloc(n), **p2 = malloc(n);
    free(p2);
    free(p);
    void **q = launder(p);
    q[0] = NULL;
    churn(n);
}

/* Writing `over` bytes past the end of a block of n bytes (its usable size), into free
 * neighbours. */
static void overflow(size_t n, size_t over)
{
    char *a = malloc(n), *b[4];
    for (int i = 0; i < 4; i++)
        b[i] = malloc(n);
    for (int i = 3; i >= 0; i--)
        free(b[i]);
    memset(launder(a), 0x41, malloc_usable_size(a) + over);
    free(a);
    churn(n);
}

/* Overflow into a live neighbour's header, then free of the neighbour. */
static void overflow_then_free_neighbour(size_t n)
{
    char *a = malloc(n), *b = malloc(n);
    memset(launder(a), 0x41, malloc_usable_size(a) + 24);
    free(b);
    churn(n);
}

struct misuse {
    const char *name;
    void (*run)(void);
    const char *error; /* what the line must name */
};

#define CASE(name, error, body)                                                            \
    static void run_##name(void) { body; }
#define ROW(name, error) {#name, run_##name, error}

CASE(double_free_16, "double free", double_free(16))
CASE(double_free_48_not_head, "double free", double_free_not_head(48))
CASE(double_free_16_after_flush, "double free", double_free_after_flush(16))
CASE(double_free_5000, "double free", double_free(5000))
CASE(double_free_20000_not_head, "double free", double_free_not_head(20000))
CASE(double_free_100000, "double free", double_free(100000))
CASE(double_free_8m, "invalid pointer", double_free((size_t)8 << 20))
CASE(free_interior_16, "invalid pointer", free_offset(64, 16))
CASE(free_interior_5000, "invalid pointer", free_offset(5000, 64))
CASE(free_interior_100000, "invalid pointer", free_offset(100000, 4096))
CASE(free_interior_8m, "invalid pointer", free_offset((size_t)8 << 20, 4096))
CASE(free_unaligned_16, "invalid pointer", free_offset(16, 1))
CASE(free_unaligned_5000, "invalid pointer", free_offset(5000, 8))
CASE(free_unaligned_100000, "invalid pointer", free_offset(100000, 3))
CASE(free_stack, "invalid pointer", free_stack())
CASE(free_global, "invalid pointer", free_global())
CASE(free_foreign_mapping, "invalid pointer", free_foreign_mapping())
CASE(realloc_foreign, "invalid pointer", realloc_foreign())
CASE(uaf_write_16, "corrupted free list", uaf_write(16))
CASE(uaf_write_48, "corrupted free list", uaf_write(48))
CASE(uaf_write_5000, "corrupted free list", uaf_write(5000))
CASE(uaf_write_20000, "corrupted free list", uaf_write(20000))
CASE(uaf_zero_16, "corrupted free list", uaf_zero(16))
CASE(overflow_8_past_16, "corrupted free list", overflow(16, 8))
CASE(overflow_64_past_16, "corrupted free list", overflow(16, 64))
CASE(overflow_into_header_5000, "invalid pointer", overflow_then_free_neighbour(5000))
CASE(overflow_into_header_100000, "invalid pointer", overflow_then_free_neighbour(100000))

static const struct misuse cases[] = {
    ROW(double_free_16, "double free"),
    ROW(double_free_48_not_head, "double free"),
    ROW(double_free_16_after_flush, "double free"),
    ROW(double_free_5000, "double free"),
    ROW(double_free_20000_not_head, "double free"),
    ROW(double_free_100000, "double free"),
    ROW(double_free_8m, "invalid pointer"),
    ROW(free_interior_16, "invalid pointer"),
    ROW(free_interior_5000, "invalid pointer"),
    ROW(free_interior_100000, "invalid pointer"),
    ROW(free_interior_8m, "invalid pointer"),
    ROW(free_unaligned_16, "invalid pointer"),
    ROW(free_unaligned_5000, "invalid pointer"),
    ROW(free_unaligned_100000, "invalid pointer"),
    ROW(free_stack, "invalid pointer"),
    ROW(free_global, "invalid pointer"),
    ROW(free_foreign_mapping, "invalid pointer"),
    ROW(realloc_foreign, "invalid pointer"),
    ROW(uaf_write_16, "corrupted free list"),
    ROW(uaf_write_48, "corrupted free list"),
    ROW(uaf_write_5000, "corrupted free list"),
    ROW(uaf_write_20000, "corrupted free list"),
    ROW(uaf_zero_16, "corrupted free list"),
    ROW(overflow_8_past_16, "corrupted free list"),
    ROW(overflow_64_past_16, "corrupted free list"),
    ROW(overflow_into_header_5000, "invalid pointer"),
    ROW(overflow_into_header_100000, "invalid pointer"),
};

int main(int argc, char **argv)
{
    size_t n = sizeof cases / sizeof *cases;
    if (argc < 2 || !strcmp(argv[1], "list")) {
        for (size_t i = 0; i < n; i++)
            printf("%s %s\n", cases[i].name, cases[i].error);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (!strcmp(argv[1], cases[i].name)) {
            cases[i].run();
            printf("survived %s\n", cases[i].name);
            return 0;
        }
    fprintf(stderr, "misuse: no case %s\n", argv[1]);
    return 2;
}
