/* runrss.c - runs a command and prints its wall time and peak RSS on stderr's last line:
 *   runrss [VAR=VALUE ...] -- CMD ARGS...
 * The variables are set in the child only (so LD_PRELOAD does not apply to this launcher),
 * and this launcher is small, so the child's ru_maxrss is the command's own. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++)
        ;
    if (i >= argc - 1)
        return 2;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = fork();
    if (pid == 0) {
        for (int k = 1; k < i; k++)
            putenv(argv[k]);
        execvp(argv[i + 1], argv + i + 1);
        _exit(127);
    }
    int st;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) < 0)
        return 2;
    clock_gettime(CLOCK_MONOTONIC, &b);
    fprintf(stderr, "\nrunrss wall=%.6f maxrss_kb=%ld\n",
            (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9, ru.ru_maxrss);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
