/* medium_release.c - frees of many medium blocks give their pages back.
 *
 *   medium_release SIZE ORDER     ORDER: 0 reverse, 1 random, 2 forward
 *
 * Allocates 1 GiB in SIZE-byte blocks, touches them, frees them all in ORDER, and prints the
 * resident set before and after ("rss_after_alloc_mb=A rss_after_free_mb=B"), with no call to
 * malloc_trim: a long-running program that frees its medium blocks should see its RSS drop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long rss_mb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f || fscanf(f, "%ld %ld", &size, &res) != 2)
        return -1;
    fclose(f);
    return res * 4 / 1024;
}

int main(int argc, char **argv)
{
    size_t sz = argc > 1 ? strtoul(argv[1], NULL, 10) : 65536;
    int order = argc > 2 ? atoi(argv[2]) : 1;
    size_t n = ((size_t)1 << 30) / sz;
    char **p = calloc(n, sizeof *p);
    size_t *ix = calloc(n, sizeof *ix);
    if (!p || !ix)
        return 2;
    for (size_t i = 0; i < n; i++) {
        p[i] = malloc(sz);
        if (!p[i])
            return 2;
        memset(p[i], (int)i, sz);
        ix[i] = order == 0 ? n - 1 - i : i;
    }
    long a = rss_mb();
    if (order == 1) {
        unsigned long long x = 88172645463325252ull;
        for (size_t i = n - 1; i > 0; i--) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            size_t j = (size_t)(x % (i + 1));
            size_t t = ix[i];
            ix[i] = ix[j];
            ix[j] = t;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(p[ix[i]]);
    printf("rss_after_alloc_mb=%ld rss_after_free_mb=%ld\n", a, rss_mb());
    return 0;
}
