/* compute/cpu/quants_mlx_ref.c: integer decode of MLX affine-quantized matrices, portable part.
 * Owns: the prepared-activation buffer of the MLX integer kernels (size, layout, filling it from
 * float x), the oracle cm_mlx_dotq_ref, and choosing the SIMD kernel (cm_mlx_dotq_select).
 * Does not own: the float MLX kernels (quants_ref.c) or the SIMD loops (quants_mlx_avx2.c). */
#include "compute/cpu/quants.h"
#include "compute/cpu/quants_mlx.h"

#include <math.h>
#include <string.h>

/* Layout (quants.h): float d[nb], gqsum[ng], then int16 q[cols] at a 32-byte offset. */
size_t cm_mlx_xq_qoff(const cm_matrix *m) {
    size_t nb = m->cols / 32, ng = m->group_size ? m->cols / m->group_size : 0;
    return ((nb + ng) * sizeof(float) + 31) & ~(size_t)31;
}

size_t cm_mlx_xq_bytes(const cm_matrix *m) { return cm_mlx_xq_qoff(m) + m->cols * sizeof(int16_t); }

static bool dotq_shape_ok(const cm_matrix *m) {
    return m->type == CM_MLX && (m->bits == 4 || m->bits == 8) && m->group_size > 0 &&
           m->group_size % 32 == 0 && m->group_size <= 128 && m->cols % m->group_size == 0 &&
           (m->sb_type == CM_F32 || m->sb_type == CM_F16 || m->sb_type == CM_BF16);
}

/* Once per matrix product, cols elements: plain C is fast enough. cpu_features is for a SIMD
 * version if profiles ever show this. A group holding NaN or Inf gets d = NaN or Inf, so the
 * products are not finite either, as with float kernels. */
void cm_mlx_quantize_x(const cm_matrix *m, const float *x, void *xq, uint32_t cpu_features) {
    (void)cpu_features;
    size_t nb = m->cols / 32, ng = m->cols / m->group_size, gs = m->group_size;
    uint8_t *base = xq;
    float *d = (float *)(void *)base, *gqsum = d + nb;
    int16_t *q = (int16_t *)(void *)(base + cm_mlx_xq_qoff(m));
    for (size_t g = 0; g < ng; g++) {
        const float *xg = x + g * gs;
        float amax = 0;
        bool nan = false;
        for (size_t i = 0; i < gs; i++) {
            amax = fmaxf(amax, fabsf(xg[i]));
            nan |= xg[i] != xg[i];
        }
        float dg = amax / 32767.0f, id = dg > 0 ? 1.0f / dg : 0.0f;
        if (nan) dg = NAN;
        /* one scale per group, written for each of its blocks */
        for (size_t b = g * gs / 32; b < (g + 1) * gs / 32; b++) d[b] = dg;
        int16_t *qg = q + g * gs;
        int32_t isum = 0;
        for (size_t i = 0; i < gs; i++) {
            float v = xg[i] * id;
            /* clamp first: x / d may round a hair past 32767 */
            int16_t r = (int16_t)(v >= 32767.0f ? 32767 : v <= -32767.0f ? -32767 : v == v ? (int)lrintf(v) : 0);
            isum += r;
            /* 4-bit: byte j of the packed row holds elements 2j (low) and 2j+1 (high), so each
             * block of 32 is stored as its even elements, then its odd ones. */
            size_t j = i % 32;
            if (m->bits == 4) qg[i - j + (j & 1) * 16 + j / 2] = r;
            else qg[i] = r;
        }
        gqsum[g] = dg * (float)isum;
    }
}

static inline float sb_at(uint32_t sb_type, const void *base, size_t i) {
    const uint8_t *p = (const uint8_t *)base;
    switch (sb_type) {
    case CM_F16: return lm_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
    case CM_BF16: return lm_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
    default: {
        float f;
        memcpy(&f, p + 4 * i, sizeof f);
        return f;
    }
    }
}

/* Per group: s * sum_i q_i d_b(i) xq_i + bias * gqsum, summed in double. */
float cm_mlx_dotq_ref(const cm_matrix *m, size_t row, const void *xq) {
    if (!dotq_shape_ok(m)) return 0.0f;
    size_t nb = m->cols / 32, ng = m->cols / m->group_size, gs = m->group_size;
    const uint8_t *base = xq;
    const float *d = (const float *)(const void *)base, *gqsum = d + nb;
    const int16_t *q = (const int16_t *)(const void *)(base + cm_mlx_xq_qoff(m));
    const uint8_t *w = (const uint8_t *)m->data + row * m->row_bytes;
    double sum = 0;
    for (size_t g = 0; g < ng; g++) {
        double s = sb_at(m->sb_type, m->scales, row * ng + g);
        double bias = sb_at(m->sb_type, m->biases, row * ng + g);
        double qx = 0;
        for (size_t k = 0; k < gs; k++) {
            size_t i = g * gs + k, j = i % 32;
            int wq, xv;
            if (m->bits == 4) {
                wq = (w[i / 2] >> (4 * (i & 1))) & 15;
                xv = q[i - j + (j & 1) * 16 + j / 2];
            } else {
                wq = w[i];
                xv = q[i];
            }
            qx += (double)d[i / 32] * wq * xv;
        }
        sum += s * qx + bias * gqsum[g];
    }
    return (float)sum;
}

#ifdef CM_HAVE_X86_KERNELS
static const uint32_t MLX_AVX2_SET = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C;
static const uint32_t MLX_AVX512_SET = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C | LM_CPU_AVX512F |
                                       LM_CPU_AVX512BW | LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
#endif

cm_mlx_dotq_fn cm_mlx_dotq_select(const cm_matrix *m, uint32_t cpu_features) {
    if (!dotq_shape_ok(m)) return NULL;
#ifdef CM_HAVE_X86_KERNELS
    if ((cpu_features & MLX_AVX512_SET) == MLX_AVX512_SET) return cm_mlx_dotq_avx512;
    if ((cpu_features & MLX_AVX2_SET) == MLX_AVX2_SET) return cm_mlx_dotq_avx2;
#endif
#ifdef CM_HAVE_NEON_KERNELS
    if (cpu_features & LM_CPU_NEON) return cm_mlx_dotq_neon;
#endif
    (void)cpu_features;
    return NULL;
}

cm_mlx_gemmq_fn cm_mlx_gemmq_select(const cm_matrix *m, uint32_t cpu_features) {
    if (!dotq_shape_ok(m)) return NULL;
#ifdef CM_HAVE_X86_KERNELS
    if ((cpu_features & MLX_AVX512_SET) == MLX_AVX512_SET) return cm_mlx_gemmq_avx512;
    if ((cpu_features & MLX_AVX2_SET) == MLX_AVX2_SET) return cm_mlx_gemmq_avx2;
#endif
#ifdef CM_HAVE_NEON_KERNELS
    if (cpu_features & LM_CPU_NEON) return cm_mlx_gemmq_neon;
#endif
    (void)cpu_features;
    return NULL;
}

/* ---- a whole product over the pool ---- */

typedef struct mlx_job {
    const cm_matrix *w;
    const float *x;
    size_t n, xb;
    float *y;
    uint8_t *xq;
    uint32_t features;
    cm_mlx_gemmq_fn fn;
    bool tiles;          /* token-lane tiles (quants_mlx.h) for cm_mlx_gemm_tiles_avx512 */
} mlx_job;

/* Tile k of quants_mlx.h from tokens [16k, 16k + 16) of x, with cm_mlx_quantize_x's rounding. */
static void prep_tile(const cm_matrix *m, const float *x, size_t n, uint8_t *tile, size_t k) {
    size_t cols = m->cols, gs = m->group_size, ng = cols / gs;
    memset(tile, 0, cm_mlx_tile_bytes(m));
    int16_t *q = (int16_t *)(void *)tile;
    float *dv = (float *)(void *)(tile + cols * 2 * CM_MLX_LANES), *gq = dv + ng * CM_MLX_LANES;
    for (size_t t = 0; t < CM_MLX_LANES && k * CM_MLX_LANES + t < n; t++) {
        const float *xt = x + (k * CM_MLX_LANES + t) * cols;
        for (size_t g = 0; g < ng; g++) {
            const float *xg = xt + g * gs;
            float amax = 0;
            bool nan = false;
            for (size_t i = 0; i < gs; i++) {
                amax = fmaxf(amax, fabsf(xg[i]));
                nan |= xg[i] != xg[i];
            }
            float dg = amax / 32767.0f, id = dg > 0 ? 1.0f / dg : 0.0f;
            if (nan) dg = NAN;
            int32_t isum = 0;
            for (size_t i = 0; i < gs; i++) {
                float v = xg[i] * id;
                int16_t r = (int16_t)(v >= 32767.0f ? 32767 : v <= -32767.0f ? -32767 : v == v ? (int)lrintf(v) : 0);
                isum += r;
                size_t e = g * gs + i;
                q[((e / 2) * CM_MLX_LANES + t) * 2 + (e & 1)] = r;
            }
            dv[g * CM_MLX_LANES + t] = dg;
            gq[g * CM_MLX_LANES + t] = dg * (float)isum;
        }
    }
}

static void mlx_prep_task(void *p, int ith, int nth) {
    mlx_job *j = p;
    if (j->tiles) {
        size_t nt = (j->n + CM_MLX_LANES - 1) / CM_MLX_LANES;
        for (size_t k = nt * (size_t)ith / (size_t)nth; k < nt * (size_t)(ith + 1) / (size_t)nth; k++)
            prep_tile(j->w, j->x, j->n, j->xq + k * j->xb, k);
        return;
    }
    size_t t0 = j->n * (size_t)ith / (size_t)nth, t1 = j->n * (size_t)(ith + 1) / (size_t)nth;
    for (size_t t = t0; t < t1; t++)
        cm_mlx_quantize_x(j->w, j->x + t * j->w->cols, j->xq + t * j->xb, j->features);
}

/* Rows in units of 8 so neighbouring threads do not write the same cache lines of y. */
static void mlx_gemm_task(void *p, int ith, int nth) {
    mlx_job *j = p;
    size_t units = (j->w->rows + 7) / 8;
    size_t r0 = units * (size_t)ith / (size_t)nth * 8, r1 = units * (size_t)(ith + 1) / (size_t)nth * 8;
    if (r1 > j->w->rows) r1 = j->w->rows;
    if (r0 >= r1) return;
#ifdef CM_HAVE_X86_KERNELS
    if (j->tiles) {
        cm_mlx_gemm_tiles_avx512(j->w, r0, r1, j->xq, j->n, j->y, j->w->rows);
        return;
    }
#endif
    j->fn(j->w, r0, r1, j->xq, j->xb, j->n, j->y, j->w->rows);
}

bool cm_mlx_matmul(lm_pool *pool, uint32_t cpu_features, cm_mlx_gemmq_fn fn, uint8_t **buf, size_t *cap,
                   const cm_matrix *w, const float *x, size_t n, float *y) {
    if (!fn || n == 0) return false;
    bool tiles = false;
#ifdef CM_HAVE_X86_KERNELS
    tiles = fn == cm_mlx_gemmq_avx512;
#endif
    size_t xb = tiles ? cm_mlx_tile_bytes(w) : cm_mlx_xq_bytes(w), need;
    size_t units = tiles ? (n + CM_MLX_LANES - 1) / CM_MLX_LANES : n;
    if (!lm_mul_ok(xb, units, &need)) return false;
    if (need > *cap) {
        uint8_t *q = lm_realloc(*buf, need);
        if (!q) return false;
        *buf = q;
        *cap = need;
    }
    mlx_job j = {w, x, n, xb, y, *buf, cpu_features, fn, tiles};
    lm_pool_run(pool, mlx_prep_task, &j);
    lm_pool_run(pool, mlx_gemm_task, &j);
    return true;
}
