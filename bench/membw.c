/* bench/membw.c: memory read bandwidth with T threads (pthreads), STREAM-like.
 * A decode step reads every weight once, so file bytes / this bandwidth is the decode floor.
 *   cc -O3 -march=native -pthread bench/membw.c -o /tmp/membw && /tmp/membw [threads=2] [MiB=512] [passes=8]
 * Each thread sums its own slice of a buffer far larger than the caches; the best pass over all
 * threads is timed (GB/s = 1e9 bytes/s); the median pass goes to stdout as one number (the best
 * and every pass to stderr): the machine is shared, so the median is the honest figure. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct slice {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
    pthread_barrier_t *start;
} slice;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *reader(void *arg) {
    slice *s = arg;
    pthread_barrier_wait(s->start);
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = 0;
    for (; i + 4 <= s->n; i += 4) {
        a += s->p[i];
        b += s->p[i + 1];
        c += s->p[i + 2];
        d += s->p[i + 3];
    }
    for (; i < s->n; i++) a += s->p[i];
    s->sum = a + b + c + d;
    pthread_barrier_wait(s->start);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 512;
    int passes = argc > 3 ? atoi(argv[3]) : 8;
    if (threads < 1 || threads > 256 || mib < 16 || passes < 1) {
        fprintf(stderr, "usage: membw [threads>=1] [MiB>=16] [passes>=1]\n");
        return 2;
    }
    size_t n = mib << 17; /* uint64 words */
    uint64_t *buf = malloc(n * sizeof *buf);
    pthread_t *tid = malloc((size_t)threads * sizeof *tid);
    slice *sl = malloc((size_t)threads * sizeof *sl);
    double *rate = malloc((size_t)passes * sizeof *rate);
    if (!buf || !tid || !sl || !rate) {
        fprintf(stderr, "membw: out of memory for %zu MiB\n", mib);
        return 1;
    }
    for (size_t i = 0; i < n; i++) buf[i] = i * 0x9E3779B97F4A7C15ull;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    double best = 0;
    uint64_t check = 0;
    for (int pass = 0; pass < passes; pass++) {
        size_t per = n / (size_t)threads;
        for (int t = 0; t < threads; t++) {
            sl[t] = (slice){buf + (size_t)t * per, t == threads - 1 ? n - (size_t)t * per : per, 0, &start};
            if (pthread_create(&tid[t], NULL, reader, &sl[t])) {
                fprintf(stderr, "membw: cannot start thread %d\n", t);
                return 1;
            }
        }
        pthread_barrier_wait(&start);
        double t0 = now_s();
        pthread_barrier_wait(&start);
        double dt = now_s() - t0;
        for (int t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            check += sl[t].sum;
        }
        double gbs = (double)(n * sizeof *buf) / dt / 1e9;
        fprintf(stderr, "pass %d: %.2f GB/s\n", pass, gbs);
        rate[pass] = gbs;
        if (gbs > best) best = gbs;
    }
    qsort(rate, (size_t)passes, sizeof *rate, cmp_d);
    double med = passes % 2 ? rate[passes / 2] : (rate[passes / 2 - 1] + rate[passes / 2]) / 2;
    fprintf(stderr, "threads %d, %zu MiB, %d passes: median %.2f GB/s, best %.2f (checksum %llx)\n", threads, mib,
            passes, med, best, (unsigned long long)(check & 0xffff));
    printf("%.2f\n", med);
    free(rate);
    pthread_barrier_destroy(&start);
    free(sl);
    free(tid);
    free(buf);
    return 0;
}
