/* larson.c - a larson-style server simulation (after Larson & Krishnan's benchmark): each
 * worker owns an array of blocks (16..1024 bytes) and repeatedly replaces a random one; after
 * a number of rounds it hands its array to a fresh thread and exits, so blocks allocated by
 * one thread are freed by another, and threads come and go as in a server.
 *   larson [threads=2] [rounds per thread=8] [ops per round=600000] [slots=2000] */
#include <pthread.h>

#include "common.h"

static long rounds = 8, ops = 600000, slots = 2000;

typedef struct {
    void **v;
    uint64_t seed;
    long round;
} state;

static void *worker(void *arg)
{
    state *st = arg;
    for (long i = 0; i < ops; i++) {
        uint64_t r = rng_next(&st->seed);
        size_t k = (size_t)(r % (uint64_t)slots);
        free(st->v[k]);
        size_t n = 16 + (size_t)((r >> 32) % 1009);
        st->v[k] = malloc(n);
        touch(st->v[k], n);
    }
    if (++st->round < rounds) { /* hand over to a new thread */
        pthread_t next;
        pthread_create(&next, NULL, worker, st);
        pthread_detach(next);
        return NULL;
    }
    for (long k = 0; k < slots; k++)
        free(st->v[k]);
    free(st->v);
    st->v = NULL;
    return NULL;
}

int main(int argc, char **argv)
{
    long threads = arg_long(argc, argv, 1, 2);
    rounds = arg_long(argc, argv, 2, rounds);
    ops = arg_long(argc, argv, 3, ops);
    slots = arg_long(argc, argv, 4, slots);
    state st[64];
    double t0 = now_s();
    for (long t = 0; t < threads; t++) {
        st[t].v = calloc((size_t)slots, sizeof(void *));
        st[t].seed = (uint64_t)t * 977 + 1;
        st[t].round = 0;
        for (long k = 0; k < slots; k++) {
            size_t n = 16 + (size_t)(k % 1009);
            st[t].v[k] = malloc(n);
        }
        pthread_t th;
        pthread_create(&th, NULL, worker, &st[t]);
        pthread_detach(th);
    }
    /* Wait until every chain has finished. */
    for (;;) {
        int busy = 0;
        for (long t = 0; t < threads; t++)
            busy |= __atomic_load_n(&st[t].v, __ATOMIC_ACQUIRE) != NULL;
        if (!busy)
            break;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    report("larson", threads, (double)threads * (double)rounds * (double)ops, now_s() - t0);
    return 0;
}
