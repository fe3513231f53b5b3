/* tests/unit/test_quants_mlx.c: the MLX integer kernels (quants_mlx_*.c) on seeded random MLX
 * matrices: the prepared activation, the oracle cm_mlx_dotq_ref against the float dot of the
 * dequantized row (with the exact bound of x's quantization error), and every SIMD kernel
 * (decode and the tiled prefill) against the oracle. */
#include "testutil.h"

#include "compute/backend.h"
#include "compute/cpu/quants.h"

#include <math.h>
#include <string.h>

typedef struct mlx_mat {
    cm_matrix m;
    uint8_t *q;        /* (rows, cols) quants, unpacked */
    uint32_t *words;
    void *scales, *biases;
} mlx_mat;

static void sb_put(uint32_t sb_type, void *base, size_t i, float v) {
    if (sb_type == CM_F32) ((float *)base)[i] = v;
    else ((uint16_t *)base)[i] = sb_type == CM_F16 ? lm_f32_to_f16(v) : lm_f32_to_bf16(v);
}
static float sb_get(uint32_t sb_type, const void *base, size_t i) {
    if (sb_type == CM_F32) return ((const float *)base)[i];
    uint16_t h = ((const uint16_t *)base)[i];
    return sb_type == CM_F16 ? lm_f16_to_f32(h) : lm_bf16_to_f32(h);
}

/* Random quants packed as MLX does (little-endian from the low bits of uint32 words), scales of
 * both signs, biases; written independently of the library's unpacking. */
static void mat_make(mlx_mat *f, size_t rows, size_t cols, uint32_t bits, uint32_t gs, uint32_t sb,
                     uint64_t seed) {
    lm_rng r;
    lm_rng_seed(&r, seed);
    size_t wpr = cols * bits / 32, ng = cols / gs, sbb = sb == CM_F32 ? 4 : 2;
    f->q = lm_malloc(rows * cols);
    f->words = lm_calloc(rows * wpr, 4);
    f->scales = lm_malloc(rows * ng * sbb);
    f->biases = lm_malloc(rows * ng * sbb);
    assert_true(f->q && f->words && f->scales && f->biases);
    for (size_t i = 0; i < rows * cols; i++) f->q[i] = (uint8_t)((lm_rng_next(&r) >> 40) & ((1u << bits) - 1));
    for (size_t rr = 0; rr < rows; rr++)
        for (size_t c = 0; c < cols; c++) {
            size_t bit = c * bits;
            f->words[rr * wpr + bit / 32] |= (uint32_t)f->q[rr * cols + c] << (bit % 32);
        }
    for (size_t i = 0; i < rows * ng; i++) {
        sb_put(sb, f->scales, i, (float)(lm_rng_uniform(&r) - 0.5) * 0.2f);
        sb_put(sb, f->biases, i, (float)(lm_rng_uniform(&r) - 0.5));
    }
    f->m = (cm_matrix){.type = CM_MLX, .rows = rows, .cols = cols, .data = f->words,
                       .row_bytes = wpr * 4, .bits = bits, .group_size = gs, .sb_type = sb,
                       .scales = f->scales, .biases = f->biases};
}

static void mat_free(mlx_mat *f) {
    lm_free(f->q);
    lm_free(f->words);
    lm_free(f->scales);
    lm_free(f->biases);
}

/* Activations with varied block magnitudes and one all-zero block (scale 0). */
static void make_x(float *x, size_t cols, uint64_t seed) {
    tu_rand_floats(x, cols, seed);
    for (size_t i = 0; i < cols; i++) x[i] *= (float)(1 + (i / 32) % 5);
    if (cols >= 64) memset(x + 32, 0, 32 * sizeof(float));
}

static const uint32_t k_bits[] = {4, 8}, k_gs[] = {32, 64, 128};
static const uint32_t k_sb[] = {CM_F16, CM_BF16, CM_F32};
/* Group counts cover the kernels' chunks of 8 groups and their tails. */
static const size_t k_groups[] = {1, 3, 8, 11, 17};

/* The prepared activation: per group, d = max|x| / 32767 (stored for each block of 32) and
 * q = round(x / d) in int16
 * (within 0.51 d: x / d is computed as x * (1 / d) in float)
 * (4-bit: each block of 32 even elements first), and per group the sum of d * q. */
static void test_quantize_x(void **state) {
    (void)state;
    for (size_t bi = 0; bi < LM_ARRAY_LEN(k_bits); bi++)
        for (size_t gi = 0; gi < LM_ARRAY_LEN(k_gs); gi++) {
            size_t cols = k_gs[gi] * 5, nb = cols / 32, ng = 5, gs = k_gs[gi];
            cm_matrix m = {.type = CM_MLX, .rows = 1, .cols = cols, .bits = k_bits[bi],
                           .group_size = k_gs[gi], .sb_type = CM_BF16};
            size_t bytes = cm_mlx_xq_bytes(&m), qoff = cm_mlx_xq_qoff(&m);
            assert_true(qoff % 32 == 0 && qoff >= (nb + ng) * 4 && bytes == qoff + 2 * cols);
            float *x = lm_malloc(cols * sizeof(float));
            uint8_t *a = lm_malloc(bytes), *b = lm_malloc(bytes);
            memset(a, 0, bytes);
            memset(b, 0xAB, bytes);
            make_x(x, cols, 5 + bi * 10 + gi);
            cm_mlx_quantize_x(&m, x, a, 0);
            cm_mlx_quantize_x(&m, x, b, lm_cpu_features());
            assert_memory_equal(a + qoff, b + qoff, 2 * cols);
            assert_memory_equal(a, b, (nb + ng) * 4);
            const float *d = (const float *)(void *)a, *gqsum = d + nb;
            const int16_t *q = (const int16_t *)(void *)(a + qoff);
            for (size_t g = 0; g < ng; g++) {
                double sq = 0;
                for (size_t i = g * k_gs[gi]; i < (g + 1) * k_gs[gi]; i++) {
                    size_t bl = i / 32, j = i % 32;
                    double amax = 0;
                    for (size_t k = g * gs; k < (g + 1) * gs; k++) amax = fmax(amax, fabs(x[k]));
                    double dd = amax / 32767;
                    int16_t got = k_bits[bi] == 4 ? q[bl * 32 + (j % 2) * 16 + j / 2] : q[i];
                    if (fabs(d[bl] - dd) > 1e-6 * dd || fabs(got * dd - x[i]) > dd * 0.51)
                        fail_msg("bits %u gs %u elem %zu: q %d d %g for x %g (d want %g)", k_bits[bi],
                                 k_gs[gi], i, got, d[bl], x[i], dd);
                    if (bl == 1) assert_true(got == 0); /* the zero block */
                    sq += (double)d[bl] * got;
                }
                assert_true(fabs(gqsum[g] - sq) <= 1e-5 * (fabs(sq) + 1));
            }
            /* A NaN makes its block's scale NaN, so it reaches the products. */
            x[3] = NAN;
            cm_mlx_quantize_x(&m, x, a, 0);
            assert_true(isnan(((const float *)(void *)a)[0]));
            lm_free(x);
            lm_free(a);
            lm_free(b);
        }
}

/* Tolerances:
 *  oracle vs the float dot of the dequantized row: x's rounding to 8 bits moves each product
 *  by at most |w_i| d_b / 2, so |oracle - exact| <= sum |w_i| d_b / 2 (+ float rounding);
 *  kernels vs oracle: only float summation order differs, so 1e-5 of the sum of the magnitudes
 *  of the terms (sum_g |s| sum_i |q d xq| + |bias gqsum|) plus 1e-6. */
static void test_kernels(void **state) {
    (void)state;
    uint32_t feat = lm_cpu_features();
    size_t rows = 7, n_checked = 0;
    for (size_t bi = 0; bi < LM_ARRAY_LEN(k_bits); bi++)
        for (size_t gi = 0; gi < LM_ARRAY_LEN(k_gs); gi++)
            for (size_t si = 0; si < LM_ARRAY_LEN(k_sb); si++)
                for (size_t ni = 0; ni < LM_ARRAY_LEN(k_groups); ni++) {
                    uint32_t bits = k_bits[bi], gs = k_gs[gi], sb = k_sb[si];
                    size_t cols = gs * k_groups[ni], ng = k_groups[ni], n_tok = 11;
                    mlx_mat f;
                    mat_make(&f, rows, cols, bits, gs, sb, 1000 + bi * 100 + gi * 10 + si + ni * 7);
                    size_t xb = cm_mlx_xq_bytes(&f.m);
                    float *x = lm_malloc(n_tok * cols * sizeof(float)), *y = lm_malloc(n_tok * rows * sizeof(float));
                    uint8_t *xq = lm_malloc(n_tok * xb);
                    assert_true(x && y && xq);
                    for (size_t t = 0; t < n_tok; t++) {
                        make_x(x + t * cols, cols, 50 + t + ni);
                        cm_mlx_quantize_x(&f.m, x + t * cols, xq + t * xb, feat);
                    }
                    /* every kernel this CPU has: AVX2 alone, then the best (AVX-512) */
                    for (int k = 0; k < 2; k++) {
                    uint32_t fs = k == 0 ? feat & (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C | LM_CPU_NEON) : feat;
                    cm_mlx_dotq_fn dq = cm_mlx_dotq_select(&f.m, fs);
                    cm_mlx_gemmq_fn gq = cm_mlx_gemmq_select(&f.m, fs);
                    assert_true((dq == NULL) == (gq == NULL));
                    if (gq) gq(&f.m, 1, rows, xq, xb, n_tok, y, rows);
                    for (size_t t = 0; t < n_tok; t++) {
                        const float *xt = x + t * cols;
                        const uint8_t *at = xq + t * xb;
                        const float *d = (const float *)(const void *)at, *gqsum = d + cols / 32;
                        for (size_t r = 0; r < rows; r++) {
                            double exact = 0, bound = 0, mag = 0;
                            for (size_t g = 0; g < ng; g++) {
                                double s = sb_get(sb, f.scales, r * ng + g), bias = sb_get(sb, f.biases, r * ng + g);
                                double gm = 0;
                                for (size_t i = g * gs; i < (g + 1) * gs; i++) {
                                    double qi = f.q[r * cols + i];
                                    exact += (s * qi + bias) * xt[i];
                                    bound += fabs(s * qi + bias) * d[i / 32] / 2;
                                    gm += qi * fabs(xt[i]) * 1.01;
                                }
                                mag += fabs(s) * gm + fabs(bias * gqsum[g]);
                            }
                            float ref = cm_mlx_dotq_ref(&f.m, r, at);
                            if (fabs(ref - exact) > bound * 1.001 + 1e-5 * mag + 1e-6)
                                fail_msg("oracle bits %u gs %u sb %u cols %zu row %zu: %g vs exact %g (bound %g)",
                                         bits, gs, sb, cols, r, ref, exact, bound);
                            double tol = 1e-5 * mag + 1e-6;
                            if (dq) {
                                float got = dq(&f.m, r, at);
                                if (fabs(got - ref) > tol)
                                    fail_msg("dotq bits %u gs %u sb %u cols %zu row %zu: %.9g vs ref %.9g",
                                             bits, gs, sb, cols, r, got, ref);
                                n_checked++;
                            }
                            if (gq && r >= 1) {
                                float got = y[t * rows + r];
                                if (fabs(got - ref) > tol)
                                    fail_msg("gemmq bits %u gs %u sb %u cols %zu row %zu tok %zu: %.9g vs ref %.9g",
                                             bits, gs, sb, cols, r, t, got, ref);
                            }
                        }
                    }
                    }
                    lm_free(x);
                    lm_free(y);
                    lm_free(xq);
                    mat_free(&f);
                }
#ifdef CM_HAVE_X86_KERNELS
    if ((feat & (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C)) == (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C))
        assert_true(n_checked > 0);
#endif
    (void)n_checked;
}

/* A whole product over a pool of 3 threads (and none): rows not a multiple of the 8-row units,
 * every token against the oracle with the tolerance of test_kernels (relative to the terms'
 * magnitude, here bounded by 1e-4 of sum |w x| + 1e-5). */
static void test_matmul(void **state) {
    (void)state;
    uint32_t feat = lm_cpu_features();
    lm_pool *pool = lm_pool_new(3);
    assert_non_null(pool);
    const size_t rows = 37, n = 21; /* two tiles of 16 tokens, the second partial */
    for (size_t bi = 0; bi < LM_ARRAY_LEN(k_bits); bi++)
    for (size_t gi = 0; gi < LM_ARRAY_LEN(k_gs); gi++) {
        mlx_mat f;
        size_t gs = k_gs[gi], cols = gs * 7;
        uint32_t sb = k_sb[gi];
        mat_make(&f, rows, cols, k_bits[bi], (uint32_t)gs, sb, 77 + bi * 10 + gi);
        float *x = lm_malloc(n * cols * sizeof(float)), *y = lm_malloc(n * rows * sizeof(float));
        for (size_t t = 0; t < n; t++) make_x(x + t * cols, cols, 900 + t);
        uint8_t *buf = NULL, *one = lm_malloc(cm_mlx_xq_bytes(&f.m));
        size_t cap = 0;
        for (int use_pool = 0; use_pool < 2; use_pool++) {
            memset(y, 0, n * rows * sizeof(float));
            bool ok = cm_mlx_matmul(use_pool ? pool : NULL, feat, cm_mlx_gemmq_select(&f.m, feat), &buf, &cap, &f.m, x, n, y);
            assert_true(ok == (cm_mlx_gemmq_select(&f.m, feat) != NULL));
            if (!ok) continue;
            for (size_t t = 0; t < n; t++) {
                cm_mlx_quantize_x(&f.m, x + t * cols, one, feat);
                for (size_t r = 0; r < rows; r++) {
                    double want = cm_mlx_dotq_ref(&f.m, r, one), mag = 0;
                    for (size_t i = 0; i < cols; i++) {
                        size_t g = r * (cols / gs) + i / gs;
                        double w = sb_get(sb, f.scales, g) * f.q[r * cols + i] + sb_get(sb, f.biases, g);
                        mag += fabs(w * x[t * cols + i]);
                    }
                    if (fabs(y[t * rows + r] - want) > 1e-4 * mag + 1e-5)
                        fail_msg("matmul bits %u gs %zu pool %d tok %zu row %zu: %g vs %g", k_bits[bi], gs,
                                 use_pool, t, r, y[t * rows + r], want);
                }
            }
        }
        assert_false(cm_mlx_matmul(pool, feat, cm_mlx_gemmq_select(&f.m, feat), &buf, &cap, &f.m, x, 0, y));
        assert_false(cm_mlx_matmul(pool, 0, cm_mlx_gemmq_select(&f.m, 0), &buf, &cap, &f.m, x, n, y));
        lm_free(buf);
        lm_free(one);
        lm_free(x);
        lm_free(y);
        mat_free(&f);
    }
    lm_pool_free(pool);
}

/* Shapes without an integer kernel are refused, so callers keep the float path. */
static void test_select(void **state) {
    (void)state;
    uint32_t feat = lm_cpu_features();
    cm_matrix m = {.type = CM_MLX, .rows = 1, .cols = 256, .bits = 4, .group_size = 64, .sb_type = CM_BF16};
    assert_null(cm_mlx_dotq_select(&m, 0));
    assert_null(cm_mlx_gemmq_select(&m, 0));
    cm_matrix bad = m;
    bad.bits = 3;
    assert_null(cm_mlx_dotq_select(&bad, feat));
    bad = m;
    bad.group_size = 16;
    assert_null(cm_mlx_dotq_select(&bad, feat));
    bad.group_size = 256; /* past the int32 headroom the kernels are written for */
    assert_null(cm_mlx_dotq_select(&bad, feat));
    bad = m;
    bad.sb_type = CM_Q8_0;
    assert_null(cm_mlx_dotq_select(&bad, feat));
    bad = m;
    bad.type = CM_Q4_0;
    assert_null(cm_mlx_gemmq_select(&bad, feat));
#ifdef CM_HAVE_X86_KERNELS
    const uint32_t avx2 = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C;
    const uint32_t avx512 = avx2 | LM_CPU_AVX512F | LM_CPU_AVX512BW | LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
    if ((feat & avx2) == avx2) {
        assert_ptr_equal(cm_mlx_dotq_select(&m, avx2), cm_mlx_dotq_avx2);
        assert_ptr_equal(cm_mlx_gemmq_select(&m, avx2), cm_mlx_gemmq_avx2);
    }
    if ((feat & avx512) == avx512) {
        assert_ptr_equal(cm_mlx_dotq_select(&m, feat), cm_mlx_dotq_avx512);
        assert_ptr_equal(cm_mlx_gemmq_select(&m, feat), cm_mlx_gemmq_avx512);
    }
#endif
    /* The oracle gives 0 for a shape it does not handle rather than reading out of bounds. */
    bad = m;
    bad.bits = 3;
    uint8_t xq[1024] = {0};
    assert_true(cm_mlx_dotq_ref(&bad, 0, xq) == 0.0f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_x),
        cmocka_unit_test(test_kernels),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_select),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
