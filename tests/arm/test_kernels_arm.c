/* tests/arm/test_kernels_arm.c: the NEON kernels (compute/cpu/quants_neon.c) against the
 * reference (quants_ref.c) on seeded random inputs, cross-compiled for AArch64 and run under
 * qemu-aarch64 by `make test-arm`. Self-contained (no cmocka, no cJSON library) so that only a
 * cross C compiler and its libc are needed.
 *
 * Tolerances:
 *  - quantizers (Q8_0, Q8_K): byte-identical to cm_quantize_ref;
 *  - dequantizers: bit-identical to cm_dequant_ref (both built with -ffp-contract=off), a NaN
 *    input only has to give a NaN of the same sign;
 *  - dots (float and integer, MLX too): |got - ref| <= 1e-5 * sum |w_i x_i| (the sum of the
 *    magnitudes of the terms; a relative error on the result itself means nothing when the terms
 *    cancel).
 *    The integer kernels sum exactly in integers, so only the float scaling rounds.
 * Usage: test_kernels_arm [--expect-dotprod 0|1]: also checks lm_cpu_features() against what the
 * emulated CPU has (qemu -cpu max has FEAT_DotProd, -cpu cortex-a53 does not). */
#include "compute/backend.h"
#include "compute/cpu/quants.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef CM_HAVE_NEON_KERNELS
#error "test_kernels_arm.c is built for AArch64 only"
#endif

static long g_checks, g_fails;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        g_checks++;                                                       \
        if (!(cond)) {                                                    \
            if (g_fails++ < 25) {                                         \
                printf("FAIL %s:%d: ", __FILE__, __LINE__);               \
                printf(__VA_ARGS__);                                      \
                printf("\n");                                             \
            }                                                             \
        }                                                                 \
    } while (0)

/* ---- seeded random numbers (splitmix64) ---- */

static uint64_t g_seed = 0x9E3779B97F4A7C15ull;
static uint64_t rnd64(void) {
    uint64_t z = (g_seed += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint32_t rndu(uint32_t n) { return (uint32_t)(rnd64() % n); }
/* uniform in [-1, 1) */
static float rndf(void) { return (float)((double)(rnd64() >> 11) * 0x1p-53 * 2.0 - 1.0); }
/* Activations of mixed magnitudes, with an outlier now and then (as real hidden states). */
static void fill_x(float *x, size_t n) {
    float scale = ldexpf(1.0f, (int)rndu(12) - 6);
    for (size_t i = 0; i < n; i++) {
        x[i] = rndf() * scale;
        if (rndu(64) == 0) x[i] *= 20.0f;
    }
}
static void fill_bytes(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd64();
}
static void put_f16(uint8_t *p, float v) {
    uint16_t h = lm_f32_to_f16(v);
    memcpy(p, &h, 2);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        printf("out of memory\n");
        exit(2);
    }
    return p;
}

static bool close_to(double got, double ref, double mag, double rel) {
    if (isnan(got) || isnan(ref)) return isnan(got) && isnan(ref);
    return fabs(got - ref) <= rel * mag + 1e-30;
}

/* sum |w_i x_i| over the dequantized row and activation. */
static double mag_of(uint32_t type, const void *row, const float *x, size_t n) {
    float *w = xmalloc(n * sizeof(float));
    cm_dequant_ref(type, row, w, n);
    double m = 0;
    for (size_t i = 0; i < n; i++) m += fabs((double)w[i] * (double)x[i]);
    free(w);
    return m;
}

/* ---- float dots ---- */

static void test_float_dots(void) {
    static const struct { uint32_t type; cm_dot_fn fn; size_t el; } k[] = {
        {CM_F32, cm_dot_f32_neon, 4},
        {CM_F16, cm_dot_f16_neon, 2},
        {CM_BF16, cm_dot_bf16_neon, 2},
    };
    static const size_t lens[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 100, 257, 1000, 4099};
    for (size_t t = 0; t < LM_ARRAY_LEN(k); t++) {
        for (size_t li = 0; li < LM_ARRAY_LEN(lens); li++) {
            size_t n = lens[li];
            float *x = xmalloc(n * sizeof(float)), *wf = xmalloc(n * sizeof(float));
            /* one spare byte so the row can start at an odd address */
            uint8_t *buf = xmalloc(n * k[t].el + 1);
            for (int r = 0; r < 20; r++) {
                fill_x(x, n);
                fill_x(wf, n);
                /* F16 rows reach down into the subnormals */
                if (k[t].type == CM_F16)
                    for (size_t i = 0; i < n; i++) wf[i] *= ldexpf(1.0f, -(int)rndu(20));
                uint8_t *row = buf + (r & 1);
                cm_quantize_ref(k[t].type, wf, row, n);
                float got = k[t].fn(row, x, n), ref = cm_dot_ref(k[t].type, row, x, n);
                double mag = mag_of(k[t].type, row, x, n);
                CHECK(close_to(got, ref, mag, 1e-5), "dot %s n=%zu row %d: %.9g vs ref %.9g (mag %.3g)",
                      cm_type_get(k[t].type)->name, n, r, got, ref, mag);
            }
            free(x);
            free(wf);
            free(buf);
        }
    }
}

/* ---- quantizers ---- */

/* Blocks that stress the rounding rules: exact ties, NaN, infinities, zeros, subnormals. */
static void fill_special(float *x, size_t n, int kind) {
    for (size_t i = 0; i < n; i++) {
        switch (kind) {
        case 0: /* max 127 gives d = 1: every k + 0.5 is a tie */
            x[i] = i % 32 == 0 ? 127.0f : (float)((int)rndu(254) - 127) + 0.5f;
            break;
        case 1: x[i] = rndu(9) == 0 ? NAN : rndf(); break;
        case 2: x[i] = i == 5 ? INFINITY : i == 9 ? -INFINITY : rndf(); break;
        case 3: x[i] = 0.0f; break;
        case 4: x[i] = rndf() * 0x1p-140f; break;
        case 5: x[i] = rndf() * 3e38f; break;
        default: x[i] = (float)((int)rndu(255) - 127) * 0.25f; break; /* many ties at other d */
        }
    }
}

static void test_quantizers(void) {
    static const struct { uint32_t type; cm_quantize_fn fn; size_t qk, bytes; } k[] = {
        {CM_Q8_0, cm_quantize_q8_0_neon, 32, 34},
        {CM_Q8_K, cm_quantize_q8_k_neon, 256, 292},
    };
    for (size_t t = 0; t < LM_ARRAY_LEN(k); t++) {
        for (int trial = 0; trial < 200; trial++) {
            size_t nb = 1 + rndu(8), n = nb * k[t].qk;
            float *x = xmalloc(n * sizeof(float));
            uint8_t *a = xmalloc(nb * k[t].bytes), *b = xmalloc(nb * k[t].bytes);
            if (trial < 7 * 4) fill_special(x, n, trial % 7);
            else fill_x(x, n);
            memset(a, 0xAA, nb * k[t].bytes);
            memset(b, 0x55, nb * k[t].bytes);
            cm_quantize_ref(k[t].type, x, a, n);
            k[t].fn(x, b, n);
            size_t diff = 0;
            while (diff < nb * k[t].bytes && a[diff] == b[diff]) diff++;
            CHECK(diff == nb * k[t].bytes, "quantize %s trial %d n=%zu: first differing byte %zu (%d vs ref %d)",
                  cm_type_get(k[t].type)->name, trial, n, diff, diff < nb * k[t].bytes ? b[diff] : 0,
                  diff < nb * k[t].bytes ? a[diff] : 0);
            free(x);
            free(a);
            free(b);
        }
    }
}

/* ---- weight rows ---- */

/* n elements of type: half the time quantized from floats (realistic, where the reference has a
 * quantizer), otherwise random bytes with sane f16 super-scales (every quant bit pattern, int8
 * scales down to -128). */
static void make_row(uint32_t type, uint8_t *row, size_t n) {
    const cm_type_info *t = cm_type_get(type);
    size_t nb = n / t->block_size;
    if (rndu(2)) {
        float *w = xmalloc(n * sizeof(float));
        fill_x(w, n);
        bool ok = cm_quantize_ref(type, w, row, n); /* false for Q2_K, Q3_K: random bytes then */
        free(w);
        if (ok) return;
    }
    fill_bytes(row, nb * t->block_bytes);
    for (size_t i = 0; i < nb; i++) {
        uint8_t *b = row + i * t->block_bytes;
        switch (type) {
        case CM_Q4_K:
        case CM_Q5_K:
            put_f16(b, rndf() * 0.01f);
            put_f16(b + 2, rndf() * 0.01f);
            break;
        case CM_Q6_K: put_f16(b + 208, rndf() * 0.01f); break;
        case CM_Q2_K:
            put_f16(b + 80, rndf() * 0.01f);
            put_f16(b + 82, rndf() * 0.01f);
            break;
        case CM_Q3_K: put_f16(b + 108, rndf() * 0.01f); break;
        default: put_f16(b, rndf() * 0.1f); break;
        }
    }
}

/* ---- integer dots ---- */

typedef struct {
    uint32_t type, act;
    cm_dotq_fn plain, dp; /* dp NULL when not built */
} dotq_case;

#ifdef CM_HAVE_NEON_DOTPROD
#define DP(f) f
#else
#define DP(f) NULL
#endif

static void test_dotq(bool have_dp) {
    static const dotq_case k[] = {
        {CM_Q8_0, CM_Q8_0, cm_dotq_q8_0_neon, DP(cm_dotq_q8_0_neon_dp)},
        {CM_Q4_0, CM_Q8_0, cm_dotq_q4_0_neon, DP(cm_dotq_q4_0_neon_dp)},
        {CM_Q5_0, CM_Q8_0, cm_dotq_q5_0_neon, DP(cm_dotq_q5_0_neon_dp)},
        {CM_Q2_K, CM_Q8_K, cm_dotq_q2_k_neon, DP(cm_dotq_q2_k_neon_dp)},
        {CM_Q3_K, CM_Q8_K, cm_dotq_q3_k_neon, DP(cm_dotq_q3_k_neon_dp)},
        {CM_Q4_K, CM_Q8_K, cm_dotq_q4_k_neon, DP(cm_dotq_q4_k_neon_dp)},
        {CM_Q5_K, CM_Q8_K, cm_dotq_q5_k_neon, DP(cm_dotq_q5_k_neon_dp)},
        {CM_Q6_K, CM_Q8_K, cm_dotq_q6_k_neon, DP(cm_dotq_q6_k_neon_dp)},
    };
    static const size_t blocks[] = {1, 2, 3, 5, 8, 9, 17};
    for (size_t t = 0; t < LM_ARRAY_LEN(k); t++) {
        const cm_type_info *tw = cm_type_get(k[t].type), *ta = cm_type_get(k[t].act);
        for (size_t bi = 0; bi < LM_ARRAY_LEN(blocks); bi++) {
            size_t n = blocks[bi] * ta->block_size;
            size_t row_bytes = n / tw->block_size * tw->block_bytes;
            float *x = xmalloc(n * sizeof(float)), *xd = xmalloc(n * sizeof(float));
            uint8_t *xq = xmalloc(n / ta->block_size * ta->block_bytes + 1);
            uint8_t *row = xmalloc(row_bytes + 1);
            for (int r = 0; r < 40; r++) {
                fill_x(x, n);
                uint8_t *xqp = xq + (r & 1), *rowp = row + ((r >> 1) & 1); /* odd addresses too */
                cm_quantize_ref(k[t].act, x, xqp, n);
                make_row(k[t].type, rowp, n);
                cm_dequant_ref(k[t].act, xqp, xd, n);
                double ref = cm_dotq_ref(k[t].type, rowp, k[t].act, xqp, n);
                double mag = mag_of(k[t].type, rowp, xd, n);
                float got = k[t].plain(rowp, xqp, n);
                CHECK(close_to(got, ref, mag, 1e-5), "dotq %s n=%zu row %d (plain NEON): %.9g vs ref %.9g (mag %.3g)",
                      tw->name, n, r, got, ref, mag);
                if (have_dp && k[t].dp) {
                    got = k[t].dp(rowp, xqp, n);
                    CHECK(close_to(got, ref, mag, 1e-5), "dotq %s n=%zu row %d (SDOT): %.9g vs ref %.9g (mag %.3g)",
                          tw->name, n, r, got, ref, mag);
                }
            }
            free(x);
            free(xd);
            free(xq);
            free(row);
        }
    }
}

/* ---- dequantizers ---- */

static void test_dequant(void) {
    static const struct { uint32_t type; cm_dequant_fn fn; } k[] = {
        {CM_F16, cm_dequant_f16_neon},   {CM_BF16, cm_dequant_bf16_neon}, {CM_Q8_0, cm_dequant_q8_0_neon},
        {CM_Q4_0, cm_dequant_q4_0_neon}, {CM_Q4_K, cm_dequant_q4_k_neon}, {CM_Q5_K, cm_dequant_q5_k_neon},
        {CM_Q6_K, cm_dequant_q6_k_neon},
    };
    for (size_t t = 0; t < LM_ARRAY_LEN(k); t++) {
        const cm_type_info *ti = cm_type_get(k[t].type);
        for (int trial = 0; trial < 60; trial++) {
            /* F16/BF16: any length; block types: 1..6 blocks */
            size_t n = ti->block_size == 1 ? 1 + rndu(70) : (1 + rndu(6)) * ti->block_size;
            size_t bytes = n / ti->block_size * ti->block_bytes;
            uint8_t *row = xmalloc(bytes + 1), *rowp = row + (trial & 1);
            float *a = xmalloc(n * sizeof(float)), *b = xmalloc(n * sizeof(float));
            if (ti->block_size == 1) {
                fill_bytes(rowp, bytes); /* every bit pattern: subnormals, inf, NaN */
            } else {
                make_row(k[t].type, rowp, n);
            }
            cm_dequant_ref(k[t].type, rowp, a, n);
            memset(b, 0xFF, n * sizeof(float));
            k[t].fn(rowp, b, n);
            size_t diff = 0;
            /* bit-identical, except that a NaN only has to stay a NaN of the same sign (FCVTL
             * quiets a signalling NaN, the reference keeps its payload) */
            while (diff < n && (memcmp(a + diff, b + diff, 4) == 0 ||
                                (isnan(a[diff]) && isnan(b[diff]) && !signbit(a[diff]) == !signbit(b[diff]))))
                diff++;
            CHECK(diff == n, "dequant %s trial %d n=%zu: element %zu is %.9g, ref %.9g", ti->name, trial, n,
                  diff, diff < n ? b[diff] : 0.0f, diff < n ? a[diff] : 0.0f);
            free(row);
            free(a);
            free(b);
        }
    }
}

/* ---- MLX affine dot ---- */

static void test_mlx(void) {
    static const uint32_t bits[] = {4, 8}, gsz[] = {32, 64, 128}, sbt[] = {CM_F32, CM_F16, CM_BF16};
    for (size_t bi = 0; bi < 2; bi++)
        for (size_t gi = 0; gi < 3; gi++)
            for (size_t si = 0; si < 3; si++) {
                size_t rows = 24, ng = 1 + rndu(5), cols = ng * gsz[gi];
                size_t row_bytes = cols * bits[bi] / 8, sb = sbt[si] == CM_F32 ? 4 : 2;
                uint8_t *data = xmalloc(rows * row_bytes);
                uint8_t *sc = xmalloc(rows * ng * sb), *bs = xmalloc(rows * ng * sb);
                float *x = xmalloc(cols * sizeof(float));
                fill_bytes(data, rows * row_bytes);
                for (size_t i = 0; i < rows * ng; i++) {
                    float s = rndf() * 0.02f, b = rndf() * 0.1f;
                    cm_quantize_ref(sbt[si], &s, sc + i * sb, 1);
                    cm_quantize_ref(sbt[si], &b, bs + i * sb, 1);
                }
                fill_x(x, cols);
                cm_matrix m = {.type = CM_MLX, .rows = rows, .cols = cols, .data = data,
                               .row_bytes = row_bytes, .bits = bits[bi], .group_size = gsz[gi],
                               .sb_type = sbt[si], .scales = sc, .biases = bs};
                float *sv = xmalloc(rows * ng * sizeof(float)), *bv = xmalloc(rows * ng * sizeof(float));
                cm_dequant_ref(sbt[si], sc, sv, rows * ng);
                cm_dequant_ref(sbt[si], bs, bv, rows * ng);
                for (size_t r = 0; r < rows; r++) {
                    /* the magnitude of s * sum(q x) + b * sum(x), term by term */
                    float *w = xmalloc(cols * sizeof(float));
                    cm_mlx_dequant_row(&m, r, w);
                    double mag = 0;
                    for (size_t g = 0; g < ng; g++) {
                        float s = sv[r * ng + g], b = bv[r * ng + g];
                        for (size_t k = 0; k < gsz[gi]; k++) {
                            size_t i = g * gsz[gi] + k;
                            double q = s ? ((double)w[i] - b) / s : 0;
                            mag += (fabs(s * q) + fabs(b)) * fabs(x[i]);
                        }
                    }
                    free(w);
                    float got = cm_mlx_dot_neon(&m, r, x), ref = cm_mlx_dot_row(&m, r, x);
                    CHECK(close_to(got, ref, mag, 1e-5), "mlx bits %u gs %u sb %s row %zu: %.9g vs ref %.9g (mag %.3g)",
                          bits[bi], gsz[gi], cm_type_get(sbt[si])->name, r, got, ref, mag);
                }
                free(sv);
                free(bv);
                free(data);
                free(sc);
                free(bs);
                free(x);
            }
}

/* ---- MLX integer decode and prefill ---- */

/* The magnitude of the terms of cm_mlx_dotq_ref: sum |s d_b q_w q_x| + |bias gqsum|. */
static double mlx_dotq_mag(const cm_matrix *m, size_t row, const void *xq) {
    size_t nb = m->cols / 32, ng = m->cols / m->group_size, gs = m->group_size;
    const float *d = xq, *gqsum = d + nb;
    const int16_t *q = (const int16_t *)(const void *)((const uint8_t *)xq + cm_mlx_xq_qoff(m));
    const uint8_t *w = (const uint8_t *)m->data + row * m->row_bytes;
    float *sv = xmalloc(2 * ng * sizeof(float));
    cm_dequant_ref(m->sb_type, (const uint8_t *)m->scales + row * ng * (m->sb_type == CM_F32 ? 4 : 2), sv, ng);
    cm_dequant_ref(m->sb_type, (const uint8_t *)m->biases + row * ng * (m->sb_type == CM_F32 ? 4 : 2), sv + ng, ng);
    double mag = 0;
    for (size_t g = 0; g < ng; g++) {
        for (size_t k = 0; k < gs; k++) {
            size_t i = g * gs + k, b = i / 32, j = i % 32;
            int wq = m->bits == 4 ? (w[i / 2] >> (4 * (i & 1))) & 15 : w[i];
            int xv = m->bits == 4 ? q[b * 32 + (j & 1) * 16 + j / 2] : q[i];
            mag += fabs((double)sv[g] * d[b] * wq * xv);
        }
        mag += fabs((double)sv[ng + g] * gqsum[g]);
    }
    free(sv);
    return mag;
}

static void test_mlx_dotq(void) {
    static const uint32_t bits[] = {4, 8}, gsz[] = {32, 64, 128}, sbt[] = {CM_F32, CM_F16, CM_BF16};
    for (size_t bi = 0; bi < 2; bi++)
        for (size_t gi = 0; gi < 3; gi++)
            for (size_t si = 0; si < 3; si++) {
                size_t rows = 13, ng = 1 + rndu(5), cols = ng * gsz[gi], n_tok = 1 + rndu(40);
                size_t row_bytes = cols * bits[bi] / 8, sb = sbt[si] == CM_F32 ? 4 : 2;
                uint8_t *data = xmalloc(rows * row_bytes);
                uint8_t *sc = xmalloc(rows * ng * sb), *bs = xmalloc(rows * ng * sb);
                fill_bytes(data, rows * row_bytes);
                for (size_t i = 0; i < rows * ng; i++) {
                    float s = rndf() * 0.02f, b = rndf() * 0.1f;
                    cm_quantize_ref(sbt[si], &s, sc + i * sb, 1);
                    cm_quantize_ref(sbt[si], &b, bs + i * sb, 1);
                }
                cm_matrix m = {.type = CM_MLX, .rows = rows, .cols = cols, .data = data,
                               .row_bytes = row_bytes, .bits = bits[bi], .group_size = gsz[gi],
                               .sb_type = sbt[si], .scales = sc, .biases = bs};
                uint32_t feat = LM_CPU_NEON;
                CHECK(cm_mlx_dotq_select(&m, feat) == cm_mlx_dotq_neon, "cm_mlx_dotq_select");
                CHECK(cm_mlx_gemmq_select(&m, feat) == cm_mlx_gemmq_neon, "cm_mlx_gemmq_select");
                /* n_tok prepared activations, an odd stride apart (+ 4 bytes keeps floats aligned) */
                size_t stride = cm_mlx_xq_bytes(&m) + 36;
                uint8_t *xq = xmalloc(n_tok * stride);
                float *x = xmalloc(cols * sizeof(float));
                for (size_t t = 0; t < n_tok; t++) {
                    fill_x(x, cols);
                    cm_mlx_quantize_x(&m, x, xq + t * stride, feat);
                }
                /* rows [r0, r1) of the gemm, ldy > rows; the rest of y must stay untouched */
                size_t r0 = rndu(3), r1 = rows - rndu(3), ldy = rows + 3;
                float *y = xmalloc(n_tok * ldy * sizeof(float));
                for (size_t i = 0; i < n_tok * ldy; i++) y[i] = -12345.0f;
                cm_mlx_gemmq_neon(&m, r0, r1, xq, stride, n_tok, y, ldy);
                for (size_t t = 0; t < n_tok; t++)
                    for (size_t r = 0; r < rows; r++) {
                        const uint8_t *xt = xq + t * stride;
                        double ref = cm_mlx_dotq_ref(&m, r, xt), mag = mlx_dotq_mag(&m, r, xt);
                        if (t == 0) {
                            float got = cm_mlx_dotq_neon(&m, r, xt);
                            CHECK(close_to(got, ref, mag, 1e-5), "mlx dotq bits %u gs %u sb %s row %zu: %.9g vs ref %.9g (mag %.3g)",
                                  bits[bi], gsz[gi], cm_type_get(sbt[si])->name, r, got, ref, mag);
                        }
                        float gy = y[t * ldy + r];
                        if (r < r0 || r >= r1)
                            CHECK(gy == -12345.0f, "mlx gemmq wrote row %zu outside [%zu, %zu)", r, r0, r1);
                        else
                            CHECK(close_to(gy, ref, mag, 1e-5), "mlx gemmq bits %u gs %u sb %s row %zu token %zu/%zu: %.9g vs ref %.9g (mag %.3g)",
                                  bits[bi], gsz[gi], cm_type_get(sbt[si])->name, r, t, n_tok, gy, ref, mag);
                    }
                free(y);
                free(x);
                free(xq);
                free(data);
                free(sc);
                free(bs);
            }
}

/* ---- prefill tiles ---- */

static cm_gemm_act make_act(size_t n, size_t cols, void **raw) {
    cm_gemm_act a = {.n = n, .cols = cols, .n_grp = (n + CM_GEMM_TOK - 1) / CM_GEMM_TOK};
    *raw = xmalloc(cm_gemm_act_bytes(n, cols) + 64);
    a.mem = (uint8_t *)(((uintptr_t)*raw + 63) & ~(uintptr_t)63);
    return a;
}

/* The activation layout against cm_quantize_ref(Q8_0), byte for byte and float for float. */
static void test_gemm_prep(void) {
    for (int trial = 0; trial < 30; trial++) {
        size_t n = 1 + rndu(40), cols = 32 * (1 + rndu(9)), ldx = cols + rndu(5), nb = cols / 32;
        float *x = xmalloc(n * ldx * sizeof(float));
        for (size_t t = 0; t < n; t++) fill_x(x + t * ldx, cols);
        if (trial == 0) fill_special(x, cols, 0); /* ties */
        void *raw;
        cm_gemm_act a = make_act(n, cols, &raw);
        memset(a.mem, 0x5A, cm_gemm_act_bytes(n, cols));
        cm_gemm_prep_neon(x, ldx, &a, 0, a.n_grp);
        long bad = 0;
        for (size_t g = 0; g < a.n_grp; g++)
            for (size_t t = 0; t < CM_GEMM_TOK; t++)
                for (size_t b = 0; b < nb; b++) {
                    const uint8_t *blk = a.mem + (g * nb + b) * CM_GEMM_ACT_BLOCK;
                    size_t tok = g * CM_GEMM_TOK + t;
                    uint8_t q8[34] = {0};
                    if (tok < n) cm_quantize_ref(CM_Q8_0, x + tok * ldx + 32 * b, q8, 32);
                    int s0 = 0, s1 = 0;
                    for (int i = 0; i < 32; i++) {
                        if (blk[64 * (i / 4) + 4 * t + i % 4] != q8[2 + i]) bad++;
                        *(i < 16 ? &s0 : &s1) += (int8_t)q8[2 + i];
                    }
                    uint16_t h;
                    memcpy(&h, q8, 2);
                    float d = tok < n ? lm_f16_to_f32(h) : 0.0f, xs = d * (float)(s0 + s1), fd, fxs;
                    int32_t n0, n1;
                    memcpy(&fd, blk + 512 + 4 * t, 4);
                    memcpy(&n0, blk + 576 + 4 * t, 4);
                    memcpy(&n1, blk + 640 + 4 * t, 4);
                    memcpy(&fxs, blk + 704 + 4 * t, 4);
                    if (memcmp(&fd, &d, 4) || n0 != -s0 || n1 != -s1 || memcmp(&fxs, &xs, 4)) bad++;
                }
        CHECK(bad == 0, "cm_gemm_prep_neon n=%zu cols=%zu: %ld fields differ from cm_quantize_ref", n, cols, bad);
        free(x);
        free(raw);
    }
}

static void test_gemm(bool have_dp) {
#ifdef CM_HAVE_NEON_DOTPROD
    static const uint32_t types[] = {CM_Q8_0, CM_Q4_0, CM_Q5_0, CM_Q4_K, CM_Q5_K, CM_Q6_K};
    uint32_t feat = LM_CPU_NEON | LM_CPU_DOTPROD;
    for (size_t ti = 0; ti < LM_ARRAY_LEN(types); ti++) {
        const cm_type_info *tw = cm_type_get(types[ti]);
        cm_gemm_prep_fn prep = NULL;
        cm_gemm_fn fn = cm_gemm_select(types[ti], feat, &prep);
        CHECK(fn && prep == cm_gemm_prep_neon, "cm_gemm_select(%s)", tw->name);
        CHECK(cm_gemm_select(types[ti], LM_CPU_NEON, &prep) == NULL, "cm_gemm_select(%s) without dotprod", tw->name);
        if (!fn || !have_dp) continue;
        for (int trial = 0; trial < 4; trial++) {
            size_t cols = (tw->block_size == 256 ? 256 : 32) * (1 + rndu(tw->block_size == 256 ? 3 : 12));
            size_t rows = 5 + rndu(6), n = 1 + rndu(37), ldy = rows + 2;
            size_t row_bytes = cols / tw->block_size * tw->block_bytes;
            uint8_t *wd = xmalloc(rows * row_bytes);
            for (size_t r = 0; r < rows; r++) make_row(types[ti], wd + r * row_bytes, cols);
            cm_matrix w = {.type = types[ti], .rows = rows, .cols = cols, .data = wd, .row_bytes = row_bytes};
            float *x = xmalloc(n * cols * sizeof(float)), *y = xmalloc(n * ldy * sizeof(float));
            for (size_t t = 0; t < n; t++) fill_x(x + t * cols, cols);
            void *raw;
            cm_gemm_act a = make_act(n, cols, &raw);
            prep(x, cols, &a, 0, a.n_grp);
            for (size_t i = 0; i < n * ldy; i++) y[i] = -12345.0f;
            size_t r0 = rndu(2), r1 = rows - rndu(2);
            fn(&w, r0, r1, &a, y, ldy, NULL);
            uint8_t q8[34 * 64];
            float *xd = xmalloc(cols * sizeof(float));
            for (size_t t = 0; t < n; t++) {
                cm_quantize_ref(CM_Q8_0, x + t * cols, q8, cols);
                cm_dequant_ref(CM_Q8_0, q8, xd, cols);
                for (size_t r = 0; r < ldy; r++) {
                    float got = y[t * ldy + r];
                    if (r < r0 || r >= r1) {
                        CHECK(got == -12345.0f, "gemm %s wrote row %zu outside [%zu, %zu)", tw->name, r, r0, r1);
                        continue;
                    }
                    const uint8_t *row = wd + r * row_bytes;
                    double ref = cm_dot_ref(types[ti], row, xd, cols), mag = mag_of(types[ti], row, xd, cols);
                    CHECK(close_to(got, ref, mag, 1e-5), "gemm %s cols=%zu row %zu token %zu/%zu: %.9g vs ref %.9g (mag %.3g)",
                          tw->name, cols, r, t, n, got, ref, mag);
                }
            }
            free(xd);
            free(raw);
            free(x);
            free(y);
            free(wd);
        }
    }
#else
    (void)have_dp;
#endif
}

/* ---- selection ---- */

static void test_select(bool have_dp) {
    uint32_t f = LM_CPU_NEON | (have_dp ? LM_CPU_DOTPROD : 0), at = 999;
    CHECK(cm_dot_select(CM_F32, f) == cm_dot_f32_neon, "cm_dot_select(F32)");
    CHECK(cm_dot_select(CM_F16, f) == cm_dot_f16_neon, "cm_dot_select(F16)");
    CHECK(cm_dot_select(CM_BF16, f) == cm_dot_bf16_neon, "cm_dot_select(BF16)");
    CHECK(cm_quantize_select(CM_Q8_0, f) == cm_quantize_q8_0_neon, "cm_quantize_select(Q8_0)");
    CHECK(cm_quantize_select(CM_Q8_K, f) == cm_quantize_q8_k_neon, "cm_quantize_select(Q8_K)");
    CHECK(cm_dequant_select(CM_Q4_K, f) == cm_dequant_q4_k_neon, "cm_dequant_select(Q4_K)");
    cm_dotq_fn fn = cm_dotq_select(CM_Q4_K, f, &at);
    CHECK(at == CM_Q8_K, "cm_dotq_select(Q4_K) act type %u", at);
#ifdef CM_HAVE_NEON_DOTPROD
    CHECK(fn == (have_dp ? cm_dotq_q4_k_neon_dp : cm_dotq_q4_k_neon), "cm_dotq_select(Q4_K) variant");
#else
    CHECK(fn == cm_dotq_q4_k_neon, "cm_dotq_select(Q4_K) variant");
#endif
    fn = cm_dotq_select(CM_Q4_0, f, &at);
    CHECK(fn && at == CM_Q8_0, "cm_dotq_select(Q4_0) act type %u", at);
    at = 999;
    CHECK(cm_dotq_select(CM_Q4_0, 0, &at) == NULL && at == 999, "cm_dotq_select without NEON");
    CHECK(cm_dot_select(CM_F32, 0) != cm_dot_f32_neon, "cm_dot_select(F32) without NEON is the reference");
    cm_matrix m = {.type = CM_MLX, .cols = 64, .bits = 4, .group_size = 64, .sb_type = CM_F16};
    CHECK(cm_mlx_dot_select(&m, f) == cm_mlx_dot_neon, "cm_mlx_dot_select 4-bit");
    m.bits = 3;
    CHECK(cm_mlx_dot_select(&m, f) == cm_mlx_dot_row, "cm_mlx_dot_select 3-bit is the reference");
}

int main(int argc, char **argv) {
    int expect_dp = -1;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--expect-dotprod")) expect_dp = atoi(argv[i + 1]);
    uint32_t feat = lm_cpu_features();
    bool have_dp = (feat & LM_CPU_DOTPROD) != 0;
    CHECK(feat & LM_CPU_NEON, "lm_cpu_features() lacks LM_CPU_NEON");
    if (expect_dp >= 0)
        CHECK(have_dp == (expect_dp != 0), "lm_cpu_features(): dotprod %d, expected %d", have_dp, expect_dp);
    test_float_dots();
    test_quantizers();
    test_dotq(have_dp);
    test_dequant();
    test_mlx();
    test_mlx_dotq();
    test_gemm_prep();
    test_gemm(have_dp);
    test_select(have_dp);
#ifdef CM_HAVE_NEON_DOTPROD
    const char *dp = have_dp ? "SDOT and plain NEON kernels" : "plain NEON kernels (CPU without dotprod)";
#else
    const char *dp = "plain NEON kernels (SDOT variants not built)";
#endif
    printf("test_kernels_arm: %ld checks, %ld failed; %s\n", g_checks, g_fails, dp);
    return g_fails ? 1 : 0;
}
