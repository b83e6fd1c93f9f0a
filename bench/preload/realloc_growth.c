/* realloc_growth.c - buffers grown by realloc: many vectors pushed one element at a time
 * (doubling capacity), strings appended a few bytes at a time (exact-size realloc), and a
 * few large buffers grown to several MiB.
 *   realloc_growth [rounds=40] */
#include "common.h"

int main(int argc, char **argv)
{
    long rounds = arg_long(argc, argv, 1, 40);
    uint64_t s = 7;
    double t0 = now_s();
    double ops = 0;
    for (long r = 0; r < rounds; r++) {
        enum { NV = 2000 };
        static long *vec[NV];
        static size_t len[NV], cap[NV];
        for (int k = 0; k < 300000; k++) { /* vector pushes */
            int i = (int)(rng_next(&s) % NV);
            if (len[i] == cap[i]) {
                cap[i] = cap[i] ? 2 * cap[i] : 4;
                vec[i] = realloc(vec[i], cap[i] * sizeof(long));
                ops++;
            }
            vec[i][len[i]++] = k;
        }
        for (int i = 0; i < NV; i++) {
            free(vec[i]);
            vec[i] = NULL;
            len[i] = cap[i] = 0;
        }
        enum { NS = 500 };
        static char *str[NS];
        static size_t slen[NS];
        for (int k = 0; k < 100000; k++) { /* exact-size string appends */
            int i = (int)(rng_next(&s) % NS);
            size_t add = 1 + (size_t)(rng_next(&s) % 24);
            str[i] = realloc(str[i], slen[i] + add + 1);
            memset(str[i] + slen[i], 'a' + (int)(add % 26), add);
            slen[i] += add;
            str[i][slen[i]] = 0;
            ops++;
        }
        for (int i = 0; i < NS; i++) {
            free(str[i]);
            str[i] = NULL;
            slen[i] = 0;
        }
        for (int b = 0; b < 4; b++) { /* big buffers */
            char *p = NULL;
            for (size_t n = 4096; n <= ((size_t)8 << 20); n = n * 3 / 2) {
                p = realloc(p, n);
                p[n - 1] = 1;
                ops++;
            }
            free(p);
        }
    }
    report("realloc_growth", 1, ops, now_s() - t0);
    return 0;
}
