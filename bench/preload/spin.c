/* spin.c - no allocation at all: T threads each count to the same number. The 2-thread over
 * 1-thread throughput of this program is the most any allocator benchmark can scale on the
 * machine at hand (on a VM whose vCPUs share a core it is well below 2).
 *   spin [threads=1] */
#include <pthread.h>

#include "common.h"

static void *count(void *arg)
{
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < 300000000ul; i++)
        x += i;
    return arg;
}

int main(int argc, char **argv)
{
    long threads = arg_long(argc, argv, 1, 1);
    pthread_t th[64];
    double t0 = now_s();
    for (long t = 0; t < threads && t < 64; t++)
        pthread_create(&th[t], NULL, count, NULL);
    for (long t = 0; t < threads && t < 64; t++)
        pthread_join(th[t], NULL);
    report("spin", threads, 3e8 * (double)threads, now_s() - t0);
    return 0;
}
