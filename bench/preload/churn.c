/* churn.c - small-object churn: a working set of small blocks (16..512 bytes) where every
 * step frees a random block and allocates a new one of a random size.
 *   churn [threads=1] [ops per thread=20000000] [slots=4096] */
#include <pthread.h>

#include "common.h"

static long ops = 20000000, slots = 4096;

static void *run(void *arg)
{
    uint64_t s = (uint64_t)(uintptr_t)arg;
    void **v = calloc((size_t)slots, sizeof *v);
    for (long i = 0; i < ops; i++) {
        uint64_t r = rng_next(&s);
        size_t k = (size_t)(r % (uint64_t)slots);
        free(v[k]);
        size_t n = 16 + (size_t)((r >> 32) % 497);
        v[k] = malloc(n);
        touch(v[k], n);
    }
    for (long k = 0; k < slots; k++)
        free(v[k]);
    free(v);
    return NULL;
}

int main(int argc, char **argv)
{
    long threads = arg_long(argc, argv, 1, 1);
    ops = arg_long(argc, argv, 2, ops);
    slots = arg_long(argc, argv, 3, slots);
    pthread_t th[64];
    double t0 = now_s();
    for (long t = 0; t < threads; t++)
        pthread_create(&th[t], NULL, run, (void *)(uintptr_t)(t + 1));
    for (long t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    report("churn", threads, (double)ops * (double)threads, now_s() - t0);
    return 0;
}
