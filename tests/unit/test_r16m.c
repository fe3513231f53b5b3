/* tests/unit/test_r16m.c: MLX 4-bit matrices repacked into the R16M layout
 * (compute/cpu/quants_r16m_ref.c): a repacked row reads back as the MLX reference dequantizes it;
 * the reference kernel equals a double dot of the dequantized row with the float activations to
 * within the 16-bit rounding of the activations (measured and bounded here: the MLX fixtures'
 * tolerance is 2e-3); the SIMD kernel equals the reference bit for bit for row counts that are
 * not a multiple of 16, every scale type and group size, and any number of tokens; a token's
 * result does not depend on the tokens beside it. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "compute/cpu/quants.h"

typedef struct mat {
    cm_matrix w;
    uint8_t *q, *sc, *bi, *packed;
} mat;

static void put_sb(uint32_t sb, uint8_t *p, float v) {
    if (sb == CM_F32) memcpy(p, &v, 4);
    else {
        uint16_t h = sb == CM_BF16 ? lm_f32_to_bf16(v) : lm_f32_to_f16(v);
        p[0] = (uint8_t)h;
        p[1] = (uint8_t)(h >> 8);
    }
}

static void make(mat *m, size_t rows, size_t cols, uint32_t gs, uint32_t sb, uint64_t seed) {
    size_t ng = cols / gs, sz = sb == CM_F32 ? 4 : 2;
    m->q = malloc(rows * cols / 2);
    m->sc = malloc(rows * ng * sz);
    m->bi = malloc(rows * ng * sz);
    uint64_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < rows * cols / 2; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        m->q[i] = (uint8_t)(s >> 56);
    }
    float *f = malloc(2 * rows * ng * sizeof(float));
    tu_rand_floats(f, 2 * rows * ng, seed + 77);
    for (size_t i = 0; i < rows * ng; i++) {
        put_sb(sb, m->sc + i * sz, 0.02f * fabsf(f[i]) + 1e-3f);
        put_sb(sb, m->bi + i * sz, -0.15f * f[rows * ng + i]);
    }
    free(f);
    m->w = (cm_matrix){.type = CM_MLX, .rows = rows, .cols = cols, .data = m->q, .row_bytes = cols / 2, .bits = 4,
                       .group_size = gs, .sb_type = sb, .scales = m->sc, .biases = m->bi};
    size_t bytes = cm_r16m_bytes(&m->w);
    assert_int_equal(bytes, (rows + 15) / 16 * 16 * (cols / 2 + 2 * ng * sz));
    m->packed = malloc(bytes);
    /* in two slices, as the backend packs big matrices */
    size_t mid = rows > 16 ? 16 : rows;
    cm_r16m_pack_rows(&m->w, m->packed, 0, mid);
    if (mid < rows) cm_r16m_pack_rows(&m->w, m->packed, mid, rows);
}

static void drop(mat *m) {
    free(m->q);
    free(m->sc);
    free(m->bi);
    free(m->packed);
}

static const uint32_t SB[] = {CM_F16, CM_BF16, CM_F32};

static void test_pack_roundtrip(void **state) {
    (void)state;
    static const size_t shapes[][3] = {{16, 64, 32}, {17, 128, 64}, {40, 256, 128}, {1, 128, 128}, {33, 896, 64}};
    for (size_t s = 0; s < LM_ARRAY_LEN(shapes); s++)
        for (size_t k = 0; k < 3; k++) {
            mat m;
            make(&m, shapes[s][0], shapes[s][1], (uint32_t)shapes[s][2], SB[k], 100 + s);
            float *a = malloc(m.w.cols * sizeof(float)), *b = malloc(m.w.cols * sizeof(float));
            for (size_t r = 0; r < m.w.rows; r++) {
                cm_mlx_dequant_row(&m.w, r, a);
                cm_r16m_dequant_row(&m.w, m.packed, r, b);
                for (size_t i = 0; i < m.w.cols; i++) assert_true(fabsf(a[i] - b[i]) <= 1e-6f * (fabsf(a[i]) + 1.0f));
            }
            free(a);
            free(b);
            drop(&m);
        }
    /* what cannot be repacked */
    cm_matrix q4 = {.type = CM_Q4_0, .rows = 16, .cols = 32};
    assert_int_equal(cm_r16m_bytes(&q4), 0);
    cm_matrix b8 = {.type = CM_MLX, .rows = 16, .cols = 64, .row_bytes = 64, .bits = 8, .group_size = 64, .sb_type = CM_F16};
    assert_int_equal(cm_r16m_bytes(&b8), 0);
    cm_matrix g48 = {.type = CM_MLX, .rows = 16, .cols = 96, .row_bytes = 48, .bits = 4, .group_size = 48, .sb_type = CM_F16};
    assert_int_equal(cm_r16m_bytes(&g48), 0);
    assert_null(cm_r16m_select(&g48, lm_cpu_features()));
}

static uint8_t *acts(size_t n, size_t cols, uint64_t seed, float **x, void **base) {
    size_t ab = cm_r16m_act_bytes(cols);
    *base = malloc(n * ab + 64);
    uint8_t *a = (uint8_t *)(((uintptr_t)*base + 63) & ~(uintptr_t)63);
    *x = malloc(n * cols * sizeof(float));
    for (size_t t = 0; t < n; t++) {
        tu_rand_floats(*x + t * cols, cols, seed + t);
        cm_r16m_quantize(*x + t * cols, cols, a + t * ab);
    }
    return a;
}

/* Against the float product: the only error is the activations' 16-bit rounding (relative
 * 1/65024 per element at worst), so the worst row is far inside the fixtures' 2e-3. */
static void test_ref_against_float(void **state) {
    (void)state;
    double worst = 0;
    for (size_t k = 0; k < 3; k++) {
        mat m;
        make(&m, 37, 512, 64, SB[k], 7 + k);
        float *x;
        void *base;
        uint8_t *a = acts(3, 512, 11, &x, &base);
        float y[3 * 37];
        cm_r16m_gemm_ref(&m.w, m.packed, 0, 3, a, cm_r16m_act_bytes(512), 3, y, 37);
        float *row = malloc(512 * sizeof(float));
        for (size_t r = 0; r < 37; r++) {
            cm_mlx_dequant_row(&m.w, r, row);
            for (size_t t = 0; t < 3; t++) {
                double want = 0, mag = 0;
                for (size_t i = 0; i < 512; i++) {
                    want += (double)row[i] * x[t * 512 + i];
                    mag += fabs((double)row[i] * x[t * 512 + i]);
                }
                double e = fabs(y[t * 37 + r] - want) / mag;
                worst = fmax(worst, e);
                assert_true(e <= 2e-5);
            }
        }
        free(row);
        free(x);
        free(base);
        drop(&m);
    }
    if (getenv("LM_TEST_VERBOSE")) fprintf(stderr, "r16m: worst error relative to sum|w x|: %.3g\n", worst);
    /* non-finite activations give non-finite products, as the float kernels do */
    mat m;
    make(&m, 16, 64, 64, CM_F16, 5);
    void *base = malloc(cm_r16m_act_bytes(64) + 64);
    uint8_t *a = (uint8_t *)(((uintptr_t)base + 63) & ~(uintptr_t)63);
    float x[64] = {0}, y[16];
    x[3] = NAN;
    cm_r16m_quantize(x, 64, a);
    cm_r16m_gemm_ref(&m.w, m.packed, 0, 1, a, 0, 1, y, 16);
    assert_true(isnan(y[0]));
    free(base);
    drop(&m);
}

static void check_kernel(cm_r16m_fn fn, uint32_t feat);

/* The best kernel of this CPU, then the AVX2 one where the CPU also has AVX-512. */
static void test_simd_bitwise(void **state) {
    (void)state;
    mat probe;
    make(&probe, 16, 64, 64, CM_F16, 1);
    assert_null(cm_r16m_select(&probe.w, 0));
    uint32_t all = lm_cpu_features(), sets[2] = {all, all & (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C)};
    for (int fs = 0; fs < 2; fs++) {
        cm_r16m_fn fn = cm_r16m_select(&probe.w, sets[fs]);
        /* no R16M kernel: MLX matrices keep their layout and kernels */
        if (!fn || (fs == 1 && fn == cm_r16m_select(&probe.w, all))) continue;
        check_kernel(fn, sets[fs]);
    }
    drop(&probe);
}

static void check_kernel(cm_r16m_fn fn, uint32_t feat) {
    static const size_t shapes[][3] = {{16, 64, 64}, {37, 256, 32}, {130, 896, 64}, {5, 4864, 128}, {19, 2048, 64}};
    size_t n_tested = 0;
    for (size_t s = 0; s < LM_ARRAY_LEN(shapes); s++)
        for (size_t k = 0; k < 3; k++) {
            size_t rows = shapes[s][0], cols = shapes[s][1], ng = (rows + 15) / 16, ab = cm_r16m_act_bytes(cols);
            mat m;
            make(&m, rows, cols, (uint32_t)shapes[s][2], SB[k], 300 + s);
            assert_ptr_equal(cm_r16m_select(&m.w, feat), fn);
            for (size_t n = 1; n <= 20; n += (n < 9 ? 1 : 5)) {
                float *x;
                void *base;
                uint8_t *a = acts(n, cols, 900 + n, &x, &base);
                float *want = calloc(n * rows, sizeof(float)), *got = calloc(n * rows, sizeof(float));
                cm_r16m_gemm_ref(&m.w, m.packed, 0, ng, a, ab, n, want, rows);
                fn(&m.w, m.packed, 0, ng, a, ab, n, got, rows);
                assert_memory_equal(want, got, n * rows * sizeof(float));
                float *one = calloc(rows, sizeof(float));
                for (size_t t = 0; t < n; t++) {
                    fn(&m.w, m.packed, 0, ng, a + t * ab, ab, 1, one, rows);
                    assert_memory_equal(one, got + t * rows, rows * sizeof(float));
                }
                memset(got, 0, n * rows * sizeof(float));
                fn(&m.w, m.packed, 0, ng / 2, a, ab, n, got, rows);
                fn(&m.w, m.packed, ng / 2, ng, a, ab, n, got, rows);
                assert_memory_equal(want, got, n * rows * sizeof(float));
                n_tested++;
                free(one);
                free(want);
                free(got);
                free(x);
                free(base);
            }
            drop(&m);
        }
    assert_int_equal(n_tested, 5 * 3 * 11); /* n = 1..9, 14, 19 */
}

/* The SIMD quantizer writes the reference's bytes, NaN and Inf blocks, ties and extremes included. */
static void test_quantize_select(void **state) {
    (void)state;
    assert_ptr_equal(cm_r16m_quantize_select(0), cm_r16m_quantize);
    cm_r16m_quant_fn q = cm_r16m_quantize_select(lm_cpu_features());
    size_t cols = 4864, ab = cm_r16m_act_bytes(cols);
    float *x = malloc(cols * sizeof(float));
    uint8_t *a = malloc(ab), *b = malloc(ab);
    for (int round = 0; round < 20; round++) {
        tu_rand_floats(x, cols, 4000 + (uint64_t)round);
        for (size_t i = 0; i < cols; i++) x[i] *= round % 4 == 0 ? 1e-30f : round % 4 == 1 ? 1e4f : 1.0f;
        if (round == 5) x[7] = NAN;
        if (round == 6) x[40] = INFINITY;
        if (round == 7) for (size_t i = 64; i < 96; i++) x[i] = 0.0f;
        if (round == 8) for (size_t i = 0; i < 32; i++) x[i] = (float)i - 16.0f; /* exact quarters after scaling */
        memset(a, 0x55, ab);
        memset(b, 0x55, ab);
        cm_r16m_quantize(x, cols, a);
        q(x, cols, b);
        assert_memory_equal(a, b, 2 * cols); /* hi and lo */
        for (size_t k = 0; k < 2 * cols / 32; k++) {
            float fa, fb;
            memcpy(&fa, a + 2 * cols + 4 * k, 4);
            memcpy(&fb, b + 2 * cols + 4 * k, 4);
            assert_true((fa != fa && fb != fb) || !memcmp(&fa, &fb, 4));
        }
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
