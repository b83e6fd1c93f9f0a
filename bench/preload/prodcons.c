/* prodcons.c - producer/consumer across threads. T threads form a ring: each thread
 * allocates messages (32..1024 bytes), writes them and sends them to the next thread through
 * a bounded single-producer/single-consumer queue, and reads and frees the messages it
 * receives from the previous thread. With T = 1 the thread sends to itself; with T >= 2
 * every free is a cross-thread free. Every thread moves the same number of messages, so the
 * throughput (messages per second) of T threads is ideally T times that of one thread.
 *   prodcons [threads=2] [messages per thread=3000000]
 *
 * Built with -DPRODCONS_IDEAL, malloc and free are replaced by a free-of-charge allocator (a
 * thread-local LIFO of 1 KiB slots: no lock, no metadata, every freed message reused by the
 * thread that freed it). Its 2-thread/1-thread ratio is the most that any allocator can reach
 * on this workload and machine: with one thread every message stays in one core's cache, with
 * two every message crosses cores. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "common.h"

#ifdef PRODCONS_IDEAL
static __thread void *stack_top;
static void *msg_alloc(size_t n)
{
    (void)n;
    void **p = stack_top;
    if (!p)
        return malloc(1024);
    stack_top = *p;
    return p;
}
static void msg_free(void *p)
{
    *(void **)p = stack_top;
    stack_top = p;
}
#else
#define msg_alloc malloc
#define msg_free free
#endif

#define QCAP 1024
#define BATCH 64
typedef struct {
    _Atomic size_t head __attribute__((aligned(64)));
    _Atomic size_t tail __attribute__((aligned(64)));
    void *slot[QCAP] __attribute__((aligned(64)));
} queue;

static long per_thread = 3000000;
static long nthreads;
static queue *qs;

static void *run(void *arg)
{
    long me = (long)(intptr_t)arg;
    queue *out = &qs[(me + 1) % nthreads], *in = &qs[me];
    uint64_t s = (uint64_t)me * 7919 + 1;
    long sent = 0, got = 0, sum = 0;
    while (sent < per_thread || got < per_thread) {
        int progress = 0;
        size_t t = atomic_load_explicit(&out->tail, memory_order_relaxed);
        size_t room = QCAP - (t - atomic_load_explicit(&out->head, memory_order_acquire));
        for (int i = 0; i < BATCH && room && sent < per_thread; i++, room--, sent++, t++) {
            size_t n = 32 + (size_t)(rng_next(&s) % 993);
            unsigned char *m = msg_alloc(n);
            m[0] = (unsigned char)n;
            m[n - 1] = 7;
            out->slot[t % QCAP] = m;
            progress = 1;
        }
        atomic_store_explicit(&out->tail, t, memory_order_release);
        size_t h = atomic_load_explicit(&in->head, memory_order_relaxed);
        size_t avail = atomic_load_explicit(&in->tail, memory_order_acquire) - h;
        for (int i = 0; i < BATCH && avail; i++, avail--, got++, h++) {
            unsigned char *m = in->slot[h % QCAP];
            sum += m[0];
            msg_free(m);
            progress = 1;
        }
        atomic_store_explicit(&in->head, h, memory_order_release);
        if (!progress)
            sched_yield();
    }
    return (void *)(intptr_t)sum;
}

int main(int argc, char **argv)
{
    nthreads = arg_long(argc, argv, 1, 2);
    per_thread = arg_long(argc, argv, 2, per_thread);
    if (nthreads < 1 || nthreads > 64)
        return 2;
    qs = aligned_alloc(64, sizeof(queue) * (size_t)nthreads);
    memset(qs, 0, sizeof(queue) * (size_t)nthreads);
    pthread_t th[64];
    double t0 = now_s();
    for (long t = 0; t < nthreads; t++)
        pthread_create(&th[t], NULL, run, (void *)(intptr_t)t);
    for (long t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);
    report("prodcons", nthreads, (double)per_thread * (double)nthreads, now_s() - t0);
    free(qs);
    return 0;
}
