/* tests/unit/test_r16.c: the R16 layout (16 rows interleaved, compute/cpu/quants_r16_ref.c): a
 * repacked row reads back as the Q4_0 reference dequantizes it; the reference R16 kernel equals a
 * float dot of the dequantized row with the dequantized activations (to float rounding); the SIMD
 * kernel equals the reference bit for bit, for row counts that are not a multiple of 16 and any
 * number of tokens; and a token's result does not depend on the tokens beside it. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

#include "compute/cpu/quants.h"

typedef struct mat {
    cm_matrix w;
    uint8_t *q4, *packed;
} mat;

static void make(mat *m, size_t rows, size_t cols, uint64_t seed) {
    size_t rb = cols / 32 * 18;
    float *src = malloc(cols * sizeof(float));
    m->q4 = malloc(rows * rb);
    for (size_t r = 0; r < rows; r++) {
        tu_rand_floats(src, cols, seed + r);
        assert_true(cm_quantize_ref(CM_Q4_0, src, m->q4 + r * rb, cols));
    }
    free(src);
    m->w = (cm_matrix){.type = CM_Q4_0, .rows = rows, .cols = cols, .data = m->q4, .row_bytes = rb};
    size_t bytes = cm_r16_bytes(&m->w);
    assert_int_equal(bytes, (rows + 15) / 16 * rb * 16);
    m->packed = malloc(bytes);
    cm_r16_pack(&m->w, m->packed);
}

static void test_pack_roundtrip(void **state) {
    (void)state;
    static const size_t shapes[][2] = {{16, 32}, {17, 64}, {40, 96}, {1, 128}, {33, 896}};
    for (size_t s = 0; s < LM_ARRAY_LEN(shapes); s++) {
        mat m;
        make(&m, shapes[s][0], shapes[s][1], 100 + s);
        float *a = malloc(m.w.cols * sizeof(float)), *b = malloc(m.w.cols * sizeof(float));
        for (size_t r = 0; r < m.w.rows; r++) {
            cm_dequant_ref(CM_Q4_0, m.q4 + r * m.w.row_bytes, a, m.w.cols);
            cm_r16_dequant_row(m.packed, m.w.cols, r, b);
            assert_memory_equal(a, b, m.w.cols * sizeof(float));
        }
        free(a);
        free(b);
        free(m.q4);
        free(m.packed);
    }
    /* not every matrix can be repacked */
    cm_matrix q8 = {.type = CM_Q8_0, .rows = 16, .cols = 32};
    assert_int_equal(cm_r16_bytes(&q8), 0);
    cm_matrix odd = {.type = CM_Q4_0, .rows = 16, .cols = 48};
    assert_int_equal(cm_r16_bytes(&odd), 0);
}

/* Activations of n tokens in the R16 layout (64-byte aligned), from seeded floats; x keeps the
 * float values of the Q8_0 quantization. */
static uint8_t *acts(size_t n, size_t cols, uint64_t seed, float **xq, void **base) {
    size_t ab = cm_r16_act_bytes(cols);
    *base = malloc(n * ab + 64);
    uint8_t *a = (uint8_t *)(((uintptr_t)*base + 63) & ~(uintptr_t)63);
    float *x = malloc(cols * sizeof(float));
    *xq = malloc(n * cols * sizeof(float));
    uint8_t *blk = malloc(cols / 32 * 34);
    for (size_t t = 0; t < n; t++) {
        tu_rand_floats(x, cols, seed + t);
        cm_r16_quantize(x, cols, a + t * ab);
        cm_quantize_ref(CM_Q8_0, x, blk, cols);
        cm_dequant_ref(CM_Q8_0, blk, *xq + t * cols, cols);
    }
    free(x);
    free(blk);
    return a;
}

static void test_ref_against_float(void **state) {
    (void)state;
    mat m;
    make(&m, 37, 256, 7);
    float *xq;
    void *base;
    uint8_t *a = acts(3, 256, 11, &xq, &base);
    float y[3 * 37];
    cm_r16_gemm_ref(m.packed, 256, 37, 0, 3, a, cm_r16_act_bytes(256), 3, y, 37);
    float *row = malloc(256 * sizeof(float));
    for (size_t r = 0; r < 37; r++) {
        cm_dequant_ref(CM_Q4_0, m.q4 + r * m.w.row_bytes, row, 256);
        for (size_t t = 0; t < 3; t++) {
            double want = 0, mag = 0;
            for (size_t i = 0; i < 256; i++) {
                want += (double)row[i] * xq[t * 256 + i];
                mag += fabs((double)row[i] * xq[t * 256 + i]);
            }
            assert_true(fabs(y[t * 37 + r] - want) <= 1e-5 * mag + 1e-6);
        }
    }
    free(row);
    free(xq);
    free(base);
    free(m.q4);
    free(m.packed);
}

static void check_kernel(cm_r16_fn fn);

/* The best kernel of this CPU, then the AVX2 one where the CPU also has AVX-512. */
static void test_simd_bitwise(void **state) {
    (void)state;
    assert_null(cm_r16_select(CM_Q4_0, 0));
    uint32_t all = lm_cpu_features(), sets[2] = {all, all & (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C)};
    for (int fs = 0; fs < 2; fs++) {
        cm_r16_fn fn = cm_r16_select(CM_Q4_0, sets[fs]);
        /* no R16 kernel: the matrices stay in their own layout (the reference is tested above) */
        if (!fn || (fs == 1 && fn == cm_r16_select(CM_Q4_0, all))) continue;
        check_kernel(fn);
    }
}

static void check_kernel(cm_r16_fn fn) {
    static const size_t shapes[][2] = {{16, 32}, {37, 256}, {130, 896}, {5, 4864}};
    for (size_t s = 0; s < LM_ARRAY_LEN(shapes); s++) {
        size_t rows = shapes[s][0], cols = shapes[s][1], ng = (rows + 15) / 16, ab = cm_r16_act_bytes(cols);
        mat m;
        make(&m, rows, cols, 300 + s);
        for (size_t n = 1; n <= 20; n += (n < 9 ? 1 : 5)) {
            float *xq;
            void *base;
            uint8_t *a = acts(n, cols, 900 + n, &xq, &base);
            float *want = calloc(n * rows, sizeof(float)), *got = calloc(n * rows, sizeof(float));
            cm_r16_gemm_ref(m.packed, cols, rows, 0, ng, a, ab, n, want, rows);
            fn(m.packed, cols, rows, 0, ng, a, ab, n, got, rows);
            assert_memory_equal(want, got, n * rows * sizeof(float));
            /* each token alone gives its row of the batch, bit for bit */
            float *one = calloc(rows, sizeof(float));
            for (size_t t = 0; t < n; t++) {
                fn(m.packed, cols, rows, 0, ng, a + t * ab, ab, 1, one, rows);
                assert_memory_equal(one, got + t * rows, rows * sizeof(float));
            }
            /* groups computed in two calls write the same numbers */
            memset(got, 0, n * rows * sizeof(float));
            fn(m.packed, cols, rows, 0, ng / 2, a, ab, n, got, rows);
            fn(m.packed, cols, rows, ng / 2, ng, a, ab, n, got, rows);
            assert_memory_equal(want, got, n * rows * sizeof(float));
            free(one);
            free(want);
            free(got);
            free(xq);
            free(base);
        }
        free(m.q4);
        free(m.packed);
    }
}

/* The R16 activation quantizers of this CPU (its best, and the AVX2 one where it has more) write
 * the bytes cm_r16_quantize writes with the Q8_0 reference: quants, widened scales, the -8 *
 * sums; NaN and Inf blocks, zero blocks, ties at halves and extremes included. */
static void check_quantizer(cm_r16_quant_fn q);

static void test_quantize_select(void **state) {
    (void)state;
    assert_ptr_equal(cm_r16_quantize_select(0), cm_r16_quantize);
    uint32_t all = lm_cpu_features();
    check_quantizer(cm_r16_quantize_select(all));
    check_quantizer(cm_r16_quantize_select(all & (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C)));
#if defined(__x86_64__)
    if ((all & (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C)) == (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C))
        assert_true(cm_r16_quantize_select(all & (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C)) != cm_r16_quantize);
#elif defined(__aarch64__)
    if (all & LM_CPU_NEON) assert_true(cm_r16_quantize_select(all) != cm_r16_quantize);
#endif
}

static void check_quantizer(cm_r16_quant_fn q) {
    size_t cols = 4864, ab = cm_r16_act_bytes(cols);
    float *x = malloc(cols * sizeof(float));
    uint8_t *a = malloc(ab), *b = malloc(ab);
    assert_true(x && a && b);
    for (int round = 0; round < 24; round++) {
        tu_rand_floats(x, cols, 5000 + (uint64_t)round);
        for (size_t i = 0; i < cols; i++) x[i] *= round % 4 == 0 ? 1e-30f : round % 4 == 1 ? 1e4f : 1.0f;
        if (round == 5) x[7] = NAN;
        if (round == 6) x[40] = INFINITY, x[100] = -INFINITY;
        if (round == 7) for (size_t i = 64; i < 96; i++) x[i] = 0.0f;
        if (round == 8) for (size_t i = 0; i < 32; i++) x[i] = ((float)i - 16.0f) * 0.5f; /* halves: ties */
        if (round == 9) for (size_t i = 0; i < 32; i++) x[i] = i == 3 ? -127.0f : (float)i + 0.5f;
        if (round == 10) x[33] = 3.4e38f, x[34] = -3.4e38f;
        if (round == 11) for (size_t i = 0; i < 32; i++) x[i] = NAN;
        memset(a, 0x55, ab);
        memset(b, 0x55, ab);
        cm_r16_quantize(x, cols, a);
        q(x, cols, b);
        assert_memory_equal(a, b, cols + cols / 32 * 8);
    }
    free(x);
    free(a);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_roundtrip),
        cmocka_unit_test(test_ref_against_float),
        cmocka_unit_test(test_simd_bitwise),
        cmocka_unit_test(test_quantize_select),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
