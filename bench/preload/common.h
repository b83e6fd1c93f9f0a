/* common.h - shared helpers of the allocator workloads in bench/preload. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Touches a block the way a program would: first and last cache line. */
static inline void touch(void *p, size_t n)
{
    unsigned char *c = p;
    c[0] = (unsigned char)n;
    c[n - 1] = (unsigned char)(n >> 3);
}

static inline long arg_long(int argc, char **argv, int i, long dflt)
{
    return argc > i ? atol(argv[i]) : dflt;
}

static inline void report(const char *name, long threads, double ops, double secs)
{
    printf("%s threads=%ld ops=%.0f seconds=%.4f ops_per_sec=%.0f\n", name, threads, ops, secs,
           ops / secs);
}
#endif
