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
        cm_r16_quantize(x, cols, a + t * ab, cm_quantize_select(CM_Q8_0, 0));
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

static void test_simd_bitwise(void **state) {
    (void)state;
    cm_r16_fn fn = cm_r16_select(CM_Q4_0, lm_cpu_features());
    if (!fn) {
        /* this CPU has no R16 kernel: the matrices stay in their own layout (nothing to test
           beyond the reference, which the other tests cover) */
        assert_null(cm_r16_select(CM_Q4_0, 0));
        return;
    }
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_roundtrip),
        cmocka_unit_test(test_ref_against_float),
        cmocka_unit_test(test_simd_bitwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
