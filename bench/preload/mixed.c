/* mixed.c - mixed sizes with long and short lifetimes. Sizes are log-uniform from 16 bytes to
 * 64 KiB with an occasional 1 MiB buffer; 90% of blocks die young (within a small window),
 * 10% live long (a large ring replaced slowly), so short-lived churn happens around long-lived
 * data, as in a compiler or an interpreter.
 *   mixed [ops=6000000] */
#include "common.h"

#define YOUNG 256
#define OLD 60000

int main(int argc, char **argv)
{
    long ops = arg_long(argc, argv, 1, 6000000);
    uint64_t s = 42;
    static void *young[YOUNG], *old[OLD];
    double t0 = now_s();
    for (long i = 0; i < ops; i++) {
        uint64_t r = rng_next(&s);
        size_t n;
        if (r % 20000 == 0)
            n = (size_t)1 << 20;
        else
            n = (size_t)16 << ((r >> 8) % 13); /* 16 B .. 64 KiB */
        n += (r >> 24) % n;
        if (n > ((size_t)1 << 20))
            n = (size_t)1 << 20;
        void *p = malloc(n);
        touch(p, n);
        if ((r >> 40) % 10 == 0) {
            size_t k = (size_t)((r >> 44) % OLD);
            free(old[k]);
            old[k] = p;
        } else {
            size_t k = (size_t)((r >> 44) % YOUNG);
            free(young[k]);
            young[k] = p;
        }
    }
    for (int k = 0; k < YOUNG; k++)
        free(young[k]);
    for (int k = 0; k < OLD; k++)
        free(old[k]);
    report("mixed", 1, (double)ops, now_s() - t0);
    return 0;
}
