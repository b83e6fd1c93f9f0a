/* fork_alloc.c - fork while other threads allocate; the child must be able to allocate
 * (including from a new thread) and exit normally. A child that deadlocks is killed by an
 * alarm and counts as a failure.
 *
 *   fork_alloc [forks=100] [threads=3]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;

static void *churn(void *arg)
{
    uint64_t s = (uint64_t)(uintptr_t)arg * 2654435761u + 7;
    void *keep[64] = {0};
    while (!atomic_load(&stop)) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        int i = (int)(s % 64);
        free(keep[i]);
        size_t n = (s >> 8) % 1000 == 0 ? (size_t)(s >> 20) % (2 << 20) + 1
                                         : (size_t)(s >> 20) % 20000 + 1;
        keep[i] = malloc(n);
        if (keep[i])
            memset(keep[i], (int)i, n < 256 ? n : 256);
    }
    for (int i = 0; i < 64; i++)
        free(keep[i]);
    return NULL;
}

static void *child_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        free(malloc((size_t)i * 37 + 1));
    return malloc(100);
}

int main(int argc, char **argv)
{
    int forks = argc > 1 ? atoi(argv[1]) : 100;
    int threads = argc > 2 ? atoi(argv[2]) : 3;
    pthread_t th[64];
    if (threads > 64)
        threads = 64;
    for (int t = 0; t < threads; t++)
        pthread_create(&th[t], NULL, churn, (void *)(uintptr_t)(t + 1));
    int failures = 0;
    for (int f = 0; f < forks; f++) {
        void *before = malloc(1000);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            failures++;
            break;
        }
        if (pid == 0) {
            alarm(20);
            int bad = 0;
            free(before);
            for (int i = 0; i < 2000; i++) {
                void *p = malloc((size_t)(i * 131) % 70000 + 1);
                if (!p)
                    bad = 1;
                free(p);
            }
            void *big = malloc(4 << 20);
            if (!big)
                bad = 1;
            free(big);
            pthread_t ct;
            void *res = NULL;
            if (pthread_create(&ct, NULL, child_thread, NULL) != 0 || pthread_join(ct, &res) != 0)
                bad = 1;
            free(res);
            /* A grandchild too. */
            pid_t g = fork();
            if (g == 0) {
                free(malloc(123));
                _exit(0);
            }
            int gs = 0;
            waitpid(g, &gs, 0);
            if (!WIFEXITED(gs) || WEXITSTATUS(gs) != 0)
                bad = 1;
            _exit(bad);
        }
        free(before);
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "fork %d: child status %#x%s\n", f, st,
                    WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? " (deadlock)" : "");
            failures++;
        }
    }
    atomic_store(&stop, 1);
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    printf("fork_alloc: %d forks with %d allocating threads: %d failures\n", forks, threads,
           failures);
    return failures != 0;
}
