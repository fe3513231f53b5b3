/* bench/kernels.c: single-thread speed of the CPU matrix kernels, to compare kernel sets and
 * tile shapes without a model (and without the pool: thread CPU time, best of 7 runs).
 *   prefill: cm_gemm_select's tile for TYPE over ROWS x COLS weights and N tokens, with and
 *            without AVX-512 VNNI, plus the activation quantizer (cm_gemm_prep_fn);
 *   decode:  cm_dotq_select's row kernel over the same matrix, with and without AVX-512.
 * Build against the Release library (its AVX files carry their own -m flags), as bench/lib.sh's
 * bench_c_program does:
 *   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target locallm_lib
 *   cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude -Isrc bench/kernels.c \
 *       build/liblocallm.a -o /tmp/kernels $(pkg-config --libs libcjson libpcre2-8 libutf8proc libcurl) -lm -lpthread
 *   /tmp/kernels TYPE ROWS COLS N     e.g. /tmp/kernels Q4_0 896 4864 64 (the 0.5B FFN down)
 * Weights are random bytes with sane block scales: speed does not depend on the values. */
#include "compute/backend.h"
#include "compute/cpu/quants.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* keeps the decode loop from being optimized away */
volatile float g_sink;

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint32_t type_id(const char *name) {
    const uint32_t ids[] = {CM_Q4_0, CM_Q5_0, CM_Q8_0, CM_Q4_K, CM_Q5_K, CM_Q6_K};
    for (size_t i = 0; i < LM_ARRAY_LEN(ids); i++)
        if (!strcmp(cm_type_get(ids[i])->name, name)) return ids[i];
    return 0;
}

int main(int argc, char **argv) {
    uint32_t type = argc == 5 ? type_id(argv[1]) : 0;
    if (!type) {
        fprintf(stderr, "usage: kernels TYPE ROWS COLS N (TYPE: Q4_0 Q5_0 Q8_0 Q4_K Q5_K Q6_K)\n");
        return 2;
    }
    size_t rows = strtoul(argv[2], NULL, 10), cols = strtoul(argv[3], NULL, 10), n = strtoul(argv[4], NULL, 10);
    const cm_type_info *ti = cm_type_get(type);
    if (!rows || !n || !cols || cols % ti->block_size) {
        fprintf(stderr, "kernels: COLS must be a multiple of %u, ROWS and N positive\n", ti->block_size);
        return 2;
    }
    size_t rb = cols / ti->block_size * ti->block_bytes, nblk = rows * cols / ti->block_size;
    uint8_t *w8 = malloc(rows * rb);
    float *x = malloc(n * cols * sizeof(float)), *y = malloc(n * rows * sizeof(float));
    if (!w8 || !x || !y) return 1;
    lm_rng r;
    lm_rng_seed(&r, 1);
    for (size_t i = 0; i < rows * rb; i++) w8[i] = (uint8_t)lm_rng_next(&r);
    /* f16 scales of 2^-7 (0x2000) where the block keeps them, so no Inf/NaN slows anything */
    size_t off = type == CM_Q6_K ? 208 : 0;
    for (size_t b = 0; b < nblk; b++) {
        uint8_t *p = w8 + b * ti->block_bytes;
        p[off] = 0, p[off + 1] = 0x20;
        if (type == CM_Q4_K || type == CM_Q5_K) p[2] = 0, p[3] = 0x20;
    }
    for (size_t i = 0; i < n * cols; i++) x[i] = (float)(lm_rng_uniform(&r) * 2 - 1);
    cm_matrix w = {.type = type, .rows = rows, .cols = cols, .data = w8, .row_bytes = rb};
    uint32_t all = lm_cpu_features();
    const uint32_t v512 = LM_CPU_AVX512F | LM_CPU_AVX512BW | LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
    uint8_t *act = malloc(cm_gemm_act_bytes(n, cols) + 64), *scratch = malloc(cm_gemm_scratch_bytes(cols, n));
    uint8_t *xq = malloc(cols / 32 * 64 + cols / 256 * 292 + 64); /* Q8_0, Q8_0X4 or Q8_K */
    if (!act || !scratch || !xq) return 1;
    cm_gemm_act a = {n, cols, (n + CM_GEMM_TOK - 1) / CM_GEMM_TOK, (uint8_t *)(((uintptr_t)act + 63) & ~(uintptr_t)63)};
    for (int set = 0; set < 2; set++) {
        uint32_t f = set ? all & ~v512 : all;
        const char *name = set ? "avx2" : "best";
        cm_gemm_prep_fn prep = NULL;
        cm_gemm_fn fn = cm_gemm_select(type, f, &prep);
        if (fn) {
            double best = 1e9, bprep = 1e9;
            for (int it = 0; it < 7; it++) {
                double t0 = cpu_now();
                prep(x, cols, &a, 0, a.n_grp);
                double t1 = cpu_now();
                fn(&w, 0, rows, &a, y, rows, scratch);
                double t2 = cpu_now();
                best = LM_MIN(best, t2 - t1);
                bprep = LM_MIN(bprep, t1 - t0);
            }
            printf("%s prefill %-4s %zux%zu n=%zu: %.3f ms, %.1f GMAC/s; activations %.3f ms\n", name,
                   ti->name, rows, cols, n, best * 1e3, (double)rows * cols * n / best * 1e-9, bprep * 1e3);
        }
        uint32_t at = 0;
        cm_dotq_fn dq = cm_dotq_select(type, f, &at);
        if (dq && cm_quantize_ref(at, x, xq, cols)) {
            double best = 1e9;
            for (int it = 0; it < 7; it++) {
                double t0 = cpu_now();
                for (size_t i = 0; i < rows; i++) g_sink += dq(w8 + i * rb, xq, cols);
                best = LM_MIN(best, cpu_now() - t0);
            }
            printf("%s decode  %-4s %zux%zu: %.3f ms, %.1f GB/s of weights\n", name, ti->name, rows, cols,
                   best * 1e3, (double)rows * rb / best * 1e-9);
        }
        /* R16 (Q4_0 repacked at load, what the model runs for both decode and prefill) */
        cm_r16_fn r16 = cm_r16_select(type, f);
        size_t pb = cm_r16_bytes(&w), ab = (cm_r16_act_bytes(cols) + 63) & ~(size_t)63;
        uint8_t *packed = r16 && pb ? malloc(pb) : NULL, *ract = packed ? aligned_alloc(64, n * ab) : NULL;
        if (ract) {
            cm_r16_pack(&w, packed);
            for (size_t t = 0; t < n; t++) cm_r16_quantize_select(f)(x + t * cols, cols, ract + t * ab);
            double best = 1e9;
            for (int it = 0; it < 7; it++) {
                double t0 = cpu_now();
                r16(packed, cols, rows, 0, (rows + 15) / 16, ract, ab, n, y, rows);
                best = LM_MIN(best, cpu_now() - t0);
            }
            printf("%s r16     %-4s %zux%zu n=%zu: %.3f ms, %.1f GMAC/s, %.1f GB/s of weights\n", name, ti->name, rows,
                   cols, n, best * 1e3, (double)rows * cols * n / best * 1e-9, (double)pb / best * 1e-9);
        }
        free(packed);
        free(ract);
    }
    free(w8);
    free(x);
    free(y);
    free(act);
    free(scratch);
    free(xq);
    return 0;
}
