/* bench/attention.c: single-thread speed of the attention inner loops (compute/cpu/attention.h)
 * against the machine's FMA rate: one block of CM_ATTN_KB keys for ROWS query rows of head
 * dimension HD (the kernel set cm_attn_kernels_get picks for this CPU, or LOCALLM_CPU's), and the
 * K transposition of that block from an F16 cache. Wall time, best of 5 runs of 20,000 calls.
 * Build against the Release library, as bench/kernels.c:
 *   cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude -Isrc bench/attention.c \
 *       build/liblocallm.a -o /tmp/attention $(pkg-config --libs libcjson libpcre2-8 libutf8proc libcurl) -lm -lpthread
 *   /tmp/attention [HD=64] [ROWS=28]   (28: a prefill tile of Qwen2.5-0.5B, 4 tokens x 7 heads)
 * Prints ns per block and the 16-lane FMAs per ns it sustains (scores and V: 2 x ROWS x KB x HD
 * multiply-adds, 16 to a 512-bit FMA); a core's rate is its FMA units x its clock (a Zen 5 core:
 * two 512-bit FMAs a cycle, about 7.5 per ns). */
#include "compute/cpu/attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    size_t hd = argc > 1 ? strtoul(argv[1], NULL, 10) : 64, nr = argc > 2 ? strtoul(argv[2], NULL, 10) : 28;
    if (hd < 1 || hd > 512 || nr < 1 || nr > CM_ATTN_ROWS) {
        fprintf(stderr, "usage: attention [HD 1..512] [ROWS 1..%d]\n", CM_ATTN_ROWS);
        return 2;
    }
    const cm_attn_kernels *k = cm_attn_kernels_get(cm_cpu_features(false));
    size_t kb = CM_ATTN_KB;
    float *q = malloc(nr * hd * sizeof(float)), *acc = malloc(nr * hd * sizeof(float));
    float *kt = malloc(kb * hd * sizeof(float)), *v = malloc(kb * hd * sizeof(float)), *kf = malloc(kb * hd * sizeof(float));
    uint16_t *kh = malloc(kb * hd * sizeof(uint16_t));
    if (!q || !acc || !kt || !v || !kf || !kh) return 1;
    lm_rng r;
    lm_rng_seed(&r, 1);
    for (size_t i = 0; i < nr * hd; i++) q[i] = (float)(lm_rng_uniform(&r) - 0.5);
    for (size_t i = 0; i < kb * hd; i++) v[i] = (float)(lm_rng_uniform(&r) - 0.5), kf[i] = (float)(lm_rng_uniform(&r) - 0.5);
    k->f32_to_f16(kh, kf, kb * hd);
    k->load_kt(kt, kh, true, kb, hd);
    cm_attn_row rows[CM_ATTN_ROWS], *act[CM_ATTN_ROWS];
    for (size_t i = 0; i < nr; i++) {
        rows[i] = (cm_attn_row){.q = q + i * hd, .acc = acc + i * hd, .m = -INFINITY, .lo = 0, .hi = (uint32_t)kb};
        act[i] = &rows[i];
    }
    memset(acc, 0, nr * hd * sizeof(float));
    const int calls = 20000;
    double best = 1e9, best_kt = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_s();
        for (int i = 0; i < calls; i++) k->block(act, nr, kt, v, hd, 0.125f);
        double t1 = now_s();
        for (int i = 0; i < calls; i++) k->load_kt(kt, kh, true, kb, hd);
        double t2 = now_s();
        best = LM_MIN(best, (t1 - t0) / calls);
        best_kt = LM_MIN(best_kt, (t2 - t1) / calls);
    }
    double fma16 = 2.0 * (double)nr * (double)kb * (double)hd / 16.0;
    printf("%s block hd=%zu rows=%zu: %.0f ns, %.2f 16-lane FMAs/ns; load_kt (F16) %.0f ns (%.1f %% of the block)\n",
           k->name, hd, nr, best * 1e9, fma16 / (best * 1e9), best_kt * 1e9, 100.0 * best_kt / best);
    free(q);
    free(acc);
    free(kt);
    free(v);
    free(kf);
    free(kh);
    return 0;
}
